"""Data loaders: embedded sets, TFDS under mock_data, IDX files, batches."""

import gzip
import os
import shutil
import socket

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from vae_jax import data
from vae_jax.errors import UserError


@pytest.mark.slow
def test_mnist_5k_split_is_stratified_and_fixed():
  ds = data.load_arrays("mnist_5k")
  assert ds.train_x.shape == (4500, 784) and ds.eval_x.shape == (500, 784)
  assert ds.image_shape == (28, 28, 1)
  assert ds.train_x.dtype == np.float32 and 0 <= ds.train_x.min() and ds.train_x.max() <= 1
  assert np.all(np.bincount(ds.eval_y) == 50)
  again = data.load_arrays("mnist_5k")
  np.testing.assert_array_equal(ds.eval_x, again.eval_x)
  # No image is in both splits.
  train_keys = {r.tobytes() for r in ds.train_x}
  assert not any(r.tobytes() in train_keys for r in ds.eval_x)


def test_digits_and_binarization():
  grey = data.load_arrays("digits")
  assert grey.train_x.shape == (1500, 64) and grey.eval_x.shape == (297, 64)
  assert len(np.unique(grey.train_x)) > 2
  static = data.load_arrays("digits", binarize="static", seed=3)
  assert set(np.unique(static.train_x)) == {0.0, 1.0}
  np.testing.assert_array_equal(static.train_x, data.load_arrays("digits", binarize="static",
                                                                 seed=3).train_x)
  assert not np.array_equal(static.train_x,
                            data.load_arrays("digits", binarize="static", seed=4).train_x)
  # Static binarization is Bernoulli(pixel): its mean matches the grey mean.
  assert abs(static.train_x.mean() - grey.train_x.mean()) < 0.01
  # The eval split is binarized from a fixed seed, whatever the run's seed.
  dynamic = data.load_arrays("digits", binarize="dynamic", seed=9)
  np.testing.assert_array_equal(dynamic.eval_x, static.eval_x)
  np.testing.assert_array_equal(dynamic.train_x, grey.train_x)


def test_bad_names_are_clear_errors():
  with pytest.raises(UserError, match="unknown dataset 'mnist5k'"):
    data.load_arrays("mnist5k")
  with pytest.raises(UserError, match="--config.data.binarize"):
    data.load_arrays("digits", binarize="sometimes")


def test_binarize_draws_bernoulli_pixels_from_the_key():
  x = np.linspace(0.0, 1.0, 11, dtype=np.float32)[None, :].repeat(20000, axis=0)
  b = np.asarray(jax.jit(data.binarize)(x, jax.random.key(0)))
  assert set(np.unique(b)) <= {0.0, 1.0}
  # Frequencies match the pixel values (binomial standard error <= 0.0036).
  np.testing.assert_allclose(b.mean(axis=0), x[0], atol=0.015)
  assert b[:, 0].max() == 0.0 and b[:, -1].min() == 1.0
  b2 = np.asarray(data.binarize(x, jax.random.key(1)))
  assert not np.array_equal(b, b2)


