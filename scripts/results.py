r"""The documentation's result tables, generated from the runs' own JSON so they cannot drift.

  python scripts/results.py run vae discrete_vae    # run these recipes, record results/<name>.json
  python scripts/results.py run all                 # every recipe (the slow ones take an hour)
  python scripts/results.py run bench_gmm           # a benchmark (scripts/benchmarks/README.md)
  python scripts/results.py record priors_cpu W     # record an existing run's W/summary.json
  python scripts/results.py render                  # rewrite the documents' generated tables
  python scripts/results.py check                   # exit 1 if a document differs from render

Each recipe in ``RECIPES`` is the command a user types (the runner with a
config, or ``scripts/reproduce.py``), run in a fresh process into
``--runs_dir``/<name>; its ``summary.json`` is copied into
``results/<name>.json`` with the command, the date, the commit and the
machine (``machine.describe()``: CPU, cores, versions, load average and the
machine's own matrix-product GFLOP/s, measured before and after the run, so
every speed in a table carries the conditions it was measured in). The
benchmarks of ``BENCHMARKS`` (``scripts/benchmarks/``, each printing one JSON
object that describes its machine) are run and recorded the same way, into
``scripts/benchmarks/results/<name>.json``.

``render`` fills each block between ``<!-- results:NAME -->`` and
``<!-- /results:NAME -->`` of every file ``documents()`` lists (README.md,
docs/*.md, scripts/benchmarks/README.md) with ``TABLES[NAME]`` applied to the
recorded results; ``check`` (run by tests/test_results.py) fails when a block
was edited by hand or a result was re-recorded without re-rendering.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import re
import subprocess
import sys
from typing import Callable

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts", "benchmarks"))
import machine  # pylint: disable=g-import-not-at-top,wrong-import-position  # scripts/benchmarks/

RESULTS = os.path.join(ROOT, "results")
BENCH_RESULTS = os.path.join(ROOT, "scripts", "benchmarks", "results")
README = os.path.join(ROOT, "README.md")


def documents() -> list[str]:
  """The Markdown files whose generated blocks ``render`` fills and ``check`` checks."""
  return ([README] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
          + [os.path.join(ROOT, "scripts", "benchmarks", "README.md")])


_RUNS_DIR = flags.DEFINE_string("runs_dir", "/tmp/vae_jax_results",
                                "Where `run` puts each recipe's run (RUNS_DIR/<name>).")
_COMMIT = flags.DEFINE_string("commit", None, "`record`: the commit the run was made at "
                              "(default: HEAD now).")

_RUNNER = [sys.executable, "-m", "experiments.main"]

# name -> the command (without --workdir) a user runs to get that result.
RECIPES: dict[str, list[str]] = {
    "vae": _RUNNER + ["--config=experiments/configs/vae.py"],
    "discrete_vae": _RUNNER + ["--config=experiments/configs/discrete_vae.py"],
    "autoregressive": _RUNNER + ["--config=experiments/configs/autoregressive.py"],
    "bayes": _RUNNER + ["--config=experiments/configs/bayes.py"],
    "gmm": _RUNNER + ["--config=experiments/configs/gmm.py"],
    "gmm_mnist_pca": _RUNNER + ["--config=experiments/configs/gmm.py:mnist_pca"],
    "ppca": _RUNNER + ["--config=experiments/configs/ppca.py"],
    "estimator_variance": _RUNNER + ["--config=experiments/configs/estimator_variance.py"],
    "amortization": _RUNNER + ["--config=experiments/configs/amortization.py"],
    "amortization_tiny_l2": _RUNNER + ["--config=experiments/configs/amortization.py:tiny,l2"],
    "priors_cpu": _RUNNER + ["--config=experiments/configs/priors.py:cpu"],
    "burda2015_cpu": [sys.executable, "scripts/reproduce.py", "all", "--cpu"],
}
# name -> a benchmark's command: it prints one JSON object (its machine inside),
# recorded in scripts/benchmarks/results/<name>.json.
BENCHMARKS: dict[str, list[str]] = {
    "bench_gmm": [sys.executable, "scripts/benchmarks/bench_gmm.py"],
    "bench_iwae_eval": [sys.executable, "scripts/benchmarks/bench_iwae_eval.py",
                        "--num_images=200"],
    "bench_vae_step": [sys.executable, "scripts/benchmarks/bench_vae_step.py",
                       "--batch_sizes=100", "--ks=50", "--repeats=5"],
    # The posterior families' step at the same flow_steps (bench_vae_step.py's families alone).
    "bench_vae_families": [sys.executable, "scripts/benchmarks/bench_vae_step.py",
                           "--only_families", "--ks=50", "--repeats=5", "--flow_steps=2",
                           "--families=gaussian,iaf,coupling,coupling_affine"],
    "bench_step_levers": [sys.executable, "scripts/benchmarks/bench_step_levers.py"],
    "profile_step": [sys.executable, "scripts/benchmarks/profile_step.py"],
}


def _commit() -> str | None:
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None


def _described(measured: dict) -> dict:
  """A benchmark's machine in ``machine.describe()``'s keys: output written before
  machine.py said ``affinity`` for ``cores`` and ``loadavg_start`` for
  ``load_average`` (and measured no matmul rate, which stays absent)."""
  out = dict(measured)
  if "cores" not in out and "affinity" in out:
    out["cores"] = out["affinity"]
  if "load_average" not in out and "loadavg_start" in out:
    out["load_average"] = out["loadavg_start"]
  return out


def _record(name: str, workdir: str, command: list[str] | None, before: dict | None,
            commit: str | None = None) -> dict:
  """results/NAME.json (a benchmark's: scripts/benchmarks/results/NAME.json) from
  WORKDIR/summary.json (or a benchmark's JSON file)."""
  path = workdir if workdir.endswith(".json") else os.path.join(workdir, "summary.json")
  with open(path) as f:
    summary = json.load(f)
  if name in BENCHMARKS:        # the benchmark measured its machine itself, at its start
    measured, how = _described(summary["machine"]), "by the benchmark"
  elif before is None:
    # A run recorded afterwards keeps the machine's description but no load
    # or matmul rate: those would describe the recording, not the run.
    measured, how = machine.describe(measure=False), "not during the run (no speeds)"
  else:
    after = machine.describe()
    measured = {**after, "load_average": [before["load_average"][0], after["load_average"][0]],
                "matmul_gflops": round((before["matmul_gflops"] + after["matmul_gflops"]) / 2,
                                       1)}
    how = "before and after the run"
  record = {
      "name": name,
      "command": " ".join("python" if c == sys.executable else c
                          for c in command) if command else None,
      "recorded": datetime.date.today().isoformat(), "commit": commit or _commit(),
      "machine": measured, "machine_measured": how, "summary": summary,
  }
  directory = BENCH_RESULTS if name in BENCHMARKS else RESULTS
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, f"{name}.json"), "w") as f:
    json.dump(record, f, indent=1, sort_keys=True)
    f.write("\n")
  return record


