"""Any table of image-report pairs (`format: table`): a CSV (optionally gzip) or parquet file.

One row per image. Columns, by role (`columns` maps a role to the table's column name; a role not
mapped is looked for under its own name):

| role | required | what |
|---|---|---|
| `image` | yes | image file path, relative to the dataset root or absolute (DICOM, JPG or PNG) |
| `report_text` or `report_path` | one of them | the report itself, or its text file (relative to the root or absolute) |
| `image_id` | no | a unique id per image (default: the path without extension, `/` as `_`) |
| `study_id` | no | the study (default: rows sharing a report path are one study, else each row is one) |
| `patient_id` | no | the patient (default: each study is its own patient) |
| `view` | no | the view name, kept as given ("" when absent) |
| `split` | no | train / validate / test (`val`, `valid`, `validation`, `dev` mean validate); default the index's hash split by patient |

The 14 CheXpert observations, under their own names (`No Finding`, …, `Support Devices`), may be
given too (1 / 0 / -1 / blank); `labels.source: official` then uses them (the index writes them as
`labels.csv.gz` in the MIMIC chexpert table's format). A mapped role whose column is missing, a
table without an image or a report column, or only some of the 14 label columns is an error naming
the file and the column.

Ids that are not integers (or beyond 10^14) are numbered 1, 2, … in order of first appearance (logged).
Report texts are written by the index (`reports/<study_id>.txt`); a study whose rows give different
texts, or labels, is a problem row and left out (`conflicting_report`, `conflicting_labels`), as
is one with an empty text (`no_report_text`); an image that is not on disk is `missing_file`, a
report file that is not `missing_report`.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from txtrayalign.constants import MIMIC_LABEL_COLUMNS, OBSERVATIONS, SPLITS
from txtrayalign.datasets.indexed import Indexed, hash_split, problem
from txtrayalign.errors import InputError

log = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("image", "image_id", "report_text", "report_path", "study_id", "patient_id", "view",
                          "split")
SPLIT_NAMES = {"train": "train", "training": "train", "validate": "validate", "val": "validate",
               "valid": "validate", "validation": "validate", "dev": "validate", "test": "test"}
MAX_ID = 10**14  # sentence ids are study_id * 10,000 + position: keep them inside int64


def read_pairs(path: Path) -> pd.DataFrame:
    """The table as strings (parquet or CSV, by extension); an error naming the file when unreadable."""
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(path)
            return df.astype(object).where(df.notna(), "").astype(str)
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure is reported with the file name
        raise InputError(f"{path}: cannot read the table ({type(exc).__name__}: {exc})") from exc


def resolve_columns(df: pd.DataFrame, columns: dict[str, str], path: Path) -> dict[str, str]:
    """role -> column present in the table; errors name the file and the missing column."""
    unknown = sorted(set(columns) - set(ROLES))
    if unknown:
        raise InputError(f"{path}: unknown column role(s) {unknown}; roles are {list(ROLES)}")
    found: dict[str, str] = {}
    for role in ROLES:
        name = columns.get(role, role)
        if name in df.columns:
            found[role] = name
        elif role in columns:
            raise InputError(f"{path}: missing column {name!r} (given for {role}); found {list(df.columns)}")
    if "image" not in found:
        raise InputError(f"{path}: missing column 'image' (the image path; map another with image=NAME); "
                         f"found {list(df.columns)}")
    if "report_text" not in found and "report_path" not in found:
        raise InputError(f"{path}: missing column 'report_text' or 'report_path' (one is needed); "
                         f"found {list(df.columns)}")
    return found


def integer_ids(values: pd.Series, what: str, path: Path) -> pd.Series:
    """The ids as int64: kept when all are integers in [0, 10^14), else numbered by first appearance."""
    numbers = pd.to_numeric(values.str.strip(), errors="coerce")
    if numbers.notna().all() and (numbers == numbers.round()).all() and numbers.between(0, MAX_ID - 1).all():
        return numbers.astype("int64")
    codes, uniques = pd.factorize(values.str.strip())
    log.info("%s: %s values are not integers below 10^14: numbered 1..%d in order of first appearance",
             path, what, len(uniques))
    return pd.Series(codes + 1, index=values.index, dtype="int64")


def read_labels(df: pd.DataFrame, path: Path) -> pd.DataFrame | None:
    """The 14 observations as floats (1 / 0 / -1 / NaN), or None when the table has none of them."""
    present = [o for o in OBSERVATIONS if o in df.columns]
    if not present:
        return None
    if len(present) < len(OBSERVATIONS):
        missing = [o for o in OBSERVATIONS if o not in df.columns]
        raise InputError(f"{path}: has {len(present)} of the 14 label columns; missing {missing}")
    labels = pd.DataFrame(index=df.index)
    for name in OBSERVATIONS:
        text = df[name].str.strip()
        values = pd.to_numeric(text, errors="coerce")
        bad = (text != "") & ~values.isin([1.0, 0.0, -1.0])
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"{path}: column {name!r} row {row + 2} has {df[name].iloc[row]!r}; "
                             "expected 1, 0, -1 or blank")
        labels[name] = values.astype("float64")
    return labels


def _safe_id(rel: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(rel)[0]).strip("_")


def _splits(values: pd.Series, column: str, table_path: Path) -> pd.Series:
    """The split column's values as split names; an unknown value stops with its row."""
    split = values.str.lower().map(SPLIT_NAMES)
    if split.isna().any():
        row = int(np.flatnonzero(split.isna().to_numpy())[0])
        raise InputError(f"{table_path}: column {column!r} row {row + 2} has {values.iloc[row]!r}; "
                         f"expected one of {list(SPLITS)} (or val / valid / validation / dev)")
    return split


