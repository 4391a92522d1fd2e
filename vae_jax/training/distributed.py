"""Several processes (one per host): ``jax.distributed`` from ``config.distributed``.

Every process runs the same program (JAX's multi-controller SPMD): the same
config, the same ``--workdir`` on a shared file system, and its own
``process_id``. ``initialize`` connects them before anything touches a
device; afterwards ``jax.devices()`` lists the devices of every process, the
trainer's mesh spans them all (``vae_jax.sharding``), each process uploads
only its own slice of every global batch, and orbax saves and restores from
all of them. Only process 0 writes files (``is_writer``): metrics.jsonl,
TensorBoard events, figures, config.json and summary.json.

``config.distributed``:

* ``coordinator_address``  "host:port" of process 0 (it listens there); ""
  runs one process.
* ``num_processes``        how many processes take part.
* ``process_id``           this process, 0 .. num_processes - 1.
* ``timeout_s``            how long to wait for the coordinator and the other
  processes before giving up with an error.

On CPU the processes exchange their collectives over gloo
(``jax_cpu_collectives_implementation``); GPUs and TPUs use their own.
"""

from __future__ import annotations

import errno
import re
import socket
import threading
from typing import Any, Callable

import jax

from vae_jax.errors import UserError, check_positive

_ADDRESS = re.compile(r"^\[?[A-Za-z0-9._:-]+?\]?:(\d{1,5})$")


def is_writer() -> bool:
  """Whether this process writes the run's files: process 0 (or the only one)."""
  return jax.process_index() == 0


def validate(section: Any) -> tuple[str, int, int, float]:
  """(address, num_processes, process_id, timeout_s) of ``config.distributed``.

  Raises:
    UserError: a malformed address, a count below 1, a process id outside
      0 .. num_processes - 1, or several processes without an address.
  """
  address = str(section.get("coordinator_address") or "")
  num, pid = section.get("num_processes", 1), section.get("process_id", 0)
  timeout = section.get("timeout_s", 120)
  check_positive(num, "config.distributed.num_processes", integer=True)
  if not isinstance(pid, int) or not 0 <= pid < num:
    raise UserError(f"--config.distributed.process_id={pid!r} is outside the range of "
                    f"num_processes={num}: use 0 .. {num - 1}.")
  check_positive(timeout, "config.distributed.timeout_s")
  if address:
    match = _ADDRESS.match(address)
    if not match or not 0 < int(match.group(1)) < 65536:
      raise UserError(f"--config.distributed.coordinator_address={address!r} is not "
                      f"host:port (e.g. 10.0.0.1:1234).")
  elif num > 1:
    raise UserError(f"--config.distributed.num_processes={num} needs "
                    f"--config.distributed.coordinator_address=HOST:PORT (process 0's).")
  return address, num, pid, float(timeout)


def _resolve(host: str, port: int) -> tuple:
  """(family, sockaddr) of the coordinator; UserError if the host does not resolve."""
  try:
    family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
  except socket.gaierror as e:
    raise UserError(f"--config.distributed.coordinator_address: cannot resolve host "
                    f"{host!r} ({e.strerror}).") from None
  return family, sockaddr


def _check_coordinator_address(family, sockaddr, host: str, port: int) -> None:
  """Process 0 listens at the address: it must be this machine's, and free."""
  with socket.socket(family, socket.SOCK_STREAM) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      s.bind(sockaddr)
    except OSError as e:
      why = ("is not an address of this machine" if e.errno == errno.EADDRNOTAVAIL
             else "is in use" if e.errno == errno.EADDRINUSE else e.strerror)
      raise UserError(f"--config.distributed.coordinator_address={host}:{port} {why}; "
                      f"process 0 listens there, so give its own host and a free "
                      f"port.") from None


def _watchdog(seconds: float, message: str, on_timeout: Callable[[str], None]) -> threading.Timer:
  """A started timer that calls ``on_timeout(message)`` (from its own thread)."""
  timer = threading.Timer(seconds, on_timeout, args=(message,))
  timer.daemon = True
  timer.start()
  return timer


def initialize(section: Any | None,
               on_timeout: Callable[[str], None] | None = None) -> bool:
  """Connects this process to the others; returns whether it did.

  Does nothing for a missing section or an empty address. Must run before
  anything touches a device (the runner calls it first).

  JAX aborts a process (SIGABRT) that cannot reach the coordinator, or whose
  peers do not all arrive, some seconds after its initialization timeout, and
  the call blocks the main thread until then. So when this process has not
  joined after ``timeout_s``, a watchdog thread calls ``on_timeout(message)``
  first (the runner's prints one ``error:`` line and exits with status 2: the
  library itself neither prints nor exits); JAX's own timeout is set 60 s
  beyond it. Without ``on_timeout`` JAX's abort is what ends a stuck process.

  Raises:
    UserError: bad settings (``validate``), an address process 0 cannot
      listen at, or devices already in use.
  """
  if section is None:
    return False
  address, num, pid, timeout = validate(section)
  if not address:
    return False
  host, port = address.rsplit(":", 1)
  host = host.strip("[]")
  family, sockaddr = _resolve(host, int(port))
  if pid == 0:
    _check_coordinator_address(family, sockaddr, host, int(port))
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  waiting = (f"only part of the {num} processes met at {address} within {timeout:g} s"
             if pid == 0 else
             f"process {pid} could not join the coordinator at {address} within "
             f"{timeout:g} s")
  message = (waiting + f"; start every process (0 .. {num - 1}) with "
             f"--config.distributed.coordinator_address={address}, or raise "
             f"--config.distributed.timeout_s.")
  timer = _watchdog(timeout, message, on_timeout) if on_timeout else None
  try:
    jax.distributed.initialize(coordinator_address=address, num_processes=num,
                               process_id=pid, initialization_timeout=int(timeout) + 60)
  except Exception as e:  # pylint: disable=broad-except
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise UserError(f"process {pid} of {num} could not join the coordinator at {address} "
                    f"({first[:300]}).") from None
  finally:
    if timer is not None:
      timer.cancel()
  return True