def run_recipe(name: str, root: str) -> dict:
  """Runs one recipe in a fresh process and records its summary."""
  workdir = os.path.join(root, name)
  commit = _commit()                                  # the code that runs, not a later HEAD
  if name in BENCHMARKS:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      subprocess.run(BENCHMARKS[name], cwd=ROOT, check=True, stdout=f)
    return _record(name, workdir, BENCHMARKS[name], None, commit)
  command = RECIPES[name] + [f"--workdir={workdir}"]
  before = machine.describe()
  subprocess.run(command, cwd=ROOT, check=True)
  return _record(name, workdir, command, before, commit)


def load_results(directory: str = RESULTS) -> dict[str, dict]:
  """Every recorded result by name: the recipes' in ``directory`` and, beside
  them, the benchmarks' of ``BENCHMARKS`` in scripts/benchmarks/results/ (which
  also holds other benchmarks' own JSON, not in this format)."""
  out = {}
  for folder, names in ((directory, None), (BENCH_RESULTS, BENCHMARKS)):
    for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
      if entry.endswith(".json") and (names is None or entry[:-5] in names):
        with open(os.path.join(folder, entry)) as f:
          out[entry[:-5]] = json.load(f)
  return out


# ----------------------------------------------------------------------------
# Tables: each takes every recorded result and returns Markdown.


def _pm(value: float, stderr: float, digits: int = 2) -> str:
  return f"{value:.{digits}f} ± {stderr:.{digits}f}"


def _signed(x: float, digits: int = 2) -> str:
  return f"{x:+.{digits}f}".replace("-", "−")


def _num(x: float, digits: int = 2) -> str:
  return f"{x:.{digits}f}".replace("-", "−")


