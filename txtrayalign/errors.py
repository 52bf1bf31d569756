"""Errors the command line reports as one line (no traceback)."""


class InputError(ValueError):
    """Bad input: the message names the file or key and the problem."""