@pytest.mark.parametrize("name,shape", [("mnist", (28, 28, 1)), ("binarized_mnist", (28, 28, 1)),
                                        ("fashion_mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_tfds_data_source_under_mock_data(name, shape):
  with tfds.testing.mock_data(num_examples=12):
    ds = data.load_arrays(name, binarize="none")
  assert ds.image_shape == shape
  assert ds.train_x.shape == (12, int(np.prod(shape))) and ds.eval_x.shape[1] == ds.train_x.shape[1]
  assert ds.train_x.min() >= 0 and ds.train_x.max() <= 1
  if name == "binarized_mnist":
    assert set(np.unique(ds.train_x)) <= {0.0, 1.0}


def test_tfds_missing_dataset_is_a_clear_error_without_download(tmp_path, monkeypatch, capfd):
  # An empty data_dir: a UserError that says how to prepare the data, and no
  # download started (nothing printed about it, no socket opened, no file written).
  attempts = []

  def no_network(*args, **kwargs):
    attempts.append(args)
    raise OSError("network access in a test")

  monkeypatch.setattr(socket.socket, "connect", no_network)
  monkeypatch.setattr(socket.socket, "connect_ex", no_network)
  monkeypatch.setattr(socket, "getaddrinfo", no_network)
  with pytest.raises(UserError, match="not prepared.*tfds build mnist --data_dir=DIR"):
    data.load_arrays("mnist", str(tmp_path))
  out, err = capfd.readouterr()
  assert "download" not in (out + err).lower(), out + err
  assert attempts == []
  assert list(tmp_path.iterdir()) == []


def _make_idx_dir(src, dst, gz_train=True):
  os.makedirs(dst, exist_ok=True)
  # Train on the shared test images too (the loader only cares about file names).
  for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
    with gzip.open(os.path.join(src, f"t10k-{kind}.gz"), "rb") as f:
      raw = f.read()
    if gz_train:
      shutil.copy(os.path.join(src, f"t10k-{kind}.gz"), os.path.join(dst, f"train-{kind}.gz"))
    else:
      with open(os.path.join(dst, f"train-{kind}"), "wb") as f:
        f.write(raw)
    with open(os.path.join(dst, f"t10k-{kind}"), "wb") as f:   # raw, not gzipped
      f.write(raw)
  return dst


def test_idx_loader_on_real_mnist(shared_mnist_dir, tmp_path):
  d = _make_idx_dir(shared_mnist_dir, str(tmp_path / "idx"))
  ds = data.load_arrays("mnist_idx", d)
  assert ds.train_x.shape == (10000, 784) and ds.eval_x.shape == (10000, 784)
  assert ds.image_shape == (28, 28, 1)
  assert np.all(np.bincount(ds.eval_y) > 800)
  # Real digits: mean intensity of MNIST is about 0.13.
  assert 0.12 < ds.eval_x.mean() < 0.14
  np.testing.assert_array_equal(ds.train_x, ds.eval_x)


def test_idx_loader_errors(shared_mnist_dir, tmp_path):
  with pytest.raises(UserError, match="needs --config.data.data_dir"):
    data.load_arrays("mnist_idx", None)
  d = _make_idx_dir(shared_mnist_dir, str(tmp_path / "idx"), gz_train=False)
  os.remove(os.path.join(d, "t10k-images-idx3-ubyte"))
  with pytest.raises(UserError, match="missing t10k-images-idx3-ubyte"):
    data.load_arrays("mnist_idx", d)
  # Truncated file.
  with open(os.path.join(d, "train-images-idx3-ubyte"), "rb") as f:
    raw = f.read()
  with open(os.path.join(d, "t10k-images-idx3-ubyte"), "wb") as f:
    f.write(raw[:5000])
  with pytest.raises(UserError, match="truncated"):
    data.load_arrays("mnist_idx", d)
  with open(os.path.join(d, "t10k-images-idx3-ubyte"), "wb") as f:
    f.write(b"not an idx file at all")
  with pytest.raises(UserError, match="no IDX header"):
    data.load_arrays("mnist_idx", d)
  labels = os.path.join(d, "train-labels-idx1-ubyte")
  with open(labels, "rb") as f:
    lab = f.read()
  with open(labels, "wb") as f:
    f.write(lab[:8] + lab[8:1008])  # 1000 labels for 10000 images: header mismatch
  with pytest.raises(UserError):
    data.load_arrays("mnist_idx", d)


@pytest.mark.parametrize("header", [b"\x00\x00\x08\x03\x00\x00",       # idx3, cut after 6 bytes
                                    b"\x00\x00\x08\x01\x00\x00\x27",   # idx1, cut after 7 bytes
                                    b"\x00\x00\x08\x03" + bytes(8)])     # 2 of 3 dimensions
def test_idx_header_cut_short_is_a_clear_error(tmp_path, header):
  for name, opener in (("cut-idx3-ubyte", open), ("cut-idx3-ubyte.gz", gzip.open)):
    path = str(tmp_path / name)
    with opener(path, "wb") as f:
      f.write(header)
    with pytest.raises(UserError, match="truncated"):
      data.read_idx(path)


def test_batch_stream_is_deterministic_and_resumable():
  x = np.arange(103, dtype=np.float32)[:, None] / 103
  a = data.BatchStream(x, 10, seed=5)
  batches = [next(a) for _ in range(25)]
  assert a.state() == {"step": 25, "epoch": 2, "index": 5}
  # Each epoch visits distinct examples, dropping the remainder.
  epoch0 = np.concatenate(batches[:10])[:, 0]
  assert len(np.unique(epoch0)) == 100
  assert not np.array_equal(np.concatenate(batches[:10]), np.concatenate(batches[10:20]))
  b = data.BatchStream(x, 10, seed=5)
  b.restore({"step": 13, "epoch": 1, "index": 3})
  for want in batches[13:]:
    np.testing.assert_array_equal(next(b), want)
  with pytest.raises(UserError):
    b.restore({"step": 13, "epoch": 0, "index": 13})
  with pytest.raises(UserError, match="batch_size"):
    data.BatchStream(x, 1000, seed=0)


def test_eval_batches_cover_every_row_once():
  x = np.arange(23, dtype=np.float32)[:, None]
  seen = []
  for xb, mb in data.eval_batches(x, 10):
    assert xb.shape == (10, 1)
    seen.extend(xb[mb > 0, 0].tolist())
  assert seen == list(range(23))


def test_mnist_t10k_splits_the_test_images_9000_1000(shared_mnist_dir):
  ds = data.load_arrays("mnist_t10k", shared_mnist_dir, binarize="none")
  full = data.read_idx(os.path.join(shared_mnist_dir, "t10k-images-idx3-ubyte.gz"))
  assert ds.train_x.shape == (9000, 784) and ds.eval_x.shape == (1000, 784)
  np.testing.assert_array_equal(ds.eval_x, full[9000:].reshape(1000, -1) / np.float32(255))
  with pytest.raises(UserError, match="mnist_t10k needs --config.data.data_dir"):
    data.load_arrays("mnist_t10k", None)


def test_shipped_digits_are_converted_once_and_equal_the_package_parse(tmp_path, monkeypatch):
  """The binary cache holds exactly what scikit-learn's own loader parses from
  its text file; the second load reads the cache, not the text."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  x, y = data.load_shipped("digits")
  bunch = load_digits()
  np.testing.assert_array_equal(x.astype(np.float64), bunch.data)
  np.testing.assert_array_equal(y, bunch.target)
  assert x.dtype == np.uint8
  (cached,) = os.listdir(tmp_path / "vae_jax" / "data")
  assert cached.startswith("digits-") and cached.endswith(".npz")

  def no_parse(name):
    raise AssertionError(f"parsed {name} again instead of reading the cache")
  monkeypatch.setattr(data, "_parse_shipped", no_parse)
  again_x, again_y = data.load_shipped("digits")
  np.testing.assert_array_equal(again_x, x)
  np.testing.assert_array_equal(again_y, y)
  # What load_arrays builds from it: the grey levels over 16, as before the cache.
  np.testing.assert_array_equal(
      np.sort(np.concatenate([data.load_arrays("digits").train_x,
                              data.load_arrays("digits").eval_x]).sum(1)),
      np.sort((bunch.data.astype(np.float32) / 16.0).sum(1)))


def test_a_corrupt_or_stale_digit_cache_is_converted_again(tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  x, _ = data.load_shipped("digits")
  folder = tmp_path / "vae_jax" / "data"
  (cached,) = os.listdir(folder)
  (folder / cached).write_bytes(b"not an npz")
  np.testing.assert_array_equal(data.load_shipped("digits")[0], x)
  # A cache whose arrays are not a conversion's (float pixels) is not trusted.
  np.savez(folder / cached, x=x.astype(np.float32), y=np.zeros(len(x)))
  np.testing.assert_array_equal(data.load_shipped("digits")[0], x)
  # A cache file named for another version of the source file is never read.
  (folder / cached).unlink()
  np.savez(folder / "digits-0000000000000000.npz", x=np.zeros_like(x), y=np.zeros(len(x)))
  np.testing.assert_array_equal(data.load_shipped("digits")[0], x)


def test_an_unwritable_cache_folder_only_costs_the_parse(tmp_path, monkeypatch):
  blocker = tmp_path / "file"
  blocker.write_text("a file where the cache folder would go")
  monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
  x, y = data.load_shipped("digits")
  assert x.shape == (1797, 64) and y.shape == (1797,)


def test_static_binarization_draws_are_the_documented_numpy_stream():
  """binarize_array's draws are pinned: every static split and evaluation split
  recorded depends on them (one float64 uniform per pixel, x_bin = 1 when u < x)."""
  x = np.random.default_rng(1).uniform(size=(7, 9)).astype(np.float32)
  want = (np.random.default_rng(5).uniform(size=x.shape) < x).astype(np.float32)
  got = data.binarize_array(x, 5)
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got, want)