def _sci(x: float) -> str:
  """4.9e2, not 4.9e+02."""
  mantissa, exponent = f"{x:.1e}".split("e")
  return f"{mantissa}e{int(exponent)}"


def _ratio(x: float, digits: int = 3, most: int = 6) -> str:
  """A ratio near 1 with ``digits`` decimals, or more (up to ``most``) until the
  text shows that it is not 1: 1.020, 0.999, 1.0001, 0.9997."""
  for d in range(digits, most + 1):
    text = f"{x:.{d}f}"
    if x == 1 or float(text) != 1:
      break
  return text


def _moved(arg: str) -> str:
  """A recorded command's script at its path today: the benchmarks recorded
  before they moved to scripts/benchmarks/ name scripts/X.py."""
  if (arg.startswith("scripts/") and not os.path.exists(os.path.join(ROOT, arg))
      and os.path.exists(os.path.join(ROOT, "scripts", "benchmarks", arg[len("scripts/"):]))):
    return "scripts/benchmarks/" + arg[len("scripts/"):]
  return arg


def _footer(records: list[dict]) -> str:
  """Where and when: one line per distinct (machine, date, commit)."""
  lines = []
  for r in records:
    m = r["machine"]
    command = " ".join(_moved(a) for a in r["command"].split()
                       if not a.startswith("--workdir="))
    line = (f"`{r['name']}`: `{command}` at {r['commit']} on {r['recorded']}, "
            f"{machine.label(m)}")
    if r.get("machine_measured") == "by the benchmark":
      line += f" (measured by the benchmark), load average {m['load_average'][0]:.1f} at its start"
    elif "load_average" in m:
      line += (f" (measured before and after the run), load average "
               f"{m['load_average'][0]:.1f} and {m['load_average'][1]:.1f}")
    lines.append(line)
  return "\n".join(f"- {l}" for l in lines)


def _in_order(mapping: dict, first: tuple[str, ...]) -> list:
  """mapping's items, those named in ``first`` first in that order (summary.json
  sorts its keys; the tables follow the configs' order)."""
  return sorted(mapping.items(), key=lambda kv: (first.index(kv[0]) if kv[0] in first
                                                 else len(first), kv[0]))


def _markdown(head: str, rows: list[str], records: list[dict], text: str = "") -> str:
  """A table: its head, its rows, an optional paragraph, and where each run was made."""
  return "\n\n".join(p for p in ("\n".join([head] + rows), text, _footer(records)) if p)


def _rate(summary: dict) -> str:
  s = summary.get("steps_per_s")
  return "—" if s is None else f"{s:,.0f}"


def table_default_runs(results: dict[str, dict]) -> str:
  """Headline numbers of the default experiments (held-out, nats per image)."""
  def vae(s):
    return (f"−ELBO {_num(s['eval_neg_elbo'])}; IWAE-{s['eval_iw_samples']} NLL "
            f"{_num(s['eval_neg_log_likelihood_iw'])}")

  def discrete_vae(s):
    return (f"−ELBO {_num(s['eval_exact_neg_elbo'])} exact (Monte-Carlo "
            f"{_num(s['eval_neg_elbo'])}); NLL {_num(s['eval_exact_nll'])} exact")

  def autoregressive(s):
    return f"NLL {_num(s['eval_nll'])} exact ({s['eval_bits_per_dim']:.3f} bits/dim)"

  def gmm(s):
    return (f"log p(x) {_num(s['train_log_likelihood'], 3)} per point (the generating "
            f"mixture: {_num(s['true_params_log_likelihood'], 3)}), adjusted Rand index "
            f"{s['adjusted_rand_index']:.3f}, {s['num_iters']} EM iterations")

  def gmm_mnist_pca(s):
    return (f"log p(x) {_num(s['train_log_likelihood'])} train, "
            f"{_num(s['eval_log_likelihood'])} held-out")

  def ppca(s):
    return (f"log p(x) {_num(s['closed_form_log_likelihood'])} train, "
            f"{_num(s['eval_log_likelihood'])} held-out (closed form); EM "
            f"{s['em_gap_to_closed_form']:.2f} short after {s['em_iters']} iterations")

  def bayes(s):
    row = s["table"]["beta_bernoulli"]["1"]
    return (f"Beta-Bernoulli at n = 1, held-out log loss: predictive "
            f"{row['logloss_predictive']:.3f}, MAP plug-in {row['logloss_map']:.3f}, "
            f"MLE plug-in {'+∞' if row['logloss_mle'] == 'inf' else _num(row['logloss_mle'], 3)}")

  cells = [("vae", "vae.py", vae), ("discrete_vae", "discrete_vae.py", discrete_vae),
           ("autoregressive", "autoregressive.py", autoregressive), ("gmm", "gmm.py", gmm),
           ("gmm_mnist_pca", "gmm.py:mnist_pca", gmm_mnist_pca), ("ppca", "ppca.py", ppca),
           ("bayes", "bayes.py", bayes)]
  rows, shown = [], []
  for name, config, result in cells:
    if name in results:
      s = results[name]["summary"]
      steps = f"{s['step']:,}" if "step" in s else "—"
      rows.append(f"| `{config}` | {result(s)} | {steps} | {_rate(s)} |")
      shown.append(results[name])
  head = ("| config | result (held-out unless said; nats) | steps | steps/s |\n"
          "| --- | --- | --- | --- |")
  return _markdown(head, rows, shown)


