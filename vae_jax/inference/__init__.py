"""Objectives and inference: ``likelihoods`` (p(x|z)), ``objectives`` (the
ELBO), ``iwae`` (the streamed importance-weighted bound), ``estimators``
(gradient estimators and their statistics), ``refinement`` (semi-amortized
inference: the encoder's q refined by gradient steps), ``amortization``
(per-example q* and the gaps), ``evaluation`` (per-example averages, active units).
"""
