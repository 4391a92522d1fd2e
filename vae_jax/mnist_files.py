"""The MNIST test files that ``mnist_t10k`` reads: where they go, their checksums, the download.

The few-minute real-MNIST recipes (``burda2015.py:<recipe>,cpu``,
``priors.py:cpu``, ``scripts/reproduce.py ...,cpu``) read the 10,000 MNIST
test images from ``--config.data.data_dir``, in the original IDX format:

* ``t10k-images-idx3-ubyte.gz``: 10000 x 28 x 28 uint8 images;
* ``t10k-labels-idx1-ubyte.gz``: their 10000 labels.

``python scripts/download_mnist.py [--dir=DIR]`` fetches them from a public
mirror into ``DIR`` (default ``default_dir()``, where those recipes look when
the development machines' ``../shared/data/mnist`` is absent). Each file is
checked before it is written: the SHA-256 of its *uncompressed* IDX bytes must
be the one below (mirrors re-compress the same bytes with other gzip headers,
so the ``.gz`` files' own checksums differ from mirror to mirror). A file is
written to a temporary name and renamed, so a download that fails or is
refused leaves nothing behind; a file already there with the right contents is
kept.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shlex
import tempfile
import urllib.request
from typing import Callable

from vae_jax.compilation_cache import user_cache_dir
from vae_jax.errors import UserError

# name: SHA-256 of the uncompressed IDX bytes (computed from the shared copies
# of ../shared/data/mnist, whose .gz files are byte-identical in size to the
# Google mirror's).
TEST_FILES = {
    "t10k-images-idx3-ubyte.gz":
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz":
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# Tried in order until one gives a file with the right contents.
MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",   # TFDS's
    "https://ossci-datasets.s3.amazonaws.com/mnist/",          # torchvision's
)
COMMAND = "python scripts/download_mnist.py"


def default_dir() -> str:
  """``$XDG_CACHE_HOME/vae_jax/data/mnist`` (``~/.cache/vae_jax/data/mnist``)."""
  return os.path.join(user_cache_dir("data"), "mnist")


def how_to_get(directory: str) -> str:
  """The command that puts the test files into ``directory``, for error messages."""
  where = "" if os.path.abspath(directory) == default_dir() else f" --dir={shlex.quote(directory)}"
  return f"`{COMMAND}{where}`"


def fetch(url: str) -> bytes:
  """The bytes at ``url`` (tests replace this function: they never download)."""
  with urllib.request.urlopen(url, timeout=60) as response:   # nosec: a fixed https mirror
    return response.read()


def content_sha256(payload: bytes) -> str:
  """SHA-256 of the uncompressed bytes of a gzip ``payload``; "" if it is not gzip."""
  try:
    return hashlib.sha256(gzip.decompress(payload)).hexdigest()
  except (OSError, EOFError, ValueError):
    return ""


def is_intact(path: str, name: str) -> bool:
  """Whether ``path`` holds the file ``name`` with the right contents."""
  try:
    with open(path, "rb") as f:
      return content_sha256(f.read()) == TEST_FILES[name]
  except OSError:
    return False


def _write_atomically(directory: str, name: str, payload: bytes) -> str:
  path = os.path.join(directory, name)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(payload)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path


def download(directory: str | None = None, *, log: Callable[[str], None] = print,
             get: Callable[[str], bytes] | None = None) -> list[str]:
  """Fetches the MNIST test files into ``directory`` (``default_dir()`` when None).

  Args:
    directory: where to put them; created when missing (only once a file has
      been fetched and checked).
    log: called with one line per file.
    get: url -> bytes; ``fetch`` when None.

  Returns:
    The files' paths.

  Raises:
    UserError: a file no mirror gave with the right contents (nothing of it is
      written), or a directory that cannot be written.
  """
  directory = os.path.abspath(os.path.expanduser(directory or default_dir()))
  get = get or fetch
  paths = []
  for name, expected in TEST_FILES.items():
    path = os.path.join(directory, name)
    if is_intact(path, name):
      log(f"{path}: already there, checksum ok")
      paths.append(path)
      continue
    failures = []
    for mirror in MIRRORS:
      url = mirror + name
      try:
        payload = get(url)
      except OSError as e:   # urllib's URLError and HTTPError are OSErrors
        failures.append(f"{url}: {getattr(e, 'reason', None) or e}")
        continue
      found = content_sha256(payload)
      if found != expected:
        failures.append(f"{url}: its contents' SHA-256 is {found or 'unreadable (not gzip)'}, "
                        f"expected {expected}")
        continue
      try:
        os.makedirs(directory, exist_ok=True)
        _write_atomically(directory, name, payload)
      except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}; choose another --dir.") from None
      log(f"{path}: {len(payload)} bytes from {url}, checksum ok")
      paths.append(path)
      break
    else:
      raise UserError(f"could not get {name} ({'; '.join(failures)}); nothing was written "
                      f"for it.")
  return paths