def _report_texts(study: pd.Series, text: pd.Series, path, problems: list[dict]) -> tuple[set[int], dict[int, str]]:
    """Each study's one report text; a study whose rows disagree, or whose text is empty, is left out
    (a problem row)."""
    left_out: set[int] = set()
    texts: dict[int, str] = {}
    for study_id, values in pd.DataFrame({"study": study, "text": text}).groupby("study", sort=False)["text"]:
        distinct = values.unique()
        if len(distinct) > 1:
            problems.append(problem("conflicting_report", str(path), None, study_id, "",
                                    f"rows of study {study_id} give {len(distinct)} different report texts; "
                                    "study left out"))
            left_out.add(study_id)
        elif not distinct[0]:
            problems.append(problem("no_report_text", str(path), None, study_id, "",
                                    "the report text is empty; study left out"))
            left_out.add(study_id)
        else:
            texts[int(study_id)] = distinct[0].replace("\r\n", "\n")
    return left_out, texts


def _study_labels(df: pd.DataFrame, table_path: Path, study: pd.Series, path, problems: list[dict]) -> pd.DataFrame | None:
    """The table's own labels, one row per study; a study whose rows disagree is left to the labeller."""
    labels = read_labels(df, table_path)
    if labels is None:
        return None
    labels.insert(0, "study_id", study)
    per_study = labels.drop_duplicates()
    repeated = per_study["study_id"].duplicated(keep=False)
    for study_id in sorted(set(per_study.loc[repeated, "study_id"])):
        problems.append(problem("conflicting_labels", str(path), None, study_id, "",
                                f"rows of study {study_id} give different labels; the labeller labels it"))
    return per_study.loc[~repeated]


def build(root: Path, path: str | os.PathLike, columns: dict[str, str] | None = None) -> Indexed:
    """Index a table of pairs (see the module docstring); `path` is relative to `root` or absolute."""
    root = Path(root)
    table_path = root / path
    if not table_path.is_file():
        raise FileNotFoundError(f"table {table_path} (format: table) is not a file")
    df = read_pairs(table_path)
    roles = resolve_columns(df, columns or {}, table_path)
    log.info("%s: %d rows; columns %s", table_path, len(df), roles)
    problems: list[dict] = []
    col = {role: df[name].astype(str).str.strip() for role, name in roles.items()}
    image = col["image"]
    if "study_id" in col:
        study = integer_ids(col["study_id"], "study_id", table_path)
    elif "report_path" in col:
        study = integer_ids(col["report_path"], "report_path", table_path)
    else:
        study = pd.Series(np.arange(1, len(df) + 1), index=df.index, dtype="int64")
    subject = integer_ids(col["patient_id"], "patient_id", table_path) if "patient_id" in col else study
    split = _splits(col["split"], roles["split"], table_path) if "split" in col else subject.map(hash_split)
    view = col.get("view", pd.Series("", index=df.index))
    image_id = col["image_id"] if "image_id" in col else image.map(_safe_id)

    left_out: set[int] = set()
    texts: dict[int, str] = {}
    if "report_text" in col:
        left_out, texts = _report_texts(study, col["report_text"], path, problems)
        report = pd.Series("", index=df.index)
    else:
        report = col["report_path"]
    labels = _study_labels(df, table_path, study, path, problems)

    image_rows, study_rows = [], {}
    for i in range(len(df)):
        s = int(study.iloc[i])
        if s in left_out:
            continue
        rel = image.iloc[i]
        if not rel or not (root / rel).is_file():
            problems.append(problem("missing_file", rel, int(subject.iloc[i]), s, image_id.iloc[i],
                                    f"listed in {path} but absent on disk" if rel else f"row {i + 2}: no image path"))
        else:
            image_rows.append((image_id.iloc[i], int(subject.iloc[i]), s, rel, view.iloc[i], split.iloc[i]))
        if s not in study_rows:
            study_rows[s] = (int(subject.iloc[i]), s, split.iloc[i], report.iloc[i])
            if report.iloc[i] and not (root / report.iloc[i]).is_file():
                problems.append(problem("missing_report", report.iloc[i], int(subject.iloc[i]), s, "",
                                        f"report file listed in {path} is absent"))
    indexed = Indexed.from_rows(image_rows, list(study_rows.values()), problems, texts)
    if labels is not None:
        subjects = indexed.studies.set_index("study_id")["subject_id"]
        labels = labels[labels["study_id"].isin(subjects.index)].copy()
        labels.insert(0, "subject_id", labels["study_id"].map(subjects).astype("int64"))
        indexed.labels = labels[["subject_id", "study_id", *MIMIC_LABEL_COLUMNS]].reset_index(drop=True)
    return indexed
