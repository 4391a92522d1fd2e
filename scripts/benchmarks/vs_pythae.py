"""vae_jax's default VAE against pythae 0.1.2's VAE: the same split, network and optimizer.

Question it answers: is the default VAE as good as a PyTorch peer a researcher
already knows, and how much faster? Both systems train the same 784-200-200-50
ReLU VAE (Bernoulli likelihood, dynamic binarization, Adam 1e-3, batch 100,
5,000 steps; pythae 4,995: 111 epochs of 45 steps) on the shipped mnist_5k
split (4,500 train, 500 held out, exported with ``vae_jax.data.load_arrays``),
seed by seed, the two systems alternating, one after the other (never at
once). Every trained model, pythae's included, is then evaluated by the same
code, vae_jax's (``vae.eval_step``: held-out -ELBO with one sample and the
analytic KL, IWAE-100; ``vae.log_likelihood``: IWAE-5000), with the seed's
evaluation key; pythae's own ``get_nll`` (IWAE-5000) is timed and reported too.

Setup (pythae and torch are not dependencies of the package; they live in a
separate environment, built once)::

  python -m venv .venv-pythae            # ignored by git
  .venv-pythae/bin/pip install torch==2.13.0 pythae==0.1.2   # the CPU wheel
  python scripts/benchmarks/vs_pythae.py --seeds=5 --out=scripts/benchmarks/results/vs_pythae.json

``--pythae_python`` names another interpreter. Each side runs in its own
subprocess (``--worker=vae_jax`` in this interpreter, ``--worker=pythae`` in
the pythae one) with ``--threads`` threads (torch's intra-op threads; XLA:CPU
takes the machine's cores) and prints one JSON line; this process gathers
them and prints the JSON of the whole comparison: per-seed rows, the means,
and each paired difference (vae_jax - pythae, per seed) with its mean and
standard error. Speeds: ``steps_per_s`` is vae_jax's own meter (the trainer's steps/s: its
first, compiling dispatch and the host's logging and checkpoints left out)
and, for pythae, steps over its trainer's epoch loop (first epoch start to
last epoch end: its per-epoch work included); ``wall_train_s`` is the whole
training call (vae_jax's: compilation, checkpoints and its final -ELBO and
IWAE-100 evaluation included; pythae's: its setup and model saving).

Ingredient swaps (``--pythae_variant``), each one change on the pythae side
(default ``pythae``: pythae's trainer, its log-variance head, its sigmoid
decoder and clamped BCE, a fresh Flax-style init, its own shuffling and a
per-epoch Bernoulli draw):

* ``logscale``: the encoder's head is log sigma (vae_jax's), not log sigma^2;
* ``logits``: the loss on logits (softplus), not BCE on sigmoid probabilities;
* ``init``: vae_jax's initial parameters of the seed, exactly;
* ``order``: vae_jax's exact binarized batches of every step (our loop over
  pythae's model and torch's Adam, not pythae's trainer);
* ``noise``: also vae_jax's reparametrization noise eps of every step (implies
  ``order``);
* combinations joined by ``+`` (``logscale+logits+init+noise``: vae_jax's
  computation step for step, in torch).

``--jax_variant=logvar`` trains vae_jax with ``model.scale_head=log_var``
(the encoder's head is log sigma^2, pythae's), ``log_scale`` with its former
log sigma head. ``--no_pythae`` / ``--no_jax`` run one side only.

Not part of the test suite: it needs the second environment and minutes
(about 2 min per seed with IWAE-5000 on a 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
STEPS_PER_EPOCH = 45            # 4,500 training images, batch 100
BATCH = 100
LATENT, HIDDEN, DIMS = 50, (200, 200), 784
PYTHAE_VARIANTS = ("logscale", "logits", "init", "order", "noise")


# ----------------------------------------------------------------------------
# The vae_jax side (project environment).
# ----------------------------------------------------------------------------


def _jax_config(seed: int, steps: int, variant: str):
  from experiments.configs import vae as vae_config
  config = vae_config.get_config()
  config.seed = seed
  config.train.num_steps = steps
  config.train.eval_every = config.train.checkpoint_every = 10 ** 9   # only the final ones
  config.eval.iw_samples = 100
  if variant == "logvar":
    config.model.scale_head = "log_var"
  elif variant == "log_scale":
    config.model.scale_head = "log_scale"
  elif variant != "default":
    raise SystemExit(f"--jax_variant must be default, logvar or log_scale, got {variant!r}")
  return config


def _load_data():
  from vae_jax import data as data_lib
  return data_lib.load_arrays("mnist_5k", binarize="dynamic")


def evaluate_params(params, seed: int, iw_big: int, config=None) -> dict:
  """vae_jax's final evaluation of any VAE parameters (the seed's eval key):
  held-out -ELBO, IWAE-100 and IWAE-``iw_big`` (0 skips it), in nats."""
  import functools
  import jax
  from vae_jax import keys
  from vae_jax.inference import evaluation
  from vae_jax.models import vae
  ds = _load_data()
  config = config or _jax_config(seed, 0, "default")
  task = vae.build(config, ds.image_shape, len(ds.train_x))
  eval_key = keys.stream(keys.root(seed), "eval")
  res = evaluation.evaluate(jax.jit(task.final_eval_step), params, ds.eval_x,
                            int(config.eval.batch_size), eval_key, ds.num_dims)
  out = {"neg_elbo": res["neg_elbo"], "iwae100": res["neg_log_likelihood_iw"],
         "kl": res["kl"]}
  if iw_big:
    t0 = time.perf_counter()
    ll = vae.log_likelihood(params, ds.eval_x, jax.random.fold_in(eval_key, 2),
                            model=task.model, num_samples=iw_big)
    out[f"iwae{iw_big}"] = -float(ll.mean())
    out[f"iwae{iw_big}_ms_per_image"] = 1e3 * (time.perf_counter() - t0) / len(ll)
  del functools
  return out


def export_pairing(seed: int, steps: int, path: str) -> None:
  """Writes what vae_jax's run of ``seed`` draws, for pythae to reuse: the
  initial parameters, the binarized batch of every step (packed bits) and the
  reparametrization noise eps of every step ([steps, B, L]), from the run's
  streams exactly as the trainer draws them (tests/test_vs_reference.py)."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from vae_jax import data as data_lib, keys
  from vae_jax.models import vae
  ds = _load_data()
  config = _jax_config(seed, steps, "default")
  root = keys.root(seed)
  task = vae.build(config, ds.image_shape, len(ds.train_x))
  params = jax.device_get(jax.jit(task.init_params)(keys.stream(root, "init")))
  stream = data_lib.BatchStream(ds.train_x, BATCH, keys.numpy_seed(keys.stream(root, "data")))
  bin_key, noise_key = keys.stream(root, "binarize"), keys.stream(root, "noise")
  draw = jax.jit(lambda x, t: (data_lib.binarize(x, jax.random.fold_in(bin_key, t)),
                               jax.random.normal(jax.random.fold_in(noise_key, t),
                                                 (1, BATCH, LATENT))[0]))
  bits = np.zeros((steps, BATCH, DIMS // 8), np.uint8)
  eps = np.zeros((steps, BATCH, LATENT), np.float32)
  for t in range(steps):
    xb, e = draw(jnp.asarray(stream.batch(t)), t)
    bits[t] = np.packbits(np.asarray(xb, np.uint8), axis=-1)
    eps[t] = np.asarray(e)
  flat = {"/".join(str(getattr(k, "key", k)) for k in path_): np.asarray(v)
          for path_, v in jax.tree_util.tree_leaves_with_path(params)}
  np.savez(path, bits=bits, eps=eps, **{f"init/{k}": v for k, v in flat.items()})


def params_from_npz(path: str):
  """The Flax parameter tree from a pythae worker's weights (flat 'a/b/c' keys)."""
  import numpy as np
  tree = {}
  with np.load(path) as f:
    for name in f.files:
      node = tree
      *parents, leaf = name.split("/")
      for p in parents:
        node = node.setdefault(p, {})
      node[leaf] = np.asarray(f[name])
  return tree


def jax_worker(args) -> dict:
  import jax
  from vae_jax import keys
  from vae_jax.models import vae
  from vae_jax.training import trainer
  ds = _load_data()
  config = _jax_config(args.seed, args.steps, args.jax_variant)
  task = vae.build(config, ds.image_shape, len(ds.train_x))
  with tempfile.TemporaryDirectory() as workdir:
    t0 = time.perf_counter()
    result = trainer.train(task, config, ds, workdir)
    wall = time.perf_counter() - t0
  params = jax.device_get(result.state.params)
  out = {"system": "vae_jax", "variant": args.jax_variant, "seed": args.seed,
         "steps": args.steps, "steps_per_s": result.steps_per_s, "wall_train_s": wall}
  out.update(evaluate_params(params, args.seed, args.iw_big, config))
  del keys
  return out


# ----------------------------------------------------------------------------
# The pythae side (its own environment: numpy, torch, pythae; no JAX).
# ----------------------------------------------------------------------------


def _trunc_normal_(w, fan_in):
  """Flax's default kernel init (lecun_normal: variance 1 / fan_in, a normal
  truncated at two standard deviations, rescaled to keep the variance)."""
  import torch
  std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
  with torch.no_grad():
    torch.nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)


def pythae_worker(args) -> dict:
  import numpy as np
  import torch
  from torch import nn
  from pythae.models import VAE, VAEConfig
  from pythae.models.base.base_utils import ModelOutput
  from pythae.models.nn import BaseDecoder, BaseEncoder
  from pythae.data.datasets import BaseDataset, DatasetOutput
  from pythae.trainers import BaseTrainer, BaseTrainerConfig
  from pythae.trainers.training_callbacks import TrainingCallback

  torch.set_num_threads(args.threads)
  variant = set() if args.pythae_variant == "pythae" else set(args.pythae_variant.split("+"))
  unknown = variant - set(PYTHAE_VARIANTS)
  if unknown:
    raise SystemExit(f"unknown --pythae_variant parts {sorted(unknown)}; choose from "
                     f"{', '.join(PYTHAE_VARIANTS)} joined by '+'.")
  if "noise" in variant:
    variant.add("order")
  torch.manual_seed(args.seed)
  data = np.load(os.path.join(args.dir, "data.npz"))
  train_grey, eval_x = data["train_x"], data["eval_x"]
  pairing = np.load(args.pairing) if args.pairing else None
  log_scale_head = "logscale" in variant

  class Encoder(BaseEncoder):
    def __init__(self):
      BaseEncoder.__init__(self)
      self.hidden_0, self.hidden_1 = nn.Linear(DIMS, HIDDEN[0]), nn.Linear(HIDDEN[0], HIDDEN[1])
      self.mean, self.log_scale = nn.Linear(HIDDEN[1], LATENT), nn.Linear(HIDDEN[1], LATENT)

    def forward(self, x):
      h = torch.relu(self.hidden_1(torch.relu(self.hidden_0(x.reshape(x.shape[0], -1)))))
      head = self.log_scale(h)
      # pythae reads log sigma^2; with the swap the head is log sigma (vae_jax's).
      return ModelOutput(embedding=self.mean(h),
                         log_covariance=2.0 * head if log_scale_head else head)

  class Decoder(BaseDecoder):
    def __init__(self):
      BaseDecoder.__init__(self)
      self.dense_0, self.dense_1 = nn.Linear(LATENT, HIDDEN[1]), nn.Linear(HIDDEN[1], HIDDEN[0])
      self.dense_2 = nn.Linear(HIDDEN[0], DIMS)

    def forward(self, z):
      logits = self.dense_2(torch.relu(self.dense_1(torch.relu(self.dense_0(z)))))
      return ModelOutput(reconstruction=torch.sigmoid(logits), logits=logits)

  class PairedVAE(VAE):
    """pythae's VAE; with ``logits`` its loss on the decoder's logits, with
    ``noise`` the reparametrization noise taken from ``self.eps``."""
    eps = None

    def _sample_gauss(self, mu, std):
      if self.eps is None:
        return VAE._sample_gauss(self, mu, std)
      return mu + self.eps * std, self.eps

    def forward(self, inputs, **kwargs):
      if "logits" not in variant:
        return VAE.forward(self, inputs, **kwargs)
      x = inputs["data"]
      enc = self.encoder(x)
      mu, log_var = enc.embedding, enc.log_covariance
      z, _ = self._sample_gauss(mu, torch.exp(0.5 * log_var))
      logits = self.decoder(z)["logits"]
      recon = nn.functional.binary_cross_entropy_with_logits(
          logits, x.reshape(x.shape[0], -1), reduction="none").sum(-1)
      kld = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp(), dim=-1)
      return ModelOutput(loss=(recon + kld).mean(0), recon_loss=recon.mean(0),
                         reg_loss=kld.mean(0), z=z)

  encoder, decoder = Encoder(), Decoder()
  linears = {f"encoder/{n}": m for n, m in encoder.named_children()}
  linears.update({f"decoder/mlp/{n}": m for n, m in decoder.named_children()})
  for name, layer in linears.items():
    if "init" in variant:
      with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(pairing[f"init/params/{name}/kernel"].T.copy()))
        layer.bias.copy_(torch.from_numpy(pairing[f"init/params/{name}/bias"]))
    else:
      _trunc_normal_(layer.weight, layer.in_features)
      nn.init.zeros_(layer.bias)
  model = PairedVAE(VAEConfig(input_dim=(DIMS,), latent_dim=LATENT, reconstruction_loss="bce"),
                    encoder=encoder, decoder=decoder)

  grey = torch.from_numpy(train_grey)
  optimizer_params = {"betas": (0.9, 0.999), "eps": 1e-8}
  with tempfile.TemporaryDirectory() as out_dir:
    if "order" in variant:   # vae_jax's batches, step for step: a plain loop
      steps = args.steps
      opt = torch.optim.Adam(model.parameters(), lr=1e-3, **optimizer_params)
      bits, eps = pairing["bits"], pairing["eps"]
      model.train()
      t0 = time.perf_counter()
      for t in range(steps):
        x = torch.from_numpy(np.unpackbits(bits[t], axis=-1).astype(np.float32))
        model.eps = torch.from_numpy(eps[t]) if "noise" in variant else None
        loss = model(DatasetOutput(data=x)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
      wall = wall_all = time.perf_counter() - t0
      model.eps = None
    else:                   # pythae's trainer, a fresh Bernoulli draw at each epoch start
      train_set = BaseDataset(torch.bernoulli(grey), torch.zeros(len(grey)))

      marks = []

      class Rebinarize(TrainingCallback):
        def on_epoch_begin(self, training_config, **kwargs):
          kwargs["train_loader"].dataset.data = torch.bernoulli(grey)
          if not marks:
            marks.append(time.perf_counter())

        def on_epoch_end(self, training_config, **kwargs):
          marks[1:] = [time.perf_counter()]

      epochs = args.steps // STEPS_PER_EPOCH
      steps = epochs * STEPS_PER_EPOCH
      config = BaseTrainerConfig(output_dir=out_dir, per_device_train_batch_size=BATCH,
                                 num_epochs=epochs, learning_rate=1e-3,
                                 optimizer_cls="Adam", optimizer_params=optimizer_params,
                                 seed=args.seed, no_cuda=True)
      trainer = BaseTrainer(model=model, train_dataset=train_set, training_config=config,
                            callbacks=[Rebinarize()])
      t0 = time.perf_counter()
      trainer.train()
      wall_all = time.perf_counter() - t0
      wall = marks[1] - marks[0]      # the epoch loop: pythae's per-epoch work included
      model = trainer.model     # the last step's model (not its best-on-train-loss copy)
  model.eval()
  out = {"system": "pythae", "variant": args.pythae_variant, "seed": args.seed,
         "steps": steps, "steps_per_s": steps / wall, "wall_train_s": wall_all,
         "torch_threads": args.threads}
  # Its own -ELBO: one sample, the analytic KL, the trained loss's formula.
  ev = torch.from_numpy(eval_x)
  with torch.no_grad():
    torch.manual_seed(10_000 + args.seed)
    out["own_neg_elbo"] = float(VAE.forward(model, DatasetOutput(data=ev)).loss)
    if args.iw_big:
      torch.manual_seed(20_000 + args.seed)
      t0 = time.perf_counter()
      out[f"own_iwae{args.iw_big}"] = -float(model.get_nll(ev, n_samples=args.iw_big,
                                                           batch_size=100))
      out[f"own_iwae{args.iw_big}_ms_per_image"] = 1e3 * (time.perf_counter() - t0) / len(ev)
  # The weights in vae_jax's layout: a log sigma^2 head is a log sigma head of half the size.
  half = 1.0 if log_scale_head else 0.5
  weights = {}
  for name, layer in linears.items():
    scale = half if name == "encoder/log_scale" else 1.0
    weights[f"params/{name}/kernel"] = scale * layer.weight.detach().numpy().T
    weights[f"params/{name}/bias"] = scale * layer.bias.detach().numpy()
  np.savez(os.path.join(args.dir, f"pythae_{args.seed}.npz"), **weights)
  return out


# ----------------------------------------------------------------------------
# The driver.
# ----------------------------------------------------------------------------


def _run_worker(python: str, args, worker: str, seed: int, extra=()) -> dict:
  cmd = [python, os.path.abspath(__file__), f"--worker={worker}", f"--seed={seed}",
         f"--steps={args.steps}", f"--iw_big={args.iw_big}", f"--threads={args.threads}",
         f"--dir={args.dir}", f"--jax_variant={args.jax_variant}",
         f"--pythae_variant={args.pythae_variant}", *extra]
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"),
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
             OMP_NUM_THREADS=str(args.threads))
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
  if proc.returncode:
    sys.stderr.write(proc.stderr[-4000:])
    raise SystemExit(f"the {worker} worker failed (seed {seed}).")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _mean_se(values):
  n = len(values)
  mean = sum(values) / n
  if n < 2:
    return {"mean": mean, "se": None, "n": n}
  var = sum((v - mean) ** 2 for v in values) / (n - 1)
  return {"mean": mean, "se": math.sqrt(var / n), "n": n}


