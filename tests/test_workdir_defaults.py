"""Older workdirs and new config keys; a workdir that cannot be written.

A key added to a config with a default fills the saved configs that predate
it (``workdir.upgrade_config``'s ``defaults``), so resuming and loading need
no entry in ``upgrade_config``; a key the user changed is still refused
(``check_resumable``, and ``check_predated_keys`` for a key the run predates).
A read-only workdir is one UserError, before anything is written.
"""

import errno
import json
import os
import tempfile

import pytest

from tests.conftest import get_config
from vae_jax.errors import UserError
from vae_jax.training import workdir as wd


def _saved_without(config, *dotted):
  """The config as a saved dict, less the ``section.key`` entries in ``dotted``."""
  saved = wd.to_jsonable(wd.config_to_dict(config))
  for key in dotted:
    section, name = key.split(".")
    del saved[section][name]
  return saved


def test_fill_missing_adds_keys_and_sections_and_keeps_saved_values():
  saved = {"model": {"latent_dim": 4}, "seed": 1}
  defaults = {"model": {"latent_dim": 50, "new_key": 0.5}, "seed": 0, "new_section": {"a": 1}}
  assert wd.fill_missing(saved, defaults) == {
      "model": {"latent_dim": 4, "new_key": 0.5}, "seed": 1, "new_section": {"a": 1}}
  assert saved == {"model": {"latent_dim": 4}, "seed": 1}     # not changed in place


def test_upgrade_config_fills_from_the_defaults_after_the_changes_of_meaning():
  config = get_config("vae", "tiny")
  saved = _saved_without(config, "model.scale_head", "objective.free_bits")
  upgraded = wd.upgrade_config(saved, config)
  assert upgraded["objective"]["free_bits"] == config.objective.free_bits
  # scale_head's absence meant log sigma: the change of meaning wins over the default.
  assert upgraded["model"]["scale_head"] == "log_scale" != config.model.scale_head
  assert "free_bits" not in wd.upgrade_config(saved)["objective"]   # no defaults: no fill


def test_a_key_the_saved_run_predates_does_not_block_resuming(tmp_path):
  config = get_config("vae", "tiny")
  wd.write_json(str(tmp_path / wd.CONFIG_FILE),
                _saved_without(config, "objective.free_bits", "model.activation"))
  wd.check_resumable(str(tmp_path), config)                              # the library's
  wd.check_predated_keys(str(tmp_path), config, get_config("vae", "tiny"))   # the runner's


def test_a_changed_key_is_still_refused(tmp_path):
  defaults = get_config("vae", "tiny")
  wd.write_json(str(tmp_path / wd.CONFIG_FILE), _saved_without(defaults, "objective.free_bits"))
  changed = get_config("vae", "tiny")
  changed.model.latent_dim = 8                     # a key the saved run has
  with pytest.raises(UserError, match="model.latent_dim: saved 4, now 8"):
    wd.check_resumable(str(tmp_path), changed)
  wd.check_predated_keys(str(tmp_path), changed, defaults)   # not a key the run predates
  changed = get_config("vae", "tiny")
  changed.objective.free_bits = 0.5                # a key it predates, set on the command line
  with pytest.raises(UserError, match=r"objective.free_bits: saved 0.0 \(its default: the run "
                                      r"predates the key\), now 0.5"):
    wd.check_predated_keys(str(tmp_path), changed, defaults)


def test_a_workdir_that_cannot_be_written_is_one_user_error(tmp_path, monkeypatch):
  def read_only(*args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / wd.CONFIG_FILE).write_text(json.dumps({"experiment": "vae"}))
  monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
  with pytest.raises(UserError, match="cannot write into --workdir=.*Read-only file system"):
    wd.prepare(str(workdir), get_config("vae", "tiny"))
  monkeypatch.setattr(tempfile, "mkstemp", read_only)
  with pytest.raises(UserError, match="cannot write .*config.json: Read-only file system"):
    wd.write_config(str(workdir), get_config("vae", "tiny"))
  assert json.loads((workdir / wd.CONFIG_FILE).read_text()) == {"experiment": "vae"}
