"""Fused steps and the two feeds: the same batches, bit-identical runs for any steps_per_jit."""

import jax
import numpy as np
import pytest

from tests.conftest import get_config
from vae_jax import data, tasks
from vae_jax.training import checkpointing
from vae_jax.training import feed
from vae_jax import sharding
from vae_jax.training import trainer
from vae_jax.training import workdir as wd
from vae_jax.errors import UserError
from vae_jax.training import step as step_lib


def _stream(n=103, d=5, batch=10, seed=3):
  x = np.random.default_rng(0).uniform(size=(n, d)).astype(np.float32)
  return data.BatchStream(x, batch, seed)


def _shardings():
  return sharding.make_shardings({"batch": 10})


@pytest.mark.parametrize("kind", ["device", "host"])
def test_feeds_give_step_t_the_rows_of_the_batch_stream(kind):
  stream = _stream()
  f = feed.make_feed(kind, stream, _shardings(), steps_per_jit=4)
  assert f.kind == kind
  batch = jax.jit(f.batch)
  # Dispatches of 4, 4 and 2 steps inside epoch 1 (steps 10..19), then epoch 2.
  for start, n in ((10, 4), (14, 4), (18, 2), (20, 3)):
    args = f.args(start, n)
    for i in range(n):
      np.testing.assert_array_equal(np.asarray(batch(args, i, start + i)),
                                    stream.x[stream.indices(start + i)])
  if kind == "device":
    with pytest.raises(ValueError, match="epoch boundary"):
      f.args(18, 4)


def test_auto_feed_is_the_device_feed_unless_the_data_exceeds_the_budget(monkeypatch):
  stream = _stream()
  assert feed.make_feed("auto", stream, _shardings(), 5).kind == "device"
  monkeypatch.setattr(feed, "CPU_DEVICE_DATA_BYTES", stream.x.nbytes - 1)
  assert feed.make_feed("auto", stream, _shardings(), 5).kind == "host"
  with pytest.raises(UserError, match="feed=host"):
    feed.make_feed("device", stream, _shardings(), 5)
  with pytest.raises(UserError, match="config.train.feed"):
    feed.make_feed("gpu", stream, _shardings(), 5)


def _run(tmp_path, name, **train):
  config = get_config("vae")
  config.data.binarize = "dynamic"   # exercise the on-device binarization
  config.train.update(num_steps=45, log_every=15, eval_every=30, checkpoint_every=30,
                      grad_stats_every=15, **train)
  ds = tasks.load_data(config)
  task = tasks.build_task(config, ds.image_shape, len(ds.train_x))
  workdir = str(tmp_path / name)
  result = trainer.train(task, config, ds, workdir)
  rows = [(r["step"], r["split"]) for r in wd.read_metrics(workdir)]
  return result, rows, workdir


@pytest.mark.slow
def test_results_do_not_depend_on_steps_per_jit_or_the_feed(tmp_path):
  # steps_per_jit 1, 7 (which divides no period) and 10, device and host feed:
  # 45 steps of the tiny VAE with dynamic binarization, gradient statistics.
  runs = {(k, f): _run(tmp_path, f"{k}_{f}", steps_per_jit=k, feed=f)
          for k, f in ((1, "device"), (7, "device"), (10, "device"), (10, "host"))}
  ref_state, ref_rows = runs[(1, "device")][0].state, runs[(1, "device")][1]
  for (k, f), (result, rows, workdir) in runs.items():
    for a, b in zip(jax.tree_util.tree_leaves(ref_state), jax.tree_util.tree_leaves(result.state),
                    strict=True):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=f"k={k} {f}")
    # Logging, gradient statistics, evaluation and checkpoints fall on the same steps.
    assert rows == ref_rows, (k, f)
    assert checkpointing.available_steps(workdir) == [30, 45]
  assert [r for r in ref_rows if r[1] != "train"] == [
      (15, "grad_stats"), (30, "grad_stats"), (30, "eval"), (45, "grad_stats"), (45, "eval")]
  assert [r[0] for r in ref_rows if r[1] == "train"] == [15, 30, 45]
  assert int(ref_state.step) == 45


@pytest.mark.slow
def test_the_fused_loop_binarizes_step_t_from_fold_in_binarize_t():
  # train_steps on the device feed == train_step on the batch binarized here.
  import functools
  from vae_jax.training import optim
  config = get_config("vae")
  config.data.binarize = "dynamic"
  ds = tasks.load_data(config)
  task = tasks.build_task(config, ds.image_shape, len(ds.train_x))
  tx = optim.make_optimizer(config.train)
  stream = data.BatchStream(ds.train_x, int(config.train.batch_size), seed=11)
  f = feed.make_feed("device", stream, sharding.make_shardings({"b": 50}), 1)
  bkey = jax.random.key(5)
  fresh = lambda: trainer.create_train_state(jax.random.key(0), jax.random.key(1), task, tx)
  fused = jax.jit(functools.partial(step_lib.train_steps, task=task, tx=tx,
                                    feed_batch=f.batch, binarize=True))
  state, sums = fused(fresh(), f.args(0, 3), jax.random.key_data(bkey), 3)
  ref = fresh()
  step = jax.jit(functools.partial(step_lib.train_step, task=task, tx=tx))
  losses = []
  for t in range(3):
    grey = ds.train_x[stream.indices(t)]
    x = data.binarize(grey, jax.random.fold_in(bkey, t))
    assert set(np.unique(np.asarray(x))) == {0.0, 1.0}
    ref, m = step(ref, x)
    losses.append(float(m["loss"]))
  np.testing.assert_allclose(float(sums["loss"]), sum(losses), rtol=1e-6)
  assert float(sums["finite"]) == 3.0
  for a, b in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(ref.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
  # Grey batches give another loss: the binarization is not a no-op.
  _, grey_sums = jax.jit(functools.partial(step_lib.train_steps, task=task, tx=tx,
                                           feed_batch=f.batch, binarize=False))(
      fresh(), f.args(0, 3), jax.random.key_data(bkey), 3)
  assert abs(float(grey_sums["loss"]) - sum(losses)) > 1.0


def test_next_stop_cuts_dispatches_at_every_boundary():
  # steps_per_jit 50, log every 100, eval every 1000, checkpoints every 1000,
  # no gradient statistics (0), epochs of 45 steps, 5000 steps in all.
  periods = (100, 1000, 1000, 0, 45)
  stops, step = [], 0
  while step < 5000:
    step = trainer.next_stop(step, 5000, 50, periods)
    stops.append(step)
  assert stops[:5] == [45, 90, 100, 135, 180]
  assert all(b - a <= 50 for a, b in zip([0] + stops, stops))
  assert {100 * i for i in range(1, 51)} <= set(stops) and stops[-1] == 5000
  assert set(stops) <= ({100 * i for i in range(1, 51)} | {45 * i for i in range(1, 112)}
                        | {5000})
  assert trainer.next_stop(4990, 5000, 50, periods) == 4995     # an epoch ends there
  assert trainer.next_stop(4995, 5000, 50, periods) == 5000
  assert trainer.next_stop(7, 5000, 1, periods) == 8
