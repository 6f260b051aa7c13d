"""Networks: factories over MONAI networks, conditioning and text encoders."""
