"""Parts found by name (vae_jax.registry): posterior families, priors and models.

What each part declares is checked against what it builds, the registry finds a
new module without any list being edited, and nothing in the library or the
experiments branches on a part's name.
"""

import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from tests.conftest import ROOT, code_lines_matching, get_config
from vae_jax.errors import UserError
from vae_jax.families.posteriors import REGISTRY as POSTERIORS
from vae_jax.families.priors import REGISTRY as PRIORS
from vae_jax.models import REGISTRY as MODELS
from vae_jax.models import networks
from vae_jax.registry import Registry


def _modules_defining(folder: str, marker: str) -> tuple[str, ...]:
  """The public modules of ``folder`` whose source defines ``marker`` at the top level
  (read as text: an independent account of what the registry should find)."""
  path = os.path.join(ROOT, folder)
  return tuple(sorted(f[:-3] for f in os.listdir(path)
                      if f.endswith(".py") and not f.startswith("_")
                      and re.search(rf"^(def|class) {marker}\b", open(os.path.join(path, f)).read(),
                                    re.M)))


def test_the_registries_find_every_part_by_its_module():
  assert POSTERIORS.names() == _modules_defining("vae_jax/families/posteriors", "head")
  assert PRIORS.names() == _modules_defining("vae_jax/families/priors", "module")
  assert MODELS.names() == _modules_defining("vae_jax/models", "build")
  assert {"gaussian", "planar", "iaf"} <= set(POSTERIORS.names())   # the lecture's families
  assert {"standard", "mog", "vamp"} <= set(PRIORS.names())
  assert {"vae", "discrete_vae", "made"} <= set(MODELS.names())     # networks, common: helpers


def test_a_new_module_is_a_part_without_editing_any_list(tmp_path, monkeypatch):
  package = tmp_path / "my_parts"
  package.mkdir()
  (package / "__init__.py").write_text("")
  (package / "alpha.py").write_text("def head(settings):\n  return settings\n")
  (package / "helper.py").write_text("X = 1\n")             # no marker: not a part
  (package / "_private.py").write_text("def head(s):\n  return s\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  registry = Registry("my_parts", "widget", "config.model.widget", marker="head")
  assert registry.names() == ("alpha",)
  assert registry.get("alpha").head(3) == 3
  assert "alpha" in registry and "helper" not in registry and "_private" not in registry
  for bad in ("helper", "_private", "beta", "../alpha", 3, None):
    with pytest.raises(UserError, match=r"--config.model.widget must be one of alpha, got"):
      registry.get(bad)


def _model(**settings):
  m = get_config("vae", "tiny").model
  with m.unlocked():
    m.update(settings)
  return m


@pytest.mark.parametrize("name", POSTERIORS.names())
def test_each_posterior_declares_what_its_q_is(name):
  part = POSTERIORS.get(name)
  settings = {"flow_steps": 2} if "flow_steps" in part.KEYS else {}
  model = networks.make_vae(image_shape=(4, 4, 1), latent_dim=3, hidden_dims=(8,),
                            posterior=name, **settings)
  x = jnp.zeros((5, 16))
  params = model.init(jax.random.key(0), x)
  q = model.apply(params, x, method="encode")
  assert q.has_density == part.HAS_DENSITY
  assert (q.kl_divergence(model.apply(params, method="prior_distribution")) is not None
          ) == part.CLOSED_FORM_KL
  z, log_q = q.sample_and_log_prob(jax.random.key(1), (2,))
  assert z.shape == (2, 5, 3) and log_q.shape == (2, 5)
  if part.HAS_DENSITY:
    assert jnp.allclose(q.log_prob(z), log_q, atol=1e-5)
  POSTERIORS.validate(_model(posterior=name, **settings))


@pytest.mark.parametrize("name", PRIORS.names())
def test_each_prior_declares_whether_it_learns(name):
  part = PRIORS.get(name)
  settings = {"prior_components": 3} if "prior_components" in part.KEYS else {}
  model = networks.make_vae(image_shape=(4, 4, 1), latent_dim=3, hidden_dims=(8,),
                            prior=name, **settings)
  params = model.init(jax.random.key(0), jnp.zeros((1, 16)))
  assert ("prior" in params["params"]) == part.LEARNED
  p = model.apply(params, method="prior_distribution")
  z = p.sample(jax.random.key(1), (4,))
  assert z.shape == (4, 3) and p.log_prob(z).shape == (4,)
  PRIORS.validate(_model(prior=name, **settings))


def _owners(registry, key: str) -> str:
  """"a, b and c": the parts that read ``key``."""
  names = [n for n in registry.names() if key in registry.get(n).KEYS]
  return " and ".join(filter(None, (", ".join(names[:-1]), names[-1])))


@pytest.mark.parametrize("registry,field,key,value,kind", [
    (POSTERIORS, "posterior", "flow_steps", 2, "posterior family"),
    (PRIORS, "prior", "prior_components", 3, "prior"),
])
def test_another_parts_key_must_be_left_unset(registry, field, key, value, kind):
  owner = f"{_owners(registry, key)} {kind}"
  with pytest.raises(UserError, match=rf"--config.model.{key}={value} is for the {owner}; "
                                      rf"{field}=\w+ does not read it. Leave it unset."):
    registry.validate(_model(**{key: value}))


@pytest.mark.parametrize("registry,field", [(POSTERIORS, "posterior"), (PRIORS, "prior")])
def test_an_unknown_part_names_the_choices(registry, field):
  with pytest.raises(UserError, match=rf"--config.model.{field} must be one of "
                                      rf"{', '.join(registry.names())}, got 'realnvp'"):
    registry.validate(_model(**{field: "realnvp"}))


def test_no_code_branches_on_a_family_or_prior_name():
  """The registry finds the part and the part answers for itself: no comparison
  such as ``posterior == "gaussian"`` or ``prior != "standard"`` outside the parts."""
  names = "|".join(POSTERIORS.names() + PRIORS.names())
  compare = re.compile(rf"""(posterior|prior)\w*\s*[!=]=\s*["']({names})["']|["']({names})["']\s*[!=]=\s*[\w.]*(posterior|prior)""")
  found = code_lines_matching(compare)
  assert not found, "\n".join(found)


@pytest.mark.slow
def test_validating_any_family_imports_no_distrax():
  """Choosing and checking a part imports only light modules: distrax (seconds) is
  imported when a flow is built, not when its name is checked."""
  code = ("import sys\n"
          "from tests.conftest import get_config\n"
          "from vae_jax.models import vae\n"
          "for post, prior in (('planar', 'mog'), ('iaf', 'vamp'), ('gaussian', 'standard')):\n"
          "  c = get_config('vae', f'tiny,{post},{prior}' if post != 'gaussian' else 'tiny')\n"
          "  vae.validate(c)\n"
          "print(sorted(m for m in ('distrax', 'tensorflow_probability') if m in sys.modules))\n")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip().splitlines()[-1] == "[]"
