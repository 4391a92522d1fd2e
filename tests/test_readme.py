"""The README's notebook examples run as written (paths moved to a temporary folder)."""

import os
import re

import pytest

from tests.conftest import ROOT


def _python_blocks():
  text = open(os.path.join(ROOT, "README.md")).read()
  return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_has_the_notebook_examples():
  blocks = _python_blocks()
  assert len(blocks) >= 2 and "load_checkpoint" in blocks[0]


@pytest.mark.parametrize("index", [0, 1])
def test_readme_python_block_runs(tmp_path, monkeypatch, index):
  monkeypatch.chdir(tmp_path)
  code = _python_blocks()[index].replace("/tmp/vae_digits", str(tmp_path / "vae_digits"))
  code = code.replace("config.train.num_steps = 2000", "config.train.num_steps = 200")
  namespace = {}
  exec(compile(code, f"README.md block {index}", "exec"), namespace)  # pylint: disable=exec-used
  if index == 0:
    assert namespace["aux"]["elbo"].shape == (297,)
    assert namespace["images"].shape == (16, 8, 8)
    assert int(namespace["state"].step) == 200
