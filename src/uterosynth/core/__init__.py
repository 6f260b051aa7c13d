"""Bottom layer."""
