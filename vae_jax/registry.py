"""Parts found by name: a package of modules, one part each, and nothing that lists them.

``Registry("vae_jax.families.posteriors", "posterior family", "config.model.posterior",
marker="head")`` finds the part ``name`` as the module ``<package>.<name>`` (imported
when asked for, so a run imports only its own parts). Its names are the package's
public modules that define ``marker``: adding a part is adding its module.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import pkgutil
from types import ModuleType

from vae_jax.errors import UserError


class Registry:
  """The parts of one kind, each a module of ``package`` that defines ``marker``."""

  def __init__(self, package: str, kind: str, key: str, *, marker: str):
    self.package, self.kind, self.key, self.marker = package, kind, key, marker

  @functools.cached_property
  def _path(self):
    return importlib.import_module(self.package).__path__

  def names(self) -> tuple[str, ...]:
    """Every part's name, sorted (imports each candidate module to check it is one)."""
    candidates = sorted(m.name for m in pkgutil.iter_modules(self._path)
                        if not m.name.startswith("_"))
    return tuple(n for n in candidates if hasattr(self._import(n), self.marker))

  def _import(self, name: str) -> ModuleType:
    return importlib.import_module(f"{self.package}.{name}")

  def get(self, name) -> ModuleType:
    """The module of the part ``name``; UserError naming ``key`` if there is none."""
    if (isinstance(name, str) and name.isidentifier() and not name.startswith("_")
        and importlib.util.find_spec(f"{self.package}.{name}") is not None):
      module = self._import(name)
      if hasattr(module, self.marker):
        return module
    raise UserError(f"--{self.key} must be one of {', '.join(self.names())}, got {name!r} "
                    f"(a {self.kind} is a module of {self.package.replace('.', '/')}/).")

  def validate(self, section) -> ModuleType:
    """Checks the part chosen in ``section`` (e.g. ``config.model``) and returns its module.

    The part's own rules are its ``validate(section)``; here, the choice itself
    and that every key another part of this kind reads (its ``KEYS``) and this
    one does not is left unset (None).
    """
    prefix, field = self.key.rsplit(".", 1)
    name = section[field]
    part = self.get(name)
    own = set(getattr(part, "KEYS", ()))
    users: dict[str, list[str]] = {}
    for other in self.names():
      for key in getattr(self._import(other), "KEYS", ()):
        users.setdefault(key, []).append(other)
    for key, names in users.items():
      if key not in own and section.get(key) is not None:
        owners = " and ".join(filter(None, (", ".join(names[:-1]), names[-1])))
        raise UserError(f"--{prefix}.{key}={section[key]!r} is for the {owners} "
                        f"{self.kind}; {field}={name} does not read it. Leave it unset.")
    part.validate(section)
    return part

  def __iter__(self):
    return iter(self.names())

  def __contains__(self, name) -> bool:
    try:
      self.get(name)
    except UserError:
      return False
    return True
