"""Data: reading scans with geometry, source adapters, preprocessing, the prepared dataset."""
