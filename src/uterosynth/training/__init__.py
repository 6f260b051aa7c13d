"""One training loop (AMP, accumulation, EMA, DDP, checkpoints, resume) and per-model steps."""
