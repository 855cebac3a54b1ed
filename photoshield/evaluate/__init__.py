"""Metrics, robustness evaluation runner and reports."""
