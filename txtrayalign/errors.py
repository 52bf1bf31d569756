"""Errors every stage shares."""


class InputError(ValueError):
    """Bad input: the message names the file or key and the problem."""