def table_estimator_variance(results: dict[str, dict]) -> str:
  r = results["estimator_variance"]
  s = r["summary"]
  order = ("reparam", "stl", "score", "score_baseline", "score_loo", "iwae", "vimco", "dreg")
  rows = [f"| `{n}` ({s['objective'][n].upper() if s['objective'][n] == 'iwae' else 'ELBO'}"
          f"{', S = ' + str(s['num_samples']) if s['objective'][n] == 'iwae' else ''}) | "
          f"{_sci(var)} | {s['snr'][n]:.2g} |" for n, var in _in_order(s["variance"], order)]
  head = (f"| estimator (objective) | total encoder-gradient variance, S = {s['num_samples']} | "
          "mean SNR |\n| --- | --- | --- |")
  v, ratio, by_step = s["variance"], s["variance_ratio"], s["variance_ratio_by_step"]
  sizes = sorted(ratio, key=int)
  first_step = min(by_step, key=int)
  reparam = [s["variance_by_num_samples"][n]["reparam"]["total_variance"] for n in sizes]
  text = (f"The score function's variance is {ratio[sizes[0]]:,.0f}x the reparametrized one at "
          f"S = {sizes[0]} ({ratio[sizes[-1]]:,.0f}x at S = {sizes[-1]}; "
          f"{by_step[first_step]:,.0f}x at step {first_step}); the running-mean baseline "
          f"divides it by {v['score'] / v['score_baseline']:,.0f} and the leave-one-out baseline "
          f"by {v['score'] / v['score_loo']:,.0f}. The reparametrized ELBO gradient's variance "
          f"at S = {', '.join(sizes)}: {', '.join(f'{x:.3g}' for x in reparam)}.")
  return _markdown(head, rows, [r], text)


def table_amortization(name: str) -> Callable[[dict], str]:
  def table(results: dict[str, dict]) -> str:
    r = results[name]
    fams = r["summary"]["families"]
    rows = []
    for f, v in _in_order(fams, ("gaussian", "planar", "iaf")):
      label = f"`{f}`" + (f" ({v['flow_steps']} flow steps)" if v.get("flow_steps") else "")
      rows.append(
          f"| {label} | {_num(v['amortized_elbo'])} | {_num(v['optimized_elbo'])} | "
          f"{_num(v['log_likelihood_iw'])} | {_pm(v['amortization_gap'], v['amortization_gap_stderr'])}"
          f" | {_pm(v['approximation_gap'], v['approximation_gap_stderr'])} |")
    head = ("| family | amortized ELBO | optimized ELBO | IW log p(x) | amortization gap | "
            "approximation gap |\n| --- | --- | --- | --- | --- | --- |")
    savae = r["summary"].get("savae")
    return _markdown(head, rows, [r], _savae_table(savae) if savae else "")
  return table


