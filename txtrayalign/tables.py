"""The parquet tables the stages pass to each other: one declaration of each table's columns.

`read_table(path, kind)` reads a table and checks that it has the columns its kind declares (the
contracts of docs/design.md), so a wrong or stale file stops with one message naming the file and
what is missing, not a KeyError three functions later.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pandas as pd

from txtrayalign.constants import OBSERVATIONS
from txtrayalign.errors import InputError

# kind -> the columns every table of that kind has (more may follow; the order is the writer's).
COLUMNS: dict[str, list[str]] = {
    "index_images": ["dicom_id", "subject_id", "study_id", "path", "view", "split", "group", "format"],
    "index_studies": ["subject_id", "study_id", "report_path", "split", "group"],
    "index_problems": ["kind", "path", "subject_id", "study_id", "dicom_id", "message"],
    "image_shard_index": ["dicom_id", "shard", "row"],
    "image_skipped": ["path", "dicom_id", "error_kind", "message"],
    "sections": ["subject_id", "study_id", "split", "label_text", "train_text"],
    "sentences": ["sentence_id", "subject_id", "study_id", "split", "section", "position", "sentence"],
    "text_problems": ["study_id", "path", "kind", "message"],
    "report_labels": ["subject_id", "study_id", *OBSERVATIONS],
    "sentence_labels": ["sentence_id", "study_id", *OBSERVATIONS],
    "split": ["subject_id", "study_id", "dicom_id", "split"],
    "predictions": ["dicom_id", "study_id", "rank", "sentence_id", "score", "text", *OBSERVATIONS],
}


class TableError(InputError):
    """A table that is missing, unreadable or lacks columns its kind must have."""


def missing_columns(columns, kind: str) -> list[str]:
    have = set(columns)
    return [c for c in COLUMNS[kind] if c not in have]


def check_columns(df: pd.DataFrame, kind: str, path: str | os.PathLike) -> pd.DataFrame:
    missing = missing_columns(df.columns, kind)
    if missing:
        raise TableError(f"{path}: not a {kind} table, missing column(s) {missing} (has {list(df.columns)})")
    return df


def read_table(
    path: str | os.PathLike, kind: str, columns: list[str] | None = None, all_columns: bool = False
) -> pd.DataFrame:
    """The parquet table at `path`, checked against `kind` (a key of COLUMNS).

    With `columns` (each one declared for `kind`), only those are required and read (every column of
    the file with `all_columns`: e.g. the sections a setting names); without, every declared column is
    required and the whole table is read.
    """
    import pyarrow.parquet as pq

    if kind not in COLUMNS:
        raise KeyError(f"unknown table kind {kind!r}; known: {', '.join(COLUMNS)}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, f"{os.strerror(errno.ENOENT)} (a {kind} table)", str(path))
    try:
        names = pq.read_schema(path).names
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise TableError(f"{path}: not a readable parquet file ({type(e).__name__}: {e})") from e
    if columns is not None:
        undeclared = [c for c in columns if c not in COLUMNS[kind]]
        if undeclared:
            raise KeyError(f"column(s) {undeclared} are not declared for {kind} tables in txtrayalign.tables")
    missing = [c for c in (columns if columns is not None else COLUMNS[kind]) if c not in names]
    if missing:
        raise TableError(f"{path}: not a {kind} table, missing column(s) {missing} (has {names})")
    return pd.read_parquet(path, columns=None if all_columns else columns)
