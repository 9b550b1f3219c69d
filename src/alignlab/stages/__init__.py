"""One module per stage, each with the same shape: `run(cfg) -> Path` of a finished run folder."""
