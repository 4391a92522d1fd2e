"""What every run writes into its ``--workdir``: config, metrics, summary.

* ``config.json``   the resolved configuration (the experiment's ConfigDict
  with every override applied), written at start.
* ``metrics.jsonl`` one JSON object per line: ``{"step": int, "split": str, ...}``.
* ``tensorboard/``  the same scalars as TensorBoard event files (tag
  ``split/name``, or ``split/name/series`` for a record of one of several
  series), written with tensorboardX (no TensorFlow needed):
  ``tensorboard --logdir WORKDIR``.
* ``summary.json``  the final numbers of the run.

All writes of JSON files are atomic (write to a temporary file, then rename),
so a run killed at any moment never leaves a half-written file behind. With
several processes (``vae_jax.training.distributed``) only process 0 writes; the others'
writes are no-ops.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from typing import Any, Mapping, Sequence

import numpy as np

from vae_jax.training.distributed import is_writer
from vae_jax.errors import UserError

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
DATA_SPEC_FILE = "data_spec.json"
TENSORBOARD_DIR = "tensorboard"
# The parts of a config that define what a workdir's checkpoints are: a run
# whose saved config differs in one of them cannot resume there.
IDENTITY_SECTIONS = ("data", "model", "objective")
IDENTITY_KEYS = ("experiment", "seed", "train.batch_size")
# Keys a VAE's saved config.json lacks when the run was written before the
# posterior and prior families (or semi-amortized refinement) existed, and what
# such a run had: a Gaussian q, unrefined, and the N(0, I) prior. ``upgrade_config`` fills them in so old runs resume,
# reload and evaluate (a migration of old files, not a default of new runs).
# They equal today's defaults: with the config file's defaults at hand
# (``fill_missing``) they are not needed; they stay for the callers that have
# none (``tasks.load_checkpoint`` from a notebook).
PRE_FAMILY_MODEL_KEYS = {"posterior": "gaussian", "flow_steps": None, "prior": "standard",
                         "prior_components": None, "top_latent_dim": None, "top_hidden_dims": [],
                         # before semi-amortized inference: q was the encoder's, unrefined
                         "refine_steps": 0, "refine_lr": 0.005, "refine_gradient": "unrolled"}
# Runs written before ``model.scale_head`` existed had q's head output log sigma
# (the configs' default is now log sigma^2: issue 24, docs/vs_pythae.md): a
# change of meaning, which no default can fill in.
PRE_SCALE_HEAD_MODEL_KEYS = {"scale_head": "log_scale"}
# Keys older versions wrote that no longer exist: ``train.xla_cpu_tree_reduction``
# (until 2026-12; the train step now chooses its XLA:CPU options itself and
# records them in summary.json).
REMOVED_KEYS = (("train", "xla_cpu_tree_reduction"),)


def fill_missing(saved: Mapping, defaults: Mapping) -> dict:
  """``saved`` with every key of ``defaults`` it lacks added, section by section.

  The saved values win wherever both have a key; a section ``saved`` lacks
  altogether comes from ``defaults`` whole.
  """
  out = dict(saved)
  for key, default in defaults.items():
    if key not in out:
      out[key] = default
    elif isinstance(out[key], Mapping) and isinstance(default, Mapping):
      out[key] = fill_missing(out[key], default)
  return out


def upgrade_config(saved: dict, defaults: Any = None) -> dict:
  """A saved config dict as today's code reads it.

  First the changes of meaning: keys whose absence meant something other than
  today's default (``PRE_SCALE_HEAD_MODEL_KEYS``), and keys that no longer
  exist (``REMOVED_KEYS``, dropped). Then every other key the run predates,
  from ``defaults`` (the config file's values, a ConfigDict or a dict; None:
  none). So a config key added with a default that keeps the old behaviour
  needs no entry here: older workdirs resume, load and evaluate with it.
  """
  model = saved.get("model")
  if isinstance(model, dict) and model.get("name") == "vae":
    saved = {**saved, "model": {**PRE_FAMILY_MODEL_KEYS, **PRE_SCALE_HEAD_MODEL_KEYS, **model}}
  for section, key in REMOVED_KEYS:
    if isinstance(saved.get(section), dict) and key in saved[section]:
      saved = {**saved, section: {k: v for k, v in saved[section].items() if k != key}}
  if defaults is not None:
    saved = fill_missing(saved, to_jsonable(config_to_dict(defaults)))
  return saved


def prepare(workdir: str, config: Any = None) -> str:
  """Creates ``workdir`` (and parents); a clear error if a file is in the way or
  the folder cannot be written (a read-only file system, no permission).

  With ``config``, also refuses a workdir that holds another run
  (``check_resumable``), before anything in it is overwritten.
  """
  path = os.path.abspath(workdir)
  probe = path
  while probe and not os.path.exists(probe):
    probe = os.path.dirname(probe)
  if probe and not os.path.isdir(probe):
    raise UserError(f"--workdir={workdir}: {probe} exists and is not a directory; "
                    f"choose another --workdir.")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise UserError(f"cannot create --workdir={workdir}: {e.strerror}.") from None
  if is_writer():
    try:   # an existing workdir may be read-only: say so before anything is written
      with tempfile.TemporaryFile(dir=path):
        pass
    except OSError as e:
      raise UserError(f"cannot write into --workdir={workdir}: {e.strerror}; make it "
                      f"writable or choose another --workdir.") from None
  if config is not None:
    check_resumable(path, config)
  return path


def config_to_dict(config: Any) -> dict:
  """A ConfigDict (or any mapping) as a plain nested dict."""
  if hasattr(config, "to_dict"):
    config = config.to_dict()
  return {k: config_to_dict(v) if isinstance(v, Mapping) or hasattr(v, "to_dict") else v
          for k, v in dict(config).items()}


def _lookup(config: Mapping, dotted: str):
  node = config
  for part in dotted.split("."):
    if not isinstance(node, Mapping) or part not in node:
      return None
    node = node[part]
  return node


def _flatten(d: Any, prefix: str) -> dict:
  if not isinstance(d, Mapping):
    return {prefix: d}
  out = {}
  for k, v in d.items():
    out.update(_flatten(v, f"{prefix}.{k}"))
  return out


def _identity(config: Mapping) -> dict:
  """{dotted key: value} of the settings that define a workdir's checkpoints."""
  flat = {}
  for name in IDENTITY_SECTIONS + IDENTITY_KEYS:
    flat.update(_flatten(_lookup(config, name), name))
  return flat


