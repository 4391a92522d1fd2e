r"""The vae_jax runner: a config file in, one experiment's ``run``, outputs in --workdir.

  python -m experiments.main                                   # the default VAE
  python -m experiments.main --config=experiments/configs/vae.py:conv --workdir=/tmp/conv
  python -m experiments.main --config=experiments/configs/gmm.py --workdir=/tmp/gmm
  python -m experiments.main --config.model.latent_dim=20 --config.train.num_steps=2000

--config names a file of experiments/configs/ (``:variant[,variant]`` after it
selects variants); --config.<section>.<key>=value overrides one setting and a
misspelt key is refused. The config's ``experiment`` names the module
experiments/<experiment>.py that runs it. Every run writes its resolved
config.json, metrics.jsonl, TensorBoard events, summary.json and figures into
--workdir; re-running with the same --workdir resumes a trained model from its
newest checkpoint. Errors a user can cause print one ``error:`` line and exit 2.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()   # the run's clock: imports are part of a user's wait

import logging as std_logging
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

import experiments
from experiments.configs.common import ConfigError

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "vae.py")



def one_line(error: BaseException) -> str:
  """An exception's message as one line; of a wrapped traceback, its last line.

  The message is kept as written, quotes and all; only a KeyError's str (the
  repr of its key, quoted and with escaped newlines) is unwrapped first.
  """
  text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
  lines = [l.strip() for l in text.replace("\\n", "\n").splitlines() if l.strip()]
  if any(l.startswith("Traceback") for l in lines):
    lines = lines[-1:]
  return " ".join(lines)


def config_error(error: BaseException) -> ConfigError | None:
  """The ConfigError that ``error`` wraps, if any.

  A config file's ValueError reaches us twice wrapped: ml_collections re-raises
  it as the same class with the traceback as message, absl as a flags.Error.
  The innermost one holds the message as written.
  """
  found = None
  while error is not None:
    if isinstance(error, ConfigError):
      found = error
    error = error.__cause__ or error.__context__
  return found


def fail(message: str) -> None:
  """One line on stderr, exit status 2: how every user error ends."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def fail_now(message: str) -> None:
  """``fail`` from any thread: one line on stderr, then exit status 2 at once (a
  process stuck in JAX's distributed initialization cannot be unwound)."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  os._exit(2)   # pylint: disable=protected-access


def unknown_key(error: BaseException) -> str:
  """The message for an override of a key the config does not have."""
  # ml_collections says: "'latnt_dim'\nDid you mean "latent_dim" instead of ...".
  text = str(error).replace("\\", "")
  missing = re.search(r"(\w+)'", text)
  hint = re.search(r'Did you mean "(\w+)"', text)
  given = [a.split("=")[0] for a in sys.argv[1:]
           if missing and a.startswith("--config.") and missing.group(1) in a]
  return (f"{given[0] if given else '--config override'}: no such setting in the config"
          + (f"; did you mean {hint.group(1)!r}?" if hint else ".")
          + " See the config file for its keys.")


try:
  # Loads the default config and applies --config.* overrides from sys.argv now,
  # so a misspelt key surfaces here.
  config_flags.DEFINE_config_file(
      "config", DEFAULT_CONFIG,
      "Experiment config file (experiments/configs/<experiment>.py[:variant,...]); "
      "override any setting with --config.<section>.<key>=value.", lock_config=True)
except (KeyError, AttributeError) as e:
  fail(unknown_key(e))
except (ValueError, TypeError) as e:
  fail(f"--config override: {one_line(e)}")
flags.DEFINE_string("workdir", "./workdir",
                    "Output directory: config.json, metrics.jsonl, tensorboard/, "
                    "summary.json, figures, checkpoints. Re-running with the same "
                    "workdir resumes.")
FLAGS = flags.FLAGS


HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml", "?")   # absl's, without dashes


def exit_after_help(argv: list[str], error: SystemExit) -> None:
  """Exit status 0 where absl ends a help request with 1: asked-for help is no error."""
  if error.code == 1 and any(a.split("=")[0].lstrip("-") in HELP_FLAGS for a in argv[1:]):
    sys.exit(0)
  raise error


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with every flag or config error as one ``error:`` line."""
  try:
    return FLAGS(argv)
  except SystemExit as e:   # --help and its kin print the usage, then exit
    exit_after_help(argv, e)
  except flags.Error as e:
    wrapped = config_error(e)   # an unknown variant: its message says it all
    fail(one_line(wrapped or e))
  except (KeyError, AttributeError) as e:
    fail(unknown_key(e))
  except Exception as e:  # pylint: disable=broad-except
    # A config file that fails to load or an override that cannot apply: an
    # unexpected error, so its class is part of the message.
    fail(f"{type(e).__name__}: {one_line(e)}")


