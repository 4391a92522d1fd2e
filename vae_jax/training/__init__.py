"""The one training loop and its machinery.

``trainer`` (train state, checkpoints, resume, NaN stop, logging), ``step``
(the jitted train step and its fused loop),
``feed`` (batches on device or host), ``sharding`` (the data mesh),
``distributed`` (several processes), ``checkpointing`` (orbax), ``workdir``
(run files), ``progress`` (rate and ETA), ``optim`` (Adam and schedules).
"""
