"""Orbax checkpoints of the whole training state, with a safe restore.

A checkpoint holds the train state pytree (params, optimizer state, step,
estimator state, base PRNG key data) and a JSON record of the data position.
Orbax writes each step to a temporary directory and renames it when complete,
so a run killed mid-save leaves only complete checkpoints behind.

``restore_latest`` tries the newest step first; a checkpoint that fails to
restore (truncated or corrupt files) is skipped with a warning and the next
older one is used. Nothing in the workdir is ever deleted by a restore.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from vae_jax.errors import UserError

CHECKPOINT_DIR = "checkpoints"


@contextlib.contextmanager
def _quiet(level=logging.WARNING):
  """Orbax logs every save at INFO through absl; keep the run's log readable."""
  previous = logging.get_verbosity()
  logging.set_verbosity(min(previous, level))
  try:
    yield
  finally:
    logging.set_verbosity(previous)


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)


def make_manager(workdir: str, max_to_keep: int = 3) -> ocp.CheckpointManager:
  """A synchronous CheckpointManager in ``workdir/checkpoints``."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False)
  with _quiet():
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options,
                                 item_names=("state", "meta"))


def save(manager: ocp.CheckpointManager, step: int, state: Any,
         meta: dict) -> None:
  """Saves ``state`` (a pytree of arrays) and ``meta`` (JSON) at ``step``."""
  with _quiet():
    manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
                 force=True)
    manager.wait_until_finished()


def available_steps(workdir: str) -> list[int]:
  """Complete checkpoint steps in ``workdir``, newest last."""
  if not os.path.isdir(checkpoint_dir(workdir)):
    return []
  manager = make_manager(workdir)
  try:
    return sorted(manager.all_steps())
  finally:
    close(manager)


def restore(manager: ocp.CheckpointManager, step: int,
            abstract_state: Any) -> tuple[Any, dict]:
  """Restores the state at ``step`` into the structure of ``abstract_state``."""
  abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct,
                                    abstract_state)
  with _quiet():
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
  return restored["state"], dict(restored["meta"])


def _leaf_name(path) -> str:
  """A tree path as "opt_state/decoder/0/mu/..." whatever the node types."""
  parts = []
  for entry in path:
    for attr in ("key", "name", "idx"):
      if hasattr(entry, attr):
        parts.append(str(getattr(entry, attr)))
        break
    else:
      parts.append(str(entry))
  return "/".join(parts)


def _signature(tree) -> dict[str, tuple]:
  return {_leaf_name(p): (tuple(leaf.shape), str(np.dtype(leaf.dtype)))
          for p, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def check_same_model(manager: ocp.CheckpointManager, step: int, abstract_state: Any) -> None:
  """Refuses a checkpoint whose arrays (names, shapes, dtypes) are not this run's.

  Reads only the checkpoint's metadata. It is another model when an array
  both hold differs in shape or dtype, or the checkpoint has arrays this run
  lacks; arrays missing from it, or metadata that cannot be read, are damage
  and not a verdict (``restore_latest`` reports those).

  Raises:
    UserError: the checkpoint holds another model or optimizer.
  """
  path = os.path.join(str(manager.directory), str(step), "state")
  try:
    with _quiet(logging.ERROR), ocp.StandardCheckpointer() as checkpointer:
      stored = checkpointer.metadata(path)   # (quiet: a missing optional file warns)
    stored = _signature(getattr(stored, "item_metadata", stored))
  except Exception:  # pylint: disable=broad-except
    return
  expected = _signature(abstract_state)
  diffs = [f"{name}: checkpoint {stored[name]}, this run {expected.get(name, 'absent')}"
           for name in sorted(stored, key=lambda n: (not n.startswith("params"), n))
           if stored[name] != expected.get(name)]
  if diffs:
    raise UserError(
        f"the checkpoint at step {step} in {manager.directory} holds a different model "
        f"({'; '.join(diffs[:2])}{f'; {len(diffs) - 2} more' if len(diffs) > 2 else ''}); "
        f"use a new --workdir, or the settings the run was trained with.")


def restore_latest(manager: ocp.CheckpointManager, abstract_state: Any
                   ) -> tuple[Any, dict, int, list[int]] | None:
  """Restores the newest intact checkpoint, or returns None if there is none.

  Returns:
    (state, meta, step, bad_steps), or None when the workdir has no
    checkpoint. ``bad_steps`` are newer checkpoints that failed to restore;
    move them aside with ``quarantine`` before saving again.

  Raises:
    UserError: the newest checkpoint holds another model (``check_same_model``),
      or checkpoints exist but none of them can be restored.
  """
  steps = sorted(manager.all_steps(), reverse=True)
  if not steps:
    return None
  check_same_model(manager, steps[0], abstract_state)
  failures = []
  for step in steps:
    try:
      state, meta = restore(manager, step, abstract_state)
    except Exception as e:  # pylint: disable=broad-except
      reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
      failures.append(f"step {step} ({reason[:200]})")
      logging.warning("Checkpoint at step %d cannot be restored (%s); "
                      "trying an older one.", step, reason[:200])
      continue
    if failures:
      logging.warning("Using the newest intact checkpoint, step %d; skipped: %s",
                      step, "; ".join(failures))
    return state, meta, step, [int(s.split()[1]) for s in failures]
  raise UserError(
      f"no intact checkpoint in {manager.directory}: " + "; ".join(failures) +
      ". Nothing was deleted; move that directory aside to start afresh, "
      "or use a new --workdir.")


def quarantine(workdir: str, steps: list[int]) -> list[str]:
  """Moves unrestorable checkpoint steps to ``workdir/corrupt_checkpoints``.

  Nothing is deleted: the files stay there for inspection. Returns the new
  paths.
  """
  moved = []
  if jax.process_count() > 1:   # process 0 moves them while the others wait
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    if jax.process_index() != 0:
      multihost_utils.sync_global_devices("quarantine")
      return moved
  target_root = os.path.join(os.path.abspath(workdir), "corrupt_checkpoints")
  os.makedirs(target_root, exist_ok=True)
  for step in steps:
    src = os.path.join(checkpoint_dir(workdir), str(step))
    if not os.path.exists(src):
      continue
    dst = os.path.join(target_root, str(step))
    suffix = 0
    while os.path.exists(dst):
      suffix += 1
      dst = os.path.join(target_root, f"{step}.{suffix}")
    os.rename(src, dst)
    moved.append(dst)
    logging.warning("Moved unrestorable checkpoint %s to %s", src, dst)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("quarantine")
  return moved


def close(manager: ocp.CheckpointManager) -> None:
  with _quiet():
    manager.close()