def _savae_table(s: dict) -> str:
  """The amortization experiment's ``savae``: the VAE and the SA-VAE of the same encoder."""
  def row(label, v, refined):
    after = (f"{_num(v['refined_elbo'])} | {_pm(v['refined_amortization_gap'], v['refined_amortization_gap_stderr'])}"
             if refined else "— | —")
    return (f"| {label} | {_num(v['amortized_elbo'])} | {after} | {_num(v['optimized_elbo'])} | "
            f"{_num(v['log_likelihood_iw'])} | "
            f"{_pm(v['amortization_gap'], v['amortization_gap_stderr'])} | "
            f"{_signed(v['local_convergence'], 4)} ± {v['local_convergence_stderr']:.4f} |")

  def change(key):
    return (f"{_signed(s[key])} ± {s[key + '_stderr']:.2f} nats "
            f"({s[key + '_verdict']})")

  head = (f"| `{s['posterior']}`, the same encoder | amortized ELBO (encoder's q) | "
          f"after {s['refine_steps']} refinement steps | gap left after them | optimized ELBO | "
          "IW log p(x) | amortization gap | q* optimized again: ELBO change |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- |")
  rows = [row("VAE", s["vae"], False),
          row(f"SA-VAE (K = {s['refine_steps']}, refine_lr {s['refine_lr']:g}, "
              f"{s['refine_gradient']})", s["savae"], True)]
  return ("\n".join([head] + rows) + "\n\nThe SA-VAE's amortization gap minus the VAE's, "
          f"paired over the examples: its encoder's q {change('amortization_gap_change')}; "
          f"after its {s['refine_steps']} steps {change('refined_amortization_gap_change')}.")


def table_priors(results: dict[str, dict]) -> str:
  r = results["priors_cpu"]
  s = r["summary"]
  rows = []
  for p, v in _in_order(s["table"], ("standard", "mog", "vamp")):
    label = f"`{p}`" + (f" (K = {v['components']})" if v.get("components") else "")
    diff = "0" if p == "standard" else _pm(v["vs_standard"], v["vs_standard_stderr"])
    if p != "standard":
      diff = "+" + diff if v["vs_standard"] >= 0 else diff.replace("-", "−")
    paper = "—" if v.get("paper") is None else _num(v["paper"])
    rows.append(f"| {label} | {_pm(v['log_px'], v['log_px_stderr']).replace('-', '−')} | {diff} | "
                f"{_num(v['neg_elbo'])} | {paper} |")
  head = (f"| prior | held-out log p(x), IWAE-{s['iw_samples']} | vs standard (paired) | "
          "held-out −ELBO | paper |\n| --- | --- | --- | --- | --- |")
  return _markdown(head, rows, [r])


def burda_table(rows: list[dict]) -> tuple[str, list[str]]:
  """The head and rows of the Burda et al. comparison for ``rows`` of one number
  of stochastic layers (``scripts/reproduce.py``'s row dicts, which it prints
  with this too)."""
  out = []
  for row in rows:
    units = ("+".join(str(u) for u in row["active_units_per_layer"])
             if row.get("active_units_per_layer") else str(row["active_units"]))
    paper_units = "—" if row["paper_active_units"] is None else str(row["paper_active_units"])
    out.append(f"| `{row['variant']}` | {row['paper_nll']:.2f} | "
               f"{_pm(row['nll'], row['nll_stderr'])} | {paper_units} | {units} | "
               f"{row['train_steps']:,} |")
  k = rows[0]["iw_samples"]
  head = (f"| variant | paper NLL (60k images, 3,280 epochs) | achieved NLL, k = {k} "
          f"({rows[0]['num_examples']:,} held-out images) | paper active units | "
          "achieved active units | train steps |\n| --- | --- | --- | --- | --- | --- |")
  return head, out


def table_burda(layers: int) -> Callable[[dict], str]:
  def table(results: dict[str, dict]) -> str:
    r = results["burda2015_cpu"]
    head, rows = burda_table([row for row in r["summary"]["rows"] if row["layers"] == layers])
    return _markdown(head, rows, [r])
  return table


def table_bench_gmm(results: dict[str, dict]) -> str:
  r = results["bench_gmm"]
  s = r["summary"]
  head = (f"| N = {s['n']:,}, D = {s['d']}, K = {s['k']}, {s['iters']} iterations, "
          f"{s['dtype']} | seconds | speed-up over scikit-learn |\n| --- | --- | --- |")
  rows = [f"| scikit-learn `GaussianMixture` | {s['sklearn_s']:.2f} | 1x |",
          f"| `vae_jax.classical.gmm`, compiled (median) | {s['vae_jax_compiled_s']:.2f} | "
          f"**{s['speedup_compiled']:.1f}x** |",
          f"| `vae_jax.classical.gmm`, first call incl. tracing and XLA compilation | "
          f"{s['vae_jax_first_call_s']:.2f} | **{s['speedup_including_compile']:.1f}x** |"]
  text = (f"Final average log-likelihoods agree to "
          f"{s['abs_log_likelihood_difference']:.1e}.")
  return _markdown(head, rows, [r], text)