def config_file_defaults():
  """The --config file's values (with its variants) before the command line's
  overrides: what a key that a resumed run predates had in that run."""
  flag = FLAGS["config"]
  return flag.parser.parse(config_flags.get_config_filename(flag))


def experiment_module(name: str):
  """``experiments.<name>``, the module whose ``run(config, workdir)`` runs it."""
  try:
    return experiments.module(name)
  except LookupError as e:
    fail(str(e.args[0]))


def main(argv):
  if len(argv) > 1:
    fail(f"unexpected arguments: {' '.join(argv[1:])}")
  from vae_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  try:
    config = FLAGS.config
    experiment = config.get("experiment")
  except OSError as e:  # the config file could not be loaded
    fail(f"cannot load --config: {str(e).strip().splitlines()[-1].strip()}")
  module = experiment_module(experiment)
  from vae_jax import compilation_cache  # pylint: disable=g-import-not-at-top
  from vae_jax.training import workdir as wd  # pylint: disable=g-import-not-at-top
  # JAX logs at INFO each platform it probes and cannot open (libtpu.so on
  # every machine without a TPU): noise in every run. Its warnings stay.
  std_logging.getLogger("jax._src.xla_bridge").setLevel(std_logging.WARNING)
  import jax  # pylint: disable=g-import-not-at-top
  from vae_jax.training import distributed  # pylint: disable=g-import-not-at-top
  try:
    # Before anything touches a device: several processes meet here.
    section = config.get("distributed")
    if (section is not None and section.coordinator_address
        and not getattr(module, "MULTI_PROCESS", False)):
      raise UserError(f"config.experiment={experiment!r} runs in one process; several "
                      f"processes train {', '.join(experiments.multi_process())}.")
    if distributed.initialize(section, on_timeout=fail_now):
      logging.info("process %d of %d, %d devices in all", jax.process_index(),
                   jax.process_count(), jax.device_count())
    # A key the workdir's run predates had the config file's default there: the
    # command line may not change it (the experiment checks the other keys).
    wd.check_predated_keys(FLAGS.workdir, config, config_file_defaults())
    cache = compilation_cache.enable(config.get("compilation_cache", "default"))
    logging.info("experiment %s, workdir %s, compilation cache %s", config.experiment,
                 FLAGS.workdir, cache or "off")
    imports_s = time.perf_counter() - STARTED
    summary = module.run(config, FLAGS.workdir)
    wd.add_to_summary(FLAGS.workdir, compilation_cache=compilation_cache.stats(), timings_s={
        "imports": round(imports_s, 3), "total": round(time.perf_counter() - STARTED, 3)})
  except UserError as e:
    fail(str(e))
  headline = {k: v for k, v in summary.items() if isinstance(v, (int, float, str))}
  print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                 for k, v in sorted(headline.items())))


def run():
  if any(a.split("=")[0].lstrip("-") in HELP_FLAGS for a in sys.argv[1:]):
    # absl prints __main__'s docstring: the config files and their variants, as
    # the configs folder holds them today.
    sys.modules["__main__"].__doc__ = f"{__doc__}\n{experiments.catalog()}\n"
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
