"""The labellers' files: the CheXpert labeller's CSV input and output (shared by `txtrayalign chexpert`
and `txtrayalign chexbert`) and MIMIC-CXR's official label table.

- `read_reports_csv(path)`: the reports of a one-column CSV (an optional header row dropped).
- `write_labeled_csv(reports, labels, path)`: `Reports` then the 14 observations, atomically.
- `read_official(path)`: mimic-cxr-2.0.0-chexpert.csv.gz, columns in `OBSERVATIONS` order.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from txtrayalign.constants import OBSERVATIONS
from txtrayalign.errors import InputError
from txtrayalign.tables import check_columns
from txtrayalign.text.encoding import read_text
from txtrayalign.utils import atomic_path

log = logging.getLogger(__name__)

REPORTS_COLUMN = "Reports"


def read_official(path: str) -> pd.DataFrame:
    """The official mimic-cxr-2.0.0-chexpert.csv.gz, columns re-ordered to OBSERVATIONS."""
    table = check_columns(pd.read_csv(path), "report_labels", path)  # the 14 columns, in any order
    table = table[["subject_id", "study_id", *OBSERVATIONS]].copy()
    table[OBSERVATIONS] = table[OBSERVATIONS].astype("float64")
    return table.drop_duplicates("study_id")


# A first row holding only one of these words is a header, not a report (the CheXpert labeller's input
# has none; a table saved with its column name has one).
HEADER_WORDS = frozenset({"reports", "report", "text", "texts", "findings", "impression"})


def read_reports_csv(path: str | Path) -> list[str]:
    """The reports of a CheXpert-labeller input file (one column, no header; a first row that is only
    a column name such as `Reports` is taken as a header, dropped and logged). Bad input is an
    InputError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--reports_path {path}: " + ("is a folder, not a CSV file" if path.is_dir()
                                                       else "no such file"))
    text = read_text(path)
    if not text.strip():
        return []
    try:
        table = pd.read_csv(io.StringIO(text), header=None, names=[REPORTS_COLUMN], dtype=str,
                            keep_default_na=False, na_filter=False, usecols=[0])
    except pd.errors.ParserError as exc:
        raise InputError(f"{path}: not a readable CSV file ({str(exc).strip()})") from exc
    reports = table[REPORTS_COLUMN].tolist()
    if reports and reports[0].strip().lower() in HEADER_WORDS:
        log.warning("%s: first row %r taken as a header, not labelled", path, reports[0])
        reports = reports[1:]
    return reports


def write_labeled_csv(reports: list[str], labels: np.ndarray, path: str | Path) -> None:
    """The CheXpert labeller's output format, written atomically."""
    table = pd.DataFrame({REPORTS_COLUMN: reports})
    for i, name in enumerate(OBSERVATIONS):
        table[name] = labels[:, i]
    with atomic_path(path, suffix=".csv.tmp") as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n")