def table_bench_iwae_eval(results: dict[str, dict]) -> str:
  r = results["bench_iwae_eval"]
  s = r["summary"]
  limit = s["matmul_limit"]["jax_jit"]
  streamed = s["paths"]["streamed"]["ms_per_image"]
  labels = {
      "streamed": (f"`vae_jax.inference.iwae` streamed (chunks of {s['paths']['streamed']['chunk_size']} "
                   f"samples x {s['paths']['streamed']['batch_size']} images in one `scan`)"),
      "reference": ("the old `objectives.iwae_bound` path (all K decoder outputs at once, "
                    "`jax.nn.softplus`)"),
      "reference_new_softplus": "the same with the fused softplus",
      "torch_loop": "PyTorch per-image loop (repeat K times, encode, sample, decode, logsumexp)",
  }
  rows = []
  for name, path in _in_order(s["paths"], tuple(labels)):
    ms = path["ms_per_image"]
    rows.append(f"| {labels[name]} | {ms:.1f} | {ms * 10:.0f} s | {path['gflop_per_s']:.0f} | "
                f"{ms / streamed:.2f}x | {ms / limit['ms']:.2f}x |")
  rows.append(f"| the matrix products alone (XLA, one image's decode + encode) | "
              f"{limit['ms']:.1f} | {limit['ms'] * 10:.0f} s | {limit['gflop_per_s']:.0f} | — | "
              f"1x |")
  head = (f"| path (K = {s['num_samples']:,}, {s['num_images_timed']} images timed) | ms per "
          "image | 10,000 images | GFLOP/s | time / streamed | time / matrix products |\n"
          "| --- | --- | --- | --- | --- | --- |")
  return _markdown(head, rows, [r])


def table_bench_vae_step(results: dict[str, dict]) -> str:
  r = results["bench_vae_step"]
  out = []
  for batch, b in r["summary"]["results"].items():
    chained, independent = b["matmul_limit"], b["independent_products_limit"]

    def row(label, rate):
      return (f"| {label} | {rate:,.0f} | {rate / chained['steps_per_s']:.0%} | "
              f"{rate / independent['steps_per_s']:.0%} |")

    rows = [row(f"the {independent['products_per_step']} products, each alone "
                f"({independent['ms_per_step']:.2f} ms, {independent['gflop_per_s']:.0f} GFLOP/s)",
                independent["steps_per_s"]),
            row(f"the same products chained in one loop ({chained['ms_per_step']:.2f} ms, "
                f"{chained['gflop_per_s']:.0f} GFLOP/s)", chained["steps_per_s"])]
    for k, runner in b["vae_jax_runner"]["k"].items():
      for m, what in (("trainer", "steady state (the trainer's `steps_per_s`)"),
                      ("loop", "loop (the call less a 0-step call)"),
                      ("wall", "the whole call's wall clock")):
        rows.append(row(f"runner loop, k = {k}: {what}", runner[f"{m}_steps_per_s"]))
    rows.append(row("the jitted train step alone, batches pre-uploaded",
                    b["vae_jax_step_fn"]["steps_per_s"]))
    if "torch_eager" in b:
      rows.append(row("PyTorch eager (host batching and binarization)",
                      b["torch_eager"]["steps_per_s"]))
    out.append(f"| batch {batch} | steps/s | of the chained limit | of the independent limit |\n"
               "| --- | --- | --- | --- |\n" + "\n".join(rows))
    paired = [(k, runner["paired_fraction_of_independent_limit"])
              for k, runner in b["vae_jax_runner"]["k"].items()
              if "paired_fraction_of_independent_limit" in runner]
    for k, p in paired:
      figures = "; ".join(
          f"{what} {p[m]['median']:.1%} (rounds {', '.join(f'{f:.1%}' for f in p[m]['rounds'])})"
          for m, what in (("trainer", "steady state"), ("loop", "loop"), ("wall", "wall clock")))
      out.append(f"Paired by round (batch {batch}, k = {k}: each runner call against the "
                 f"independent limit timed just before it, median of "
                 f"{len(p['trainer']['rounds'])} rounds): {figures}.")
    if c := b["vae_jax_runner"].get("chained_fraction_of_independent_limit"):
      out.append("The step's products alone, chained as the step chains them, paired the "
                 f"same way: {c['median']:.1%} of the independent limit (rounds "
                 f"{', '.join(f'{f:.1%}' for f in c['rounds'])}): the ceiling of a step "
                 "that did nothing else.")
  if fam := r["summary"].get("families"):
    out.append(_families_table(fam))
  return "\n\n".join(out) + "\n\n" + _footer([r])


