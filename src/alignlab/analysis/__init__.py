"""Analyses: weight-space deltas between stages (weights.py) and seed-level statistics (stats.py)."""