def _saved_config(workdir: str) -> dict | None:
  """The workdir's config.json with the changes of meaning applied; None if none."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  try:
    return upgrade_config(read_json(path))
  except (OSError, json.JSONDecodeError):
    raise UserError(f"{path} is not valid JSON; fix or remove it, or use a new --workdir.") from None


def _refuse_changes(workdir: str, saved: dict, now: dict, note: str = "") -> None:
  diffs = [f"{k}: saved {saved.get(k)!r}{note}, now {now.get(k)!r}"
           for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
  if diffs:
    raise UserError(f"--workdir={workdir} holds a run with a different model, data or "
                    f"objective ({'; '.join(diffs)}); use a new --workdir or its saved "
                    f"config.")


def check_resumable(workdir: str, config: Any) -> None:
  """Refuses a workdir whose saved run has other data, model or objective.

  Compares the ``data``, ``model`` and ``objective`` sections and the keys of
  ``IDENTITY_KEYS`` of the saved ``config.json`` with ``config``. Other
  settings (``train.num_steps``, logging periods, ...) may change on resume.
  A key the saved run predates is not compared here: it had its default
  then, and the runner's ``check_predated_keys`` refuses another value.
  """
  saved = _saved_config(workdir)
  if saved is None:
    return
  now = to_jsonable(config_to_dict(config))
  _refuse_changes(workdir, _identity(fill_missing(saved, now)), _identity(now))


def check_predated_keys(workdir: str, config: Any, defaults: Any) -> None:
  """Refuses a value other than its default for a key the workdir's run predates.

  Such a key had the config file's default in that run (``upgrade_config``):
  another value now would change the model under its checkpoints. The runner
  calls this with ``defaults``, the config file's values before the command
  line's overrides; every other change is ``check_resumable``'s, once the
  experiment has validated its settings.
  """
  saved = _saved_config(workdir)
  if saved is None:
    return
  known = _identity(saved)
  then = _identity(fill_missing(saved, to_jsonable(config_to_dict(defaults))))
  now = _identity(to_jsonable(config_to_dict(config)))
  predated = [k for k in then if k not in known]
  _refuse_changes(workdir, {k: then[k] for k in predated}, {k: now.get(k) for k in predated},
                  note=" (its default: the run predates the key)")


def to_jsonable(obj: Any) -> Any:
  """Converts NumPy / JAX scalars and arrays (nested) to plain JSON types.

  Non-finite floats become the strings "nan", "inf", "-inf" so the files stay
  valid JSON for every reader.
  """
  if isinstance(obj, Mapping):
    return {str(k): to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_jsonable(v) for v in obj]
  if hasattr(obj, "__array__") and not isinstance(obj, (str, bytes)):
    arr = np.asarray(obj)
    if arr.ndim == 0:
      return to_jsonable(arr.item())
    return [to_jsonable(v) for v in arr.tolist()]
  if isinstance(obj, float):
    if math.isnan(obj):
      return "nan"
    if math.isinf(obj):
      return "inf" if obj > 0 else "-inf"
    return obj
  if isinstance(obj, (np.integer,)):
    return int(obj)
  if isinstance(obj, (np.floating,)):
    return to_jsonable(float(obj))
  return obj


def _key_order(key: str) -> tuple:
  """Sorts keys that are numbers ("2", "10", "1e-3") by value, before the others by text."""
  try:
    value = float(key)
  except ValueError:
    value = math.nan
  return (0, value, key) if math.isfinite(value) else (1, 0.0, key)


def _sort_keys(obj: Any) -> Any:
  """Nested dicts with their keys in ``_key_order``: a table keyed by training
  size or step reads 1, 2, 10, 100, not 1, 10, 100, 2."""
  if isinstance(obj, dict):
    return {k: _sort_keys(obj[k]) for k in sorted(obj, key=_key_order)}
  if isinstance(obj, list):
    return [_sort_keys(v) for v in obj]
  return obj


def write_json(path: str, obj: Any) -> None:
  """Atomically writes ``obj`` as indented JSON to ``path`` (process 0 only).

  Keys are sorted, those that are numbers by value (``_key_order``).
  """
  if not is_writer():
    return
  directory = os.path.dirname(os.path.abspath(path))
  try:
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_", suffix=".json")
  except OSError as e:   # a read-only file system, a full disk, no permission
    raise UserError(f"cannot write {path}: {e.strerror}.") from None
  try:
    with os.fdopen(fd, "w") as f:
      json.dump(_sort_keys(to_jsonable(obj)), f, indent=2)
      f.write("\n")
    os.replace(tmp, path)
  except BaseException as e:
    if os.path.exists(tmp):
      os.remove(tmp)
    if isinstance(e, OSError):
      raise UserError(f"cannot write {path}: {e.strerror}.") from None
    raise


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


class MetricWriter:
  """Appends one JSON object per line to ``workdir/metrics.jsonl``, and the
  same scalars to TensorBoard event files in ``workdir/tensorboard``.

  Each record is ``{"step": step, "split": split, **metrics}``; values are
  converted to plain floats (this is the host-sync point, call it only at
  logging boundaries). Every finite number also becomes the TensorBoard
  scalar ``split/name``; where one split holds several series (an estimator,
  a model), ``series`` names the record's fields that say which: they stay in
  the record, are not scalars themselves, and end the tag (a text value as
  itself, a number after its key: ``variance/total_variance/reparam/num_samples_4``),
  so that each TensorBoard chart is one series. Call ``truncate_after`` once before writing (it
  also opens the event file, purging events past a resumed step) and
  ``close`` at the end. In processes other than 0 every method does nothing
  but return the record.
  """

  def __init__(self, workdir: str, filename: str = METRICS_FILE, *,
               tensorboard: bool = True):
    self.enabled = is_writer()
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, filename)
    self.tensorboard_dir = os.path.join(workdir, TENSORBOARD_DIR) if tensorboard else None
    self._tb = None

  def _events(self, purge_step: int | None = None):
    if self._tb is None and self.tensorboard_dir is not None and self.enabled:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      # The file name has whole seconds only: a suffix keeps two writers of the
      # same second (a quick resume) from sharing, and so truncating, one file.
      self._tb = tensorboardX.SummaryWriter(self.tensorboard_dir, purge_step=purge_step,
                                            flush_secs=30,
                                            filename_suffix=f".{time.time_ns()}")
    return self._tb

  def write(self, step: int, split: str, metrics: Mapping[str, Any], *,
            series: Sequence[str] = ()) -> dict:
    record = {"step": int(step), "split": split}
    record.update(to_jsonable(dict(metrics)))
    if not self.enabled:
      return record
    with open(self.path, "a") as f:
      f.write(json.dumps(record, sort_keys=True) + "\n")
      f.flush()
    events = self._events()
    if events is not None:
      which = "".join(f"/{record[k]}" if isinstance(record[k], str) else f"/{k}_{record[k]}"
                      for k in series)
      for name, value in record.items():
        if (name not in ("step", "split", *series) and isinstance(value, (int, float))
            and not isinstance(value, bool) and math.isfinite(value)):
          events.add_scalar(f"{split}/{name}{which}", value, int(step))
    return record

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None

  def truncate_after(self, step: int) -> None:
    """Drops records with ``step > step`` (used when resuming a killed run).

    TensorBoard's event files are append-only: the new event file starts
    with a purge marker, so TensorBoard drops the older events past ``step``.
    """
    self.close()
    self._events(purge_step=max(step + 1, 0))
    if not self.enabled or not os.path.exists(self.path):
      return
    kept = []
    with open(self.path) as f:
      for line in f:
        line = line.strip()
        if not line:
          continue
        try:
          rec = json.loads(line)
        except json.JSONDecodeError:
          continue  # a line cut short by a kill
        if int(rec.get("step", 0)) <= step:
          kept.append(line)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(self.path), prefix=".tmp_")
    with os.fdopen(fd, "w") as f:
      f.write("".join(k + "\n" for k in kept))
    os.replace(tmp, self.path)


def read_metrics(workdir: str, filename: str = METRICS_FILE) -> list[dict]:
  """Reads ``metrics.jsonl`` into a list of dicts."""
  out = []
  with open(os.path.join(workdir, filename)) as f:
    for line in f:
      if line.strip():
        out.append(json.loads(line))
  return out


def write_config(workdir: str, config: Any) -> None:
  """Writes the resolved config (a ConfigDict or a mapping) as ``config.json``."""
  write_json(os.path.join(workdir, CONFIG_FILE), config_to_dict(config))


def write_data_spec(workdir: str, ds: Any) -> dict:
  """``data_spec.json``: what a notebook needs to rebuild the model (image shape)."""
  spec = {"name": ds.name, "image_shape": list(ds.image_shape),
          "num_train": len(ds.train_x), "num_eval": len(ds.eval_x)}
  write_json(os.path.join(workdir, DATA_SPEC_FILE), spec)
  return spec


def write_summary(workdir: str, summary: Mapping[str, Any]) -> None:
  write_json(os.path.join(workdir, SUMMARY_FILE), dict(summary))


def add_to_summary(workdir: str, **entries: Mapping[str, Any]) -> None:
  """Merges ``entries`` (dicts) into those of ``summary.json`` (the runner adds
  its timings and ``compilation_cache``); nothing when the run wrote no summary."""
  path = os.path.join(workdir, SUMMARY_FILE)
  if not os.path.exists(path):
    return
  summary = read_json(path)
  for key, value in entries.items():
    summary[key] = {**(summary.get(key) or {}), **value}
  write_summary(workdir, summary)
