"""Networks: factories over MONAI networks (autoencoder, denoising UNet), conditioning, text encoders."""
