"""The README's notebook examples run as written (paths moved to a temporary folder),
and the values they claim are the values they give."""

import ast
import io
import os
import re
import tokenize

import pytest

from tests.conftest import ROOT


def _python_blocks():
  text = open(os.path.join(ROOT, "README.md")).read()
  return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _claim(comment: str):
  """The Python literal a comment starts with (``# True``, ``# (297,) per-example``),
  as source, or None."""
  words = comment.lstrip("#").split()
  for k in range(len(words), 0, -1):
    source = " ".join(words[:k])
    try:
      ast.literal_eval(source)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
      continue
    return source
  return None


def _check_claims(code: str, name: str):
  """``code`` compiled so that every expression statement whose line ends in a
  comment starting with a literal asserts that it evaluates to that literal.

  Returns (code object, the number of claims it checks).
  """
  comments = {tok.start[0]: tok.string
              for tok in tokenize.generate_tokens(io.StringIO(code).readline)
              if tok.type == tokenize.COMMENT}
  tree = ast.parse(code)
  claims = 0
  for node in ast.walk(tree):
    for field in ("body", "orelse", "finalbody"):
      statements = getattr(node, field, None)
      if not isinstance(statements, list):
        continue
      for i, stmt in enumerate(statements):
        claim = isinstance(stmt, ast.Expr) and _claim(comments.get(stmt.end_lineno, ""))
        if not claim:
          continue
        check = ast.parse(f"__claim__(None, {claim}, {stmt.end_lineno})").body[0]
        check.value.args[0] = stmt.value
        statements[i] = ast.copy_location(check, stmt)
        claims += 1
  ast.fix_missing_locations(tree)
  return compile(tree, name, "exec"), claims


def _claim_holds(value, claimed, line):
  got = tuple(value) if isinstance(claimed, tuple) else value
  assert bool(got == claimed), f"README line {line} of the block claims {claimed!r}, gives {value!r}"


def test_readme_has_the_notebook_examples():
  blocks = _python_blocks()
  assert len(blocks) >= 2 and "load_checkpoint" in blocks[0]


def test_claims_are_found_and_checked():
  code, claims = _check_claims("x = 2\nx + 1  # 3\nx  # 2 is the value\nx  # not a claim\n",
                               "example")
  assert claims == 2
  exec(code, {"__claim__": _claim_holds})  # pylint: disable=exec-used
  code, _ = _check_claims("False  # True\n", "example")
  with pytest.raises(AssertionError, match="claims True, gives False"):
    exec(code, {"__claim__": _claim_holds})  # pylint: disable=exec-used


@pytest.mark.parametrize("index", [0, 1])
@pytest.mark.slow
def test_readme_python_block_runs(tmp_path, monkeypatch, index):
  monkeypatch.chdir(tmp_path)
  code = _python_blocks()[index].replace("/tmp/vae_digits", str(tmp_path / "vae_digits"))
  code = code.replace("config.train.num_steps = 2000", "config.train.num_steps = 200")
  compiled, claims = _check_claims(code, f"README.md block {index}")
  assert claims >= 1        # block 0: the ELBO's shape; block 1: the PPCA identity
  namespace = {"__claim__": _claim_holds}
  exec(compiled, namespace)  # pylint: disable=exec-used
  if index == 0:
    assert namespace["aux"]["elbo"].shape == (297,)
    assert namespace["images"].shape == (16, 8, 8)
    assert int(namespace["state"].step) == 200
