"""The one exception type for bad input: the CLI prints its message on one line and exits 2."""


class InputError(Exception):
    """Bad input from the user: a file, line or field that is wrong. Message names it."""


class TrainingFailed(Exception):
    """Training could not go on (e.g. a non-finite loss); the run is marked failed. Exit 1."""
