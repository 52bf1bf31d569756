"""Write the MIMIC-CXR tables as byte-reproducible gzip CSV files, atomically."""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from txtrayalign.utils import atomic_path


def format_value(v: object) -> str:
    """Cells as MIMIC writes them: floats like 1.0 / -1.0, NaN and None blank."""
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def write_csv_gz(path: Path, columns: Sequence[str], rows: Iterable[dict]) -> Path:
    """Write rows (dicts keyed by column) to a gzip CSV; the header is `columns` in that order.

    The gzip header carries no file name and no time stamp, so the same rows give the same bytes.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        missing = [c for c in columns if c not in row]
        if missing:
            raise KeyError(f"{path.name}: row lacks columns {missing}")
        writer.writerow([format_value(row[c]) for c in columns])
    data = buf.getvalue().encode("utf-8")
    with atomic_path(path, suffix=".csv.gz.tmp") as tmp:
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            gz.write(data)
    return path
