"""Flags of the exact latent-variable experiments (--experiment=gmm|ppca)."""

from absl import flags

from vae_jax.lvm_experiments import GMM_DATA
from vae_jax.lvm_experiments import LVM_DEFAULTS as _L

flags.DEFINE_enum("gmm_data", _L["gmm_data"], list(GMM_DATA),
                  "gmm: toy2d (2-D points from a known 5-component mixture) or dataset "
                  "(--dataset images projected on their top --gmm_pca_dim principal "
                  "components; fitted on train, scored on eval).")
flags.DEFINE_integer("num_components", _L["num_components"], "gmm: number of components K.")
flags.DEFINE_enum("covariance_type", _L["covariance_type"], ["full", "diag", "spherical"],
                  "gmm: covariance of each component.")
flags.DEFINE_integer("em_iters", _L["em_iters"], "gmm, ppca: maximum EM iterations.")
flags.DEFINE_float("em_tol", _L["em_tol"],
                   "gmm: stop when the average log-likelihood per example changes by less.")
flags.DEFINE_integer("num_restarts", _L["num_restarts"],
                     "gmm: initializations run in one vmap; the best final likelihood wins.")
flags.DEFINE_enum("init_method", _L["init_method"], ["kmeans++", "random"],
                  "gmm: k-means++ seeding + 10 Lloyd steps, or random responsibilities.")
flags.DEFINE_float("reg_covar", _L["reg_covar"],
                   "gmm: added to every covariance diagonal in the M-step.")
flags.DEFINE_integer("gmm_pca_dim", _L["gmm_pca_dim"],
                     "gmm with --gmm_data=dataset: number of principal components kept.")
flags.DEFINE_integer("toy_num_points", _L["toy_num_points"], "gmm toy2d: number of points.")
flags.DEFINE_integer("ppca_latent_dim", _L["ppca_latent_dim"],
                     "ppca: latent dimension M (the latent-space figure shows the first two).")
