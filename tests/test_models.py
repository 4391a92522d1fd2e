"""Model shapes under jit for every architecture and likelihood."""

import jax
import jax.numpy as jnp
import pytest

from vae_jax import models


@pytest.mark.parametrize("model_name,image_shape", [("mlp", (28, 28, 1)), ("conv", (28, 28, 1)),
                                                    ("conv", (32, 32, 3)), ("mlp", (8, 8, 1))])
@pytest.mark.parametrize("likelihood,scale", [("bernoulli", "shared"), ("gaussian", "shared"),
                                              ("gaussian", "per_pixel")])
@pytest.mark.slow
def test_encoder_decoder_shapes(model_name, image_shape, likelihood, scale):
  d = image_shape[0] * image_shape[1] * image_shape[2]
  vae = models.make_vae(kind=model_name, image_shape=image_shape, latent_dim=5,
                        hidden_dims=(16,), likelihood=likelihood, gaussian_scale=scale)
  params = vae.init(jax.random.key(0), jnp.zeros((1, d)))
  q = jax.jit(lambda p, x: vae.apply(p, x, method="encode"))(params, jnp.zeros((3, d)))
  assert q.loc.shape == q.log_scale.shape == (3, 5)
  out = jax.jit(lambda p, z: vae.apply(p, z, method="decode"))(params, jnp.zeros((2, 3, 5)))
  if likelihood == "bernoulli":
    assert set(out) == {"logits"} and out["logits"].shape == (2, 3, d)
  else:
    assert set(out) == {"mean", "log_scale"}
    assert out["mean"].shape == out["log_scale"].shape == (2, 3, d)
    n_scale = params["params"]["decoder"]["head"]["log_scale"].size
    assert n_scale == (1 if scale == "shared" else d)


def test_default_is_burda_architecture():
  vae = models.make_vae()
  params = vae.init(jax.random.key(0), jnp.zeros((1, 784)))["params"]
  enc = params["encoder"]
  assert enc["hidden_0"]["kernel"].shape == (784, 200)
  assert enc["hidden_1"]["kernel"].shape == (200, 200)
  assert enc["mean"]["kernel"].shape == (200, 50)
  dec = params["decoder"]["mlp"]
  assert dec["dense_0"]["kernel"].shape == (50, 200)
  assert dec["dense_2"]["kernel"].shape == (200, 784)


def test_bad_model_arguments_raise():
  with pytest.raises(ValueError, match="likelihood"):
    models.make_vae(likelihood="poisson")
  with pytest.raises(ValueError, match="kind"):
    models.make_vae(kind="transformer")
