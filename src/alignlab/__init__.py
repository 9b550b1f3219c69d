"""alignlab: a laboratory for the alignment of language models."""

__version__ = "0.1.0"
