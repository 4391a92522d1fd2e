"""The one training loop and its machinery.

``trainer`` (train state, fused steps, checkpoints, resume, NaN stop, logging),
``feed`` (batches on device or host), ``sharding`` (the data mesh),
``distributed`` (several processes), ``checkpointing`` (orbax), ``workdir``
(run files), ``progress`` (rate and ETA), ``optim`` (Adam and schedules).
"""
