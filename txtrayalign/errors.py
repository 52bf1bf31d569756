"""Errors that the command line turns into one clear line (see txtrayalign/cli.py)."""


class InputError(ValueError):
    """Bad input: the message names the file or key and the problem."""
