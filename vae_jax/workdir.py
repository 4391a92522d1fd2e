"""What every run writes into its ``--workdir``: config, metrics, summary.

* ``config.json``   the resolved configuration (all flags), written at start.
* ``metrics.jsonl`` one JSON object per line: ``{"step": int, "split": str, ...}``.
* ``summary.json``  the final numbers of the run.

All writes of JSON files are atomic (write to a temporary file, then rename),
so a run killed at any moment never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any, Mapping

import numpy as np

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"


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


def write_json(path: str, obj: Any) -> None:
  """Atomically writes ``obj`` as indented JSON to ``path``."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_", suffix=".json")
  try:
    with os.fdopen(fd, "w") as f:
      json.dump(to_jsonable(obj), f, indent=2, sort_keys=True)
      f.write("\n")
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


class MetricWriter:
  """Appends one JSON object per line to ``workdir/metrics.jsonl``.

  Each record is ``{"step": step, "split": split, **metrics}``; values are
  converted to plain floats (this is the host-sync point, call it only at
  logging boundaries).
  """

  def __init__(self, workdir: str, filename: str = METRICS_FILE):
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, filename)

  def write(self, step: int, split: str, metrics: Mapping[str, Any]) -> dict:
    record = {"step": int(step), "split": split}
    record.update(to_jsonable(dict(metrics)))
    with open(self.path, "a") as f:
      f.write(json.dumps(record, sort_keys=True) + "\n")
      f.flush()
    return record

  def truncate_after(self, step: int) -> None:
    """Drops records with ``step > step`` (used when resuming a killed run)."""
    if not os.path.exists(self.path):
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


def write_config(workdir: str, config: Mapping[str, Any]) -> None:
  write_json(os.path.join(workdir, CONFIG_FILE), dict(config))


def write_summary(workdir: str, summary: Mapping[str, Any]) -> None:
  write_json(os.path.join(workdir, SUMMARY_FILE), dict(summary))
