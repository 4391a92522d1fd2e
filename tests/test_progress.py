"""vae_jax.training.progress: CountMeter's rate, ETA and line schedule; the lines outside the runner."""

import math
import re

import pytest

from vae_jax.training import progress


class FakeClock:

  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_count_meter_rate_leaves_out_the_first_update_and_lines_fall_on_tenths():
  """Catches: a rate that includes the compiling first batch, an ETA of the wrong
  remainder, lines at every update or none before the end."""
  clock = FakeClock()
  meter = progress.CountMeter(100, clock=clock)
  clock.now = 30.0                       # the first batch compiles: not timed
  assert not meter.update(5)             # no rate yet: no line
  assert math.isnan(meter.per_s()) and meter.eta() == "?"
  due = []
  for done in range(10, 101, 5):
    clock.now += 1.0                     # 5 examples a second from here on
    due.append((done, meter.update(done)))
    if done == 50:
      assert meter.per_s() == 5.0 and meter.eta() == "0:00:10"
  assert [d for d, is_due in due if is_due] == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]


def test_count_meter_is_due_after_every_s_between_tenths_and_always_at_the_end():
  clock = FakeClock()
  meter = progress.CountMeter(1000, every_s=60.0, clock=clock)
  meter.update(1)
  clock.now = 59.0
  assert not meter.update(2)
  clock.now = 61.0
  assert meter.update(3)                 # a minute without a line
  clock.now = 62.0
  assert not meter.update(4)
  one = progress.CountMeter(7, clock=clock)
  assert one.update(7)                   # one batch: its only update is the end


@pytest.mark.slow
def test_training_from_python_shows_the_runners_lines_unless_turned_off(tmp_path, capsys):
  """Outside the runner (a notebook, a script) absl drops INFO lines: the
  trainer's progress and evaluation lines go to stderr instead, and
  ``set_verbose(False)`` hides them."""
  from tests.conftest import get_config  # pylint: disable=g-import-not-at-top
  from vae_jax import tasks  # pylint: disable=g-import-not-at-top
  from vae_jax.training import progress, trainer  # pylint: disable=g-import-not-at-top
  config = get_config("vae", "tiny")
  config.train.update(num_steps=4, log_every=2, eval_every=4, checkpoint_every=4)
  ds = tasks.load_data(config)
  task = tasks.build_task(config, ds.image_shape, len(ds.train_x))
  trainer.train(task, config, ds, str(tmp_path / "a"))
  err = capsys.readouterr().err
  assert re.search(r"^step 2/4 loss [\d.]+ .* grad_norm [\d.e+]+ \| [\d.na]+ steps/s, ETA ",
                   err, re.M), err
  assert re.search(r"^step 4 eval: neg_elbo [\d.]+ nats$", err, re.M), err
  progress.set_verbose(False)
  try:
    trainer.train(task, config, ds, str(tmp_path / "b"))
  finally:
    progress.set_verbose(True)
  assert "step" not in capsys.readouterr().err