def _families_table(fam: dict, order: tuple[str, ...] = ()) -> str:
  """bench_vae_step's ``families``: each family's runner loop against the Gaussian's, in
  ``order`` (the benchmark's --families; the recorded JSON sorts its keys)."""
  variant = lambda v: "the default config" if v == "(default)" else f"`vae.py:{v}`"
  if fam.get("flow_steps") is None:         # each variant's own maps (the earlier records)
    rows = [f"| {name} ({variant(f['variant'])}) | {f['trainer_steps_per_s']:,.0f} | "
            f"{f['time_per_step_vs_gaussian']:.2f} |" for name, f in fam["families"].items()]
    return (f"| family: runner loop, batch {fam['batch_size']}, k = {fam['k']}, "
            f"{fam['num_steps']:,} steps | steps/s | time per step / the Gaussian's |\n"
            "| --- | --- | --- |\n" + "\n".join(rows))
  what = {"spline": "spline coupling layers", "affine": "affine coupling layers"}

  def paired(f):
    p = f["paired_time_vs_gaussian"]
    return f"{p['median']:.2f} ({min(p['rounds']):.2f} to {max(p['rounds']):.2f})"

  rows = [f"| {name} ({variant(f['variant'])}"
          + (f", {what[f['coupling_transform']]}" if f.get("coupling_transform") else "")
          + f") | {f['flow_steps'] or '—'} | {f['trainer_steps_per_s']:,.0f} | "
          f"{f['ms_per_step']:.2f} | {paired(f)} |"
          for name, f in _in_order(fam["families"], tuple(order))]
  return (f"| family: runner loop, batch {fam['batch_size']}, k = {fam['k']}, "
          f"{fam['num_steps']:,} steps, median of {fam['repeats']} rounds | flow steps | "
          "steps/s | ms per step | time per step / the Gaussian's, paired by round "
          "(median, range) |\n"
          "| --- | --- | --- | --- | --- |\n" + "\n".join(rows))


def table_bench_vae_families(results: dict[str, dict]) -> str:
  r = results["bench_vae_families"]
  return (_families_table(r["summary"]["families"], r["summary"]["flags"]["families"])
          + "\n\n" + _footer([r]))


def table_bench_step_levers(results: dict[str, dict]) -> str:
  """Each lever's paired change of the training step's time, its bytes, its numbers."""
  r = results["bench_step_levers"]
  s = r["summary"]
  rows = []
  for name, lever in s["levers"].items():
    d, same = lever["paired_ms"], lever["same_numbers"]
    lo, hi = d["interval"]
    numbers = ("bit-identical" if same["bit_identical"]
               else f"differ (params {_sci(same['max_rel_param_diff'])} rel.)")
    if lever.get("same_hlo") and name != "baseline_again":
      numbers += "; the same optimized HLO"
    rows.append(f"| `{name}`: {lever['description']} | {_signed(d['median'])} "
                f"({_signed(lo)} to {_signed(hi)}) | {d['verdict']} | "
                f"{_ratio(lever['cost_vs_baseline']['bytes_accessed'], 2, 3)} | {numbers} |")
  head = ("| lever | change in ms per step (90% interval) | verdict | bytes accessed / "
          "baseline's | numbers after 3 steps |\n| --- | --- | --- | --- | --- |")
  f = s["flags"]
  two = s["baseline"].get("reference") == "baseline_mean"
  text = (f"Baseline: the trainer's compiled loop as it ships, {s['baseline']['ms_per_step']:.2f} "
          f"ms per step (median). {f['rounds']} rounds, each timing every program for "
          f"{f['dispatches']} dispatches of {f['steps']} steps in a shuffled order; a lever's "
          "change is the median over rounds of (lever − "
          + ("the mean of the baseline's two copies" if two else "baseline")
          + ") in the same round, its interval a bootstrap of that median. "
          + ("`baseline_again` is the baseline compiled a second time, against the first: "
             "a verdict needs a median beyond half the larger end of its interval. " if two
             else "")
          + "Bytes accessed: XLA's cost analysis of the compiled program, which load does not "
          "move. \"The same optimized HLO\": an XLA option that left the program as it was "
          "(it acts, if at all, below HLO).")
  return _markdown(head, rows, [r], text)


