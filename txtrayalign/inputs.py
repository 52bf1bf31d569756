"""Reading the tables a stage is given, with one clear error when one is not what it should be."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd

from txtrayalign.errors import InputError


def read_input_table(path: str | os.PathLike, columns: Sequence[str], what: str = "the table") -> pd.DataFrame:
    """The parquet table at `path`, which must hold `columns`.

    A missing or unreadable file raises FileNotFoundError / IsADirectoryError / PermissionError as
    they are; a file that is not parquet or lacks a column raises InputError naming the file.
    """
    try:
        df = pd.read_parquet(path)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid / ArrowIOError: not a parquet file
        raise InputError(f"{path}: not a readable parquet table ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; {what} needs {list(columns)} "
                         f"(have {list(df.columns)})")
    return df
