"""Run files: the workdir check, atomic JSON, metrics.jsonl and TensorBoard events."""

import glob
import json
import os
import struct

import pytest

from tests.conftest import get_config
from vae_jax.training import workdir as wd
from vae_jax.errors import UserError


def read_tensorboard_scalars(workdir: str) -> dict[str, dict[int, float]]:
  """{tag: {step: value}} from every event file, honouring purge markers.

  An independent reader of the TFRecord framing (length, crc, payload, crc)
  and the Event protobuf, as TensorBoard reads them.
  """
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  scalars: dict[str, dict[int, float]] = {}
  files = sorted(glob.glob(os.path.join(workdir, wd.TENSORBOARD_DIR, "events.out.tfevents.*")))
  assert files, "no event files"
  for path in files:
    with open(path, "rb") as f:
      blob = f.read()
    pos = 0
    while pos < len(blob):
      (length,) = struct.unpack("<Q", blob[pos:pos + 8])
      event = event_pb2.Event.FromString(blob[pos + 12:pos + 12 + length])
      pos += 12 + length + 4
      if event.HasField("session_log") and event.session_log.status == 1:  # START: purge
        for steps in scalars.values():
          for s in [s for s in steps if s >= event.step]:
            del steps[s]
      for value in event.summary.value:
        scalars.setdefault(value.tag, {})[event.step] = value.simple_value
  return scalars


def test_tensorboard_holds_the_same_scalars_as_metrics_jsonl(tmp_path):
  writer = wd.MetricWriter(str(tmp_path))
  writer.truncate_after(-1)
  for step in (10, 20, 30):
    writer.write(step, "train", {"loss": 1.0 / step, "elbo": -step * 1.5, "note": "text"})
  writer.write(30, "eval", {"neg_elbo": 12.25, "bad": float("nan")})
  writer.close()
  tb = read_tensorboard_scalars(str(tmp_path))
  for r in wd.read_metrics(str(tmp_path)):
    for k, v in r.items():
      if isinstance(v, float) and k not in ("step",):
        assert tb[f"{r['split']}/{k}"][r["step"]] == pytest.approx(v, rel=1e-6)
  assert "train/note" not in tb and "eval/bad" not in tb


def test_series_of_one_split_get_their_own_tags(tmp_path):
  """Records of several estimators in one split: one TensorBoard tag per series,
  the identifying fields in metrics.jsonl and not plotted."""
  writer = wd.MetricWriter(str(tmp_path))
  writer.truncate_after(-1)
  for step in (0, 10):
    for name, s in (("reparam", 1), ("score", 1), ("score", 4)):
      writer.write(step, "variance", {"estimator": name, "num_samples": s,
                                      "total_variance": step + s + len(name)},
                   series=("estimator", "num_samples"))
  writer.close()
  tb = read_tensorboard_scalars(str(tmp_path))
  assert sorted(tb) == ["variance/total_variance/reparam/num_samples_1",
                        "variance/total_variance/score/num_samples_1",
                        "variance/total_variance/score/num_samples_4"]
  assert tb["variance/total_variance/score/num_samples_4"] == {0: 9.0, 10: 19.0}
  assert wd.read_metrics(str(tmp_path))[0] == {
      "step": 0, "split": "variance", "estimator": "reparam", "num_samples": 1,
      "total_variance": 8}


def test_json_keys_that_are_numbers_sort_by_value(tmp_path):
  path = str(tmp_path / "summary.json")
  wd.write_json(path, {"table": {"100": 3, "2": 1, "10": 2, "1e-3": 0, "all": 4},
                       "b": [{"20": 0, "3": 1}], "a": 0})
  with open(path) as f:
    loaded = json.load(f)              # keeps the file's order
  assert list(loaded) == ["a", "b", "table"]
  assert list(loaded["table"]) == ["1e-3", "2", "10", "100", "all"]
  assert list(loaded["b"][0]) == ["3", "20"]


def test_resume_purges_events_past_the_checkpoint(tmp_path):
  w = wd.MetricWriter(str(tmp_path))
  w.truncate_after(-1)
  for step in (10, 20, 30):
    w.write(step, "train", {"loss": float(step)})
  w.close()
  w = wd.MetricWriter(str(tmp_path))
  w.truncate_after(10)           # resumed from the checkpoint at step 10
  w.write(20, "train", {"loss": 200.0})
  w.close()
  assert read_tensorboard_scalars(str(tmp_path))["train/loss"] == {10: 10.0, 20: 200.0}
  assert [r["step"] for r in wd.read_metrics(str(tmp_path))] == [10, 20]


def test_check_resumable_compares_sections_not_a_key_list(tmp_path):
  config = get_config("vae")
  wd.write_config(str(tmp_path), config)
  wd.check_resumable(str(tmp_path), config)                  # same config: fine
  for section, key, value in (("train", "num_steps", 9), ("train", "log_every", 3),
                              ("eval", "iw_samples", 5)):
    other = config.copy_and_resolve_references()
    other[section][key] = value
    wd.check_resumable(str(tmp_path), other)                 # may change on resume
  for section, key, value in (("model", "activation", "tanh"), ("data", "binarize", "none"),
                              ("objective", "baseline_decay", 0.5),
                              ("train", "batch_size", 20)):
    other = config.copy_and_resolve_references()
    other[section][key] = value
    with pytest.raises(UserError, match=f"{section}.{key}: saved"):
      wd.check_resumable(str(tmp_path), other)
  other = config.copy_and_resolve_references()
  other.seed = 3
  with pytest.raises(UserError, match="seed: saved 0, now 3"):
    wd.check_resumable(str(tmp_path), other)


def test_a_run_saved_with_a_removed_key_resumes_and_reads_without_it(tmp_path):
  """train.xla_cpu_tree_reduction was a config key until 2026-12: runs saved with it
  resume under today's config, and their config reads back without it."""
  config = get_config("vae")
  assert "xla_cpu_tree_reduction" not in config.train
  saved = wd.config_to_dict(config)
  saved["train"]["xla_cpu_tree_reduction"] = True
  wd.write_json(str(tmp_path / wd.CONFIG_FILE), saved)
  wd.check_resumable(str(tmp_path), config)
  upgraded = wd.upgrade_config(wd.read_json(str(tmp_path / wd.CONFIG_FILE)))
  assert upgraded["train"] == wd.to_jsonable(wd.config_to_dict(config))["train"]
  assert saved["train"]["xla_cpu_tree_reduction"] is True    # the input is not changed


def test_saved_config_is_the_resolved_configdict(tmp_path):
  config = get_config("vae", "conv")
  wd.write_config(str(tmp_path), config)
  saved = json.load(open(tmp_path / wd.CONFIG_FILE))
  assert saved["model"]["kind"] == "conv" and saved["model"]["hidden_dims"] == [200, 200]
  assert saved["data"]["data_dir"] is None and saved["experiment"] == "vae"


def test_prepare_refuses_a_file_in_the_way(tmp_path):
  (tmp_path / "file").write_text("x")
  for path in (tmp_path / "file", tmp_path / "file" / "sub"):
    with pytest.raises(UserError, match="is not a directory"):
      wd.prepare(str(path))
  assert os.path.isdir(wd.prepare(str(tmp_path / "a" / "b")))


def test_json_is_atomic_and_nonfinite_safe(tmp_path):
  path = str(tmp_path / "x.json")
  wd.write_json(path, {"a": float("inf"), "b": [float("nan")]})
  assert json.load(open(path)) == {"a": "inf", "b": ["nan"]}
  assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp_")] == []
