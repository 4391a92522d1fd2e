"""The documentation holds: README.md, docs/*.md and scripts/benchmarks/README.md.

* Every ```python block runs as written (paths moved to a temporary folder),
  and the values its comments claim are the values it gives.
* Every command of a ```bash block names files that exist, config variants the
  config file has and settings the config holds; CI runs the README's test
  command.
* Every relative link resolves to a file or folder (and a heading, for a
  ``#fragment`` into Markdown).
"""

import ast
import glob
import importlib
import io
import os
import re
import shlex
import tokenize

import pytest

from tests.conftest import ROOT

DOCUMENTS = (["README.md"]
             + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
             + ["scripts/benchmarks/README.md"])


def _read(doc: str) -> str:
  with open(os.path.join(ROOT, doc)) as f:
    return f.read()


def _blocks(doc: str, language: str) -> list[str]:
  return re.findall(rf"```{language}\n(.*?)```", _read(doc), flags=re.S)


def _python_blocks() -> list[tuple[str, int]]:
  return [(doc, i) for doc in DOCUMENTS for i in range(len(_blocks(doc, "python")))]


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


def test_the_documents_have_the_notebook_examples():
  blocks = [_blocks(doc, "python")[i] for doc, i in _python_blocks()]
  assert len(blocks) >= 2 and any("load_checkpoint" in b for b in blocks)
  assert any("ppca.elbo_decomposition" in b for b in blocks)


def test_claims_are_found_and_checked():
  code, claims = _check_claims("x = 2\nx + 1  # 3\nx  # 2 is the value\nx  # not a claim\n",
                               "example")
  assert claims == 2
  exec(code, {"__claim__": _claim_holds})  # pylint: disable=exec-used
  code, _ = _check_claims("False  # True\n", "example")
  with pytest.raises(AssertionError, match="claims True, gives False"):
    exec(code, {"__claim__": _claim_holds})  # pylint: disable=exec-used


@pytest.mark.parametrize("doc,index", _python_blocks(), ids=lambda v: str(v))
@pytest.mark.slow
def test_python_block_runs(tmp_path, monkeypatch, doc, index):
  monkeypatch.chdir(tmp_path)
  code = _blocks(doc, "python")[index].replace("/tmp/vae_digits", str(tmp_path / "vae_digits"))
  code = code.replace("config.train.num_steps = 2000", "config.train.num_steps = 200")
  compiled, claims = _check_claims(code, f"{doc} block {index}")
  assert claims >= 1        # the library block: the ELBO's shape; the classical: the PPCA identity
  namespace = {"__claim__": _claim_holds}
  exec(compiled, namespace)  # pylint: disable=exec-used
  if "load_checkpoint" in code:
    assert namespace["aux"]["elbo"].shape == (297,)
    assert namespace["images"].shape == (16, 8, 8)
    assert int(namespace["state"].step) == 200


# ----------------------------------------------------------------------------
# Commands.


def _commands(doc: str) -> list[list[str]]:
  """The commands of ``doc``'s ```bash blocks, continuation lines joined, as words
  (comments dropped; a `for` loop's body is a command too)."""
  out = []
  for block in _blocks(doc, "bash"):
    for line in block.replace("\\\n", " ").splitlines():
      line = line.split(" #", 1)[0].strip()
      for part in re.split(r"&&|;|\bdo\b", line):
        words = shlex.split(part.strip().rstrip("&").strip(), comments=True)
        if words and words[0] in ("python", "pytest", "pip"):
          out.append(words)
  return out


def _check_runner(words: list[str]):
  """``python -m experiments.main ...``: the config file, its variants and every setting."""
  config_arg = next((w.split("=", 1)[1] for w in words if w.startswith("--config=")),
                    "experiments/configs/vae.py")
  path, _, variants = config_arg.partition(":")
  assert os.path.exists(os.path.join(ROOT, path)), path
  module = importlib.import_module(path[:-3].replace("/", "."))
  config = module.get_config(variants or None)
  for w in words:
    if w.startswith("--config."):
      node = config
      for part in w.split("=", 1)[0][len("--config."):].split("."):
        assert part in node, f"{w}: no such setting in {config_arg}"
        node = node[part]


@pytest.mark.parametrize("doc", DOCUMENTS)
def test_bash_commands_name_what_exists(doc):
  for words in _commands(doc):
    if words[:3] == ["python", "-m", "experiments.main"]:
      _check_runner(words)
    elif words[0] == "python":
      script = next((w for w in words[1:] if w.endswith(".py")), None)
      assert script and os.path.exists(os.path.join(ROOT, script)), (doc, words)
    elif words[0] == "pytest" and "-m" in words:
      assert words[words.index("-m") + 1] in ("slow", "not slow"), (doc, words)


def test_ci_runs_the_readmes_test_command():
  assert "pip install -e '.[test]' && pytest" in _read("README.md")
  with open(os.path.join(ROOT, ".ci", "run")) as f:
    assert "pip install -e '.[test]' && pytest\n" in f.read()


def test_the_readme_is_a_front_door():
  assert sum(1 for _ in _read("README.md").splitlines()) <= 250
  assert 'pytest -m "not slow"' in _read("README.md").split("## The lecture")[0]


# ----------------------------------------------------------------------------
# Links.


def _slug(heading: str) -> str:
  """GitHub's anchor of a Markdown heading."""
  text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
  return text.replace(" ", "-")


def _anchors(path: str) -> set[str]:
  with open(path) as f:
    text = re.sub(r"```.*?```", "", f.read(), flags=re.S)
  return {_slug(m) for m in re.findall(r"^#+ (.*)$", text, flags=re.M)}


def _links(doc: str) -> list[str]:
  text = re.sub(r"```.*?```", "", _read(doc), flags=re.S)
  return [t for t in re.findall(r"\]\(([^)\s]+)\)", text)
          if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("doc", DOCUMENTS)
def test_relative_links_resolve(doc):
  here = os.path.dirname(os.path.join(ROOT, doc))
  for link in _links(doc):
    target, _, fragment = link.partition("#")
    path = os.path.normpath(os.path.join(here, target)) if target else os.path.join(ROOT, doc)
    assert os.path.exists(path), f"{doc}: {link} -> {os.path.relpath(path, ROOT)} does not exist"
    if fragment and path.endswith(".md"):
      assert fragment in _anchors(path), f"{doc}: {link}: no heading #{fragment}"


def test_a_broken_link_and_anchor_are_caught():
  assert _slug("The lecture, part by part: notebooks") == "the-lecture-part-by-part-notebooks"
  assert _slug("Start-up: `scripts/benchmarks/startup.py`") == "start-up-scriptsbenchmarksstartuppy"
  assert "reproducing-burda-et-al-2015" in _anchors(os.path.join(ROOT, "docs", "running.md"))
