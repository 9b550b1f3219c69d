"""What a person sees: by default one progress bar per stage (with the number that matters in it) and one
line per finished stage; `--verbose` brings back the libraries' raw logs (every Trainer log dict, the
loading and dataset-map bars, info messages)."""
from __future__ import annotations

import os

_VERBOSE = "ALIGNLAB_VERBOSE"


def configure(verbose: bool) -> None:
    os.environ[_VERBOSE] = "1" if verbose else "0"
    if verbose:
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import warnings

    # the libraries' deprecation notices about their own internals are nothing a user can act on
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()  # warnings and info lines; errors still show
    transformers.utils.logging.disable_progress_bar()  # "Loading weights", "Writing model shards"
    datasets.disable_progress_bars()  # every dataset map / filter
    datasets.utils.logging.set_verbosity_error()


def quiet_datatrove() -> None:
    """datatrove logs every step's start, stats and warnings through loguru: shown with --verbose only."""
    from datatrove.utils.logging import logger

    if not verbose():
        logger.remove()


def verbose() -> bool:
    return os.environ.get(_VERBOSE) == "1"


def quiet_progress_callback():
    """The Trainer's progress bar with loss / reward / KL in it, instead of a printed dict per logged step."""
    from transformers.trainer_callback import ProgressCallback

    class QuietProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and self.training_bar is not None and logs:
                shown = {k: f"{logs[k]:.4g}" for k in ("loss", "reward", "kl") if isinstance(logs.get(k), (int, float))}
                if shown:
                    self.training_bar.set_postfix(shown, refresh=False)

    return QuietProgress
