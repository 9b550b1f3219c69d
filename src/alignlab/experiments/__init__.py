"""Experiments: scripted sequences of stages that measure something and write a report."""