def summarize_all(rows: dict[str, list[dict]]) -> dict:
  """``summarize`` of every (vae_jax variant, pythae variant) pair, and the
  paired differences between each pythae variant and pythae's default (the
  ingredient swaps), keyed like ``vae_jax:default vs pythae:pythae``."""
  out = {}
  jax_names = [n for n in rows if n.startswith("vae_jax:")]
  pythae_names = [n for n in rows if n.startswith("pythae:")]
  for j in jax_names:
    for p in pythae_names:
      out[f"{j} vs {p}"] = summarize(rows[j], rows[p])
  if "pythae:pythae" in rows:
    for p in pythae_names:
      if p != "pythae:pythae":
        out[f"{p} vs pythae:pythae"] = {
            k: v for k, v in summarize(rows[p], rows["pythae:pythae"]).items()
            if k.startswith("difference")}
  for j in jax_names:
    if j != "vae_jax:default" and "vae_jax:default" in rows:
      out[f"{j} vs vae_jax:default"] = {
          k: v for k, v in summarize(rows[j], rows["vae_jax:default"]).items()
          if k.startswith("difference")}
  return out


def summarize(rows_jax: list[dict], rows_pythae: list[dict]) -> dict:
  """Means per system and per-seed differences (first - second) with their s.e."""
  keys_ = ["steps_per_s", "neg_elbo", "iwae100"] + sorted(
      {k for r in rows_jax + rows_pythae for k in r
       if k.startswith(("iwae", "own_")) and k != "iwae100"})
  out = {"vae_jax": {}, "pythae": {}, "difference_vae_jax_minus_pythae": {}}
  for name, rows in (("vae_jax", rows_jax), ("pythae", rows_pythae)):
    for k in keys_:
      vals = [r[k] for r in rows if r.get(k) is not None]
      if vals:
        out[name][k] = _mean_se(vals)
  by_seed = {r["seed"]: r for r in rows_pythae}
  for k in ("neg_elbo", "iwae100") + tuple(k for k in keys_ if k.startswith("iwae") and
                                           not k.endswith("ms_per_image") and k != "iwae100"):
    diffs = [r[k] - by_seed[r["seed"]][k] for r in rows_jax
             if r["seed"] in by_seed and k in r and k in by_seed[r["seed"]]]
    if diffs:
      out["difference_vae_jax_minus_pythae"][k] = dict(_mean_se(diffs), per_seed=diffs)
  ratio = [r["steps_per_s"] / by_seed[r["seed"]]["steps_per_s"] for r in rows_jax
           if r["seed"] in by_seed]
  if ratio:
    out["speedup_steps_per_s"] = _mean_se(ratio)
  big = [k for k in rows_jax[0] if k.endswith("ms_per_image")] if rows_jax else []
  for k in big:
    own = "own_" + k
    pairs = [(by_seed[r["seed"]][own], r[k]) for r in rows_jax
             if r["seed"] in by_seed and own in by_seed[r["seed"]]]
    if pairs:
      out["speedup_" + k.replace("_ms_per_image", "_eval")] = _mean_se([p / j for p, j in pairs])
  return out


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1, alternating")
  parser.add_argument("--first_seed", type=int, default=0)
  parser.add_argument("--steps", type=int, default=5000)
  parser.add_argument("--iw_big", type=int, default=5000, help="K of the big IWAE (0: skip)")
  parser.add_argument("--threads", type=int, default=2, help="torch threads")
  parser.add_argument("--pythae_python", default=os.path.join(ROOT, ".venv-pythae", "bin",
                                                              "python"))
  parser.add_argument("--pythae_variant", default="pythae",
                      help="comma-separated: pythae, or parts of PYTHAE_VARIANTS joined by +")
  parser.add_argument("--jax_variant", default="default",
                      help="comma-separated: default, logvar, log_scale")
  parser.add_argument("--no_pythae", action="store_true")
  parser.add_argument("--no_jax", action="store_true")
  parser.add_argument("--out", default=None, help="also write the JSON here")
  parser.add_argument("--keep", default=None,
                      help="a folder for the exported data and pythae's weights (default: a "
                           "temporary one, removed at the end)")
  parser.add_argument("--worker", choices=("vae_jax", "pythae"), help=argparse.SUPPRESS)
  parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
  parser.add_argument("--dir", default=None, help=argparse.SUPPRESS)
  parser.add_argument("--pairing", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker == "vae_jax":
    print(json.dumps(jax_worker(args)))
    return
  if args.worker == "pythae":
    print(json.dumps(pythae_worker(args)))
    return

  import numpy as np
  sys.path.insert(0, HERE)
  import machine  # scripts/benchmarks/machine.py
  jax_variants = [] if args.no_jax else args.jax_variant.split(",")
  pythae_variants = [] if args.no_pythae else args.pythae_variant.split(",")
  paired = any(part in v.split("+") for v in pythae_variants for part in ("init", "order", "noise"))
  rows = {**{f"vae_jax:{v}": [] for v in jax_variants},
          **{f"pythae:{v}": [] for v in pythae_variants}}
  with tempfile.TemporaryDirectory() as tmp:
    if args.keep:
      os.makedirs(args.keep, exist_ok=True)
      tmp = args.keep
    args.dir = tmp
    ds = _load_data()
    np.savez(os.path.join(tmp, "data.npz"), train_x=ds.train_x, eval_x=ds.eval_x)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
      for variant in jax_variants:
        args.jax_variant = variant
        rows[f"vae_jax:{variant}"].append(_run_worker(sys.executable, args, "vae_jax", seed))
        print(json.dumps(rows[f"vae_jax:{variant}"][-1]), file=sys.stderr, flush=True)
      extra = []
      if paired:
        path = os.path.join(tmp, f"pairing_{seed}.npz")
        export_pairing(seed, args.steps, path)
        extra = [f"--pairing={path}"]
      for variant in pythae_variants:
        args.pythae_variant = variant
        row = _run_worker(args.pythae_python, args, "pythae", seed, extra)
        # The same evaluation code as vae_jax's rows, on pythae's weights (written
        # with a log sigma head: evaluated as a model whose head reads log sigma).
        ours = evaluate_params(params_from_npz(os.path.join(tmp, f"pythae_{seed}.npz")),
                               seed, args.iw_big, _jax_config(seed, 0, "log_scale"))
        row.update({k: v for k, v in ours.items() if not k.endswith("ms_per_image")})
        rows[f"pythae:{variant}"].append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
  info = machine.describe()
  result = {"benchmark": "vs_pythae", "machine": info, "steps": args.steps,
            "seeds": list(range(args.first_seed, args.first_seed + args.seeds)),
            "torch_threads": args.threads, "jax_variants": jax_variants,
            "pythae_variants": pythae_variants, "summary": summarize_all(rows), "rows": rows}
  text = json.dumps(result, indent=1)
  print(text)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
