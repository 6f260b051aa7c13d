"""Network factories over MONAI networks, perceptual losses and latent helpers."""
