"""Sampling: sampler registry (MONAI + diffusers schedulers), classifier-free guidance, fast path."""
