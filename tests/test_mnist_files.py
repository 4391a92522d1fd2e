"""The MNIST test files: their download (mocked: no test touches the network),
checksums, atomic writes, and the errors that name the file and the command."""

import gzip
import hashlib
import os
import runpy
import urllib.error

import pytest

from experiments.configs import burda2015
from tests.conftest import ROOT, get_config
from vae_jax import data
from vae_jax import mnist_files
from vae_jax.errors import UserError

SCRIPT = os.path.join(ROOT, "scripts", "download_mnist.py")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
  """Any download a test did not mock fails the test."""
  def refuse(url):
    pytest.fail(f"a test tried to download {url}")
  monkeypatch.setattr(mnist_files, "fetch", refuse)


@pytest.fixture
def fake_files(monkeypatch):
  """Two small gzip payloads standing in for the MNIST files, with their checksums."""
  payloads = {name: gzip.compress(f"contents of {name}".encode(), mtime=0)
              for name in mnist_files.TEST_FILES}
  monkeypatch.setattr(mnist_files, "TEST_FILES", {
      name: hashlib.sha256(gzip.decompress(p)).hexdigest() for name, p in payloads.items()})
  return payloads


def _serve(payloads, broken=(), offline=()):
  """A fetch(url) that serves ``payloads`` by file name; mirrors in ``offline``
  fail as a network error would, and files in ``broken`` come back corrupted."""
  calls = []

  def fetch(url):
    calls.append(url)
    if any(url.startswith(m) for m in offline):
      raise urllib.error.URLError("Name or service not known")
    name = url.rsplit("/", 1)[-1]
    payload = payloads[name]
    return gzip.compress(b"not " + gzip.decompress(payload), mtime=0) if name in broken else payload
  fetch.calls = calls
  return fetch


def _listing(directory):
  return sorted(os.listdir(directory)) if os.path.isdir(directory) else None


def test_a_good_download_lands_checked(fake_files, monkeypatch, tmp_path):
  target = str(tmp_path / "new" / "mnist")
  fetch = _serve(fake_files)
  monkeypatch.setattr(mnist_files, "fetch", fetch)
  lines = []
  paths = mnist_files.download(target, log=lines.append)
  assert _listing(target) == sorted(mnist_files.TEST_FILES)   # no temporary file left
  for path in paths:
    with open(path, "rb") as f:
      assert f.read() == fake_files[os.path.basename(path)]
  assert fetch.calls == [mnist_files.MIRRORS[0] + n for n in mnist_files.TEST_FILES]
  assert all("checksum ok" in line for line in lines) and len(lines) == 2
  # A second call finds them intact and fetches nothing.
  monkeypatch.setattr(mnist_files, "fetch", _serve({}))
  mnist_files.download(target, log=lines.append)
  assert all("already there" in line for line in lines[2:])


def test_a_corrupt_download_is_refused_and_nothing_is_left(fake_files, monkeypatch, tmp_path):
  target = str(tmp_path / "mnist")
  name = "t10k-images-idx3-ubyte.gz"
  monkeypatch.setattr(mnist_files, "fetch", _serve(fake_files, broken=[name]))
  with pytest.raises(UserError) as error:
    mnist_files.download(target, log=lambda line: None)
  message = str(error.value)
  assert "\n" not in message and name in message
  assert mnist_files.TEST_FILES[name] in message and "nothing was written" in message
  assert all(m + name in message for m in mnist_files.MIRRORS)   # every mirror was tried
  assert _listing(target) is None   # the folder was not even created
  # Into an existing folder: the refused file is not there, nor a temporary file.
  os.makedirs(target)
  with pytest.raises(UserError):
    mnist_files.download(target, log=lambda line: None)
  assert _listing(target) == []


def test_a_file_already_there_but_corrupt_is_replaced(fake_files, monkeypatch, tmp_path):
  name = "t10k-labels-idx1-ubyte.gz"
  (tmp_path / name).write_bytes(b"half a file")
  monkeypatch.setattr(mnist_files, "fetch", _serve(fake_files))
  mnist_files.download(str(tmp_path), log=lambda line: None)
  assert (tmp_path / name).read_bytes() == fake_files[name]


