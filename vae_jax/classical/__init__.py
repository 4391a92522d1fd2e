"""Exact latent-variable and conjugate models: ``bayes`` (MLE, MAP, posterior,
evidence, predictive), ``gmm`` (EM for Gaussian mixtures), ``ppca``
(probabilistic PCA: closed form, EM, the ELBO identity).
"""
