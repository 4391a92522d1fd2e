"""Named key streams: one root key, fold_in by name, deterministic and distinct."""

import jax
import numpy as np
import pytest

from vae_jax import keys


def test_streams_are_fold_in_of_the_root_by_fixed_index():
  root = keys.root(7)
  for i, name in enumerate(keys.STREAMS):
    want = jax.random.key_data(jax.random.fold_in(jax.random.key(7), i))
    np.testing.assert_array_equal(jax.random.key_data(keys.stream(root, name)), want)


def test_streams_differ_between_names_and_seeds():
  datas = {tuple(np.asarray(jax.random.key_data(v)).tolist())
           for seed in (0, 1) for v in keys.run_streams(seed).values()}
  assert len(datas) == 2 * len(keys.STREAMS)
  seeds = {keys.numpy_seed(k) for k in keys.run_streams(0).values()}
  assert len(seeds) == len(keys.STREAMS) and all(0 <= s < 2 ** 63 for s in seeds)
  assert keys.numpy_seed(keys.stream(keys.root(0), "data")) == keys.numpy_seed(
      keys.stream(keys.root(0), "data"))


def test_unknown_stream_is_refused():
  with pytest.raises(ValueError, match="unknown key stream 'nosie'"):
    keys.stream(keys.root(0), "nosie")