def test_an_unreachable_mirror_falls_back_to_the_next(fake_files, monkeypatch, tmp_path):
  fetch = _serve(fake_files, offline=[mnist_files.MIRRORS[0]])
  monkeypatch.setattr(mnist_files, "fetch", fetch)
  mnist_files.download(str(tmp_path), log=lambda line: None)
  assert _listing(str(tmp_path)) == sorted(mnist_files.TEST_FILES)
  assert [u for u in fetch.calls if u.startswith(mnist_files.MIRRORS[1])]


def test_no_mirror_reachable_is_one_line(fake_files, monkeypatch, tmp_path):
  monkeypatch.setattr(mnist_files, "fetch", _serve(fake_files, offline=mnist_files.MIRRORS))
  with pytest.raises(UserError, match="Name or service not known") as error:
    mnist_files.download(str(tmp_path / "d"), log=lambda line: None)
  assert "\n" not in str(error.value)
  assert not os.path.exists(tmp_path / "d")


def test_the_script_downloads_and_reports_errors_as_one_line(fake_files, monkeypatch, tmp_path,
                                                              capsys):
  monkeypatch.setattr(mnist_files, "fetch", _serve(fake_files))
  script = runpy.run_path(SCRIPT)
  script["main"]([f"--dir={tmp_path / 'ok'}"])
  assert _listing(str(tmp_path / "ok")) == sorted(mnist_files.TEST_FILES)
  monkeypatch.setattr(mnist_files, "fetch", _serve(fake_files, broken=list(fake_files)))
  with pytest.raises(SystemExit) as exit_:
    script["main"]([f"--dir={tmp_path / 'bad'}"])
  assert exit_.value.code == 2
  errors = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
  assert len(errors) == 1 and errors[0].startswith("error: could not get"), errors
  with pytest.raises(SystemExit) as exit_:
    script["main"](["--help"])
  assert exit_.value.code == 0 and "download_mnist.py --dir=DIR" in capsys.readouterr().out


def test_the_checksums_in_the_code_are_those_of_the_real_files(shared_mnist_dir, monkeypatch,
                                                                tmp_path):
  """A download that serves the real files lands them, and mnist_t10k reads them."""
  for name in mnist_files.TEST_FILES:
    assert mnist_files.is_intact(os.path.join(shared_mnist_dir, name), name), name

  def fetch(url):
    with open(os.path.join(shared_mnist_dir, url.rsplit("/", 1)[-1]), "rb") as f:
      return f.read()
  monkeypatch.setattr(mnist_files, "fetch", fetch)
  mnist_files.download(str(tmp_path), log=lambda line: None)
  ds = data.load_arrays("mnist_t10k", str(tmp_path))
  assert ds.train_x.shape == (9000, 784) and ds.eval_x.shape == (1000, 784)


def test_missing_files_name_the_file_and_the_command(tmp_path):
  absent = str(tmp_path / "nowhere")
  with pytest.raises(UserError) as error:
    data.load_arrays("mnist_t10k", absent)
  assert "t10k-images-idx3-ubyte" in str(error.value)
  assert f"python scripts/download_mnist.py --dir={absent}" in str(error.value)
  with pytest.raises(UserError) as error:
    data.load_arrays("mnist_t10k", str(tmp_path))    # a folder without the files
  assert str(error.value).startswith("missing t10k-images-idx3-ubyte")
  assert f"python scripts/download_mnist.py --dir={tmp_path}" in str(error.value)
  with pytest.raises(UserError, match="download_mnist.py --dir=DIR"):
    data.load_arrays("mnist_t10k", None)


def test_the_cpu_recipes_read_the_download_folder_without_the_shared_one(monkeypatch, tmp_path):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  monkeypatch.setattr(burda2015, "SHARED_MNIST", str(tmp_path / "no_shared"))
  folder = mnist_files.default_dir()
  assert folder == str(tmp_path / "cache" / "vae_jax" / "data" / "mnist")
  assert burda2015.get_config("iwae_k5,cpu").data.data_dir == folder
  assert get_config("priors", "cpu").data.data_dir == folder
  with pytest.raises(UserError) as error:   # and say, without --dir, how to fill it
    data.load_arrays("mnist_t10k", folder)
  assert str(error.value).endswith("get them with `python scripts/download_mnist.py`.")
