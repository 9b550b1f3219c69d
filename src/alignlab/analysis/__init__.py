"""Analyses of models themselves (not of their samples): weight-space deltas between stages."""
