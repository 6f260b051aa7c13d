"""Evaluation: feature extractors, metrics with confidence intervals, reports."""