def table_profile_step(results: dict[str, dict]) -> str:
  """The training step's time by part, from one jax.profiler trace."""
  r = results["profile_step"]
  s = r["summary"]
  rows = [f"| {p['part']} | {p['ms_per_step']:.2f} | {p['share']:.0%} |" for p in s["parts"]]
  head = "| part of the step | ms per step | share |\n| --- | --- | --- |"
  t, prod, f = s["ms_per_step"], s["products"], s["flags"]
  text = (f"{f['dispatches']} dispatches of {f['steps']} steps of the trainer's compiled loop, "
          f"traced: {t['traced']:.2f} ms per step, against {t['untraced']:.2f} ms for the same "
          f"dispatches untraced (the profiler's own cost: {t['traced'] / t['untraced'] - 1:.0%}"
          "). Each instant is shared equally among "
          "the operations running in it, so the parts add up to the step. The "
          f"{prod['count']} products took {prod['in_step_shared_ms']:.2f} ms of the step "
          f"({prod['in_step_own_ms']:.2f} ms adding their own durations, two at once counting "
          f"twice); the same {prod['alone_count']} products, each compiled alone in a loop (the "
          f"independent limit), took {prod['alone_ms']:.2f} ms in the same run.")
  return _markdown(head, rows, [r], text)


TABLES: dict[str, Callable[[dict], str]] = {
    "default_runs": table_default_runs,
    "estimator_variance": table_estimator_variance,
    "amortization": table_amortization("amortization"),
    "amortization_tiny_l2": table_amortization("amortization_tiny_l2"),
    "priors_cpu": table_priors,
    "burda2015_cpu_1": table_burda(1),
    "burda2015_cpu_2": table_burda(2),
    "bench_gmm": table_bench_gmm,
    "bench_iwae_eval": table_bench_iwae_eval,
    "bench_vae_step": table_bench_vae_step,
    "bench_vae_families": table_bench_vae_families,
    "bench_step_levers": table_bench_step_levers,
    "profile_step": table_profile_step,
}

_BLOCK = re.compile(r"(<!-- results:(\w+) -->\n)(.*?)(<!-- /results:\2 -->)", re.DOTALL)


def render(text: str, results: dict[str, dict]) -> str:
  """``text`` with every generated block re-rendered; unknown names raise."""
  def fill(m):
    if m.group(2) not in TABLES:
      raise KeyError(f"block results:{m.group(2)} has no table in TABLES")
    return m.group(1) + TABLES[m.group(2)](results) + "\n" + m.group(4)
  return _BLOCK.sub(fill, text)


def blocks(text: str) -> list[str]:
  return [m.group(2) for m in _BLOCK.finditer(text)]


def main(argv):
  if len(argv) < 2 or argv[1] not in ("run", "record", "render", "check"):
    raise app.UsageError("usage: results.py run NAME...|all | record NAME WORKDIR | render | check")
  command = argv[1]
  if command == "run":
    names = list(RECIPES) if argv[2:] == ["all"] else argv[2:]
    unknown = [n for n in names if n not in RECIPES and n not in BENCHMARKS]
    if unknown or not names:
      raise app.UsageError(f"unknown recipe(s) {unknown}; recipes: {', '.join(RECIPES)}; "
                           f"benchmarks: {', '.join(BENCHMARKS)}")
    for name in names:
      run_recipe(name, _RUNS_DIR.value)
    return
  if command == "record":
    if len(argv) != 4:
      raise app.UsageError("usage: results.py record NAME WORKDIR")
    _record(argv[2], argv[3], RECIPES.get(argv[2]) or BENCHMARKS.get(argv[2]), None,
            _COMMIT.value)
    return
  recorded = load_results()
  stale = []
  for path in documents():
    with open(path) as f:
      text = f.read()
    new = render(text, recorded)
    if command == "render" and new != text:
      with open(path, "w") as f:
        f.write(new)
    elif new != text:
      stale.append(os.path.relpath(path, ROOT))
  if stale:
    print(f"{', '.join(stale)}: generated tables differ from the recorded results; run "
          "`python scripts/results.py render`", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
