"""What every dataset layout gives the index stage, and the checks they share.

- `Indexed`: a layout's images, studies, problem rows, report texts to write and own labels.
- `problem(...)`: one row of problems.parquet; `problems_frame(rows)`: the table of them.
- `hash_split(subject_id)`: the split of a patient without a split table (~80/10/10, the same everywhere).
- `group_for(subject_id)`: the shard group of a patient.
- `conflicting_ids(table, ...)`: dicom_ids listed with conflicting values (problem rows; too many: an error).
- `IMAGE_COLUMNS`, `STUDY_COLUMNS`, `PROBLEM_COLUMNS`: the index tables' columns (docs/design.md).

Hash split: patients are assigned by the first 8 bytes of SHA-256(str(subject_id)) as an integer
modulo 1000: < 800 train, < 900 validate, else test, i.e. about 80/10/10 by patient, the same on every
machine and run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pandas as pd

from txtrayalign import constants
from txtrayalign.errors import InputError

MAX_CONFLICT_SHARE = 0.01  # more conflicting ids than this share of a table (and more than 10): an error
IMAGE_COLUMNS = ["dicom_id", "subject_id", "study_id", "path", "view", "split", "group", "format"]
STUDY_COLUMNS = ["subject_id", "study_id", "report_path", "split", "group"]
PROBLEM_COLUMNS = ["kind", "path", "subject_id", "study_id", "dicom_id", "message"]


class TableError(InputError):
    """A dataset table that is present but unusable (missing column, unreadable, bad ids)."""


def hash_split(subject_id: int) -> str:
    """The deterministic ~80/10/10 patient split used when no split table exists."""
    bucket = int.from_bytes(hashlib.sha256(str(int(subject_id)).encode()).digest()[:8], "big") % 1000
    return "train" if bucket < 800 else ("validate" if bucket < 900 else "test")


def problem(kind: str, path: str, subject_id, study_id, dicom_id: str, message: str) -> dict:
    """One row of problems.parquet."""
    return {
        "kind": kind,
        "path": path,
        "subject_id": subject_id,
        "study_id": study_id,
        "dicom_id": dicom_id,
        "message": message,
    }


def group_for(subject_id: int) -> str:
    """The shard group of a patient: MIMIC's p10 … p19 folder, else p1<last digit> (spread evenly)."""
    sid = int(subject_id)
    return constants.group_of(sid) if 10_000_000 <= sid < 20_000_000 else f"p1{sid % 10}"


@dataclass
class Indexed:
    """What a dataset layout gives the index before the shared checks (see `finish`).

    images: dicom_id, subject_id, study_id, path (relative to the root), view, split;
    studies: subject_id, study_id, split, report_path ("" where `texts` holds the report);
    problems: rows made by `problem`; texts: study_id -> report text the index writes;
    labels: the dataset's own labels in the MIMIC chexpert table's columns, or None.
    """

    images: pd.DataFrame
    studies: pd.DataFrame
    problems: list[dict] = field(default_factory=list)
    texts: dict[int, str] = field(default_factory=dict)
    labels: pd.DataFrame | None = None

    @classmethod
    def from_rows(cls, image_rows: list[tuple], study_rows: list[tuple], problems: list[dict],
                  texts: dict[int, str]) -> Indexed:
        images = pd.DataFrame(image_rows, columns=["dicom_id", "subject_id", "study_id", "path", "view", "split"])
        studies = pd.DataFrame(study_rows, columns=["subject_id", "study_id", "split", "report_path"])
        return cls(images.astype({"subject_id": "int64", "study_id": "int64"}),
                   studies.astype({"subject_id": "int64", "study_id": "int64"}), problems, texts)


def conflicting_ids(table: pd.DataFrame, columns: list[str], source: str, kind: str,
                    problems: list[dict]) -> set[str]:
    """dicom_ids that `table` lists more than once with different `columns`; one problem row each.

    Repeats with the same values are harmless. More conflicts than `MAX_CONFLICT_SHARE` of the
    table's ids (and more than 10) are an error naming the table: the table is not what it claims.
    """
    repeated = table[table["dicom_id"].duplicated(keep=False)]
    if repeated.empty:
        return set()
    distinct = repeated.drop_duplicates(["dicom_id", *columns])
    counts = distinct["dicom_id"].value_counts()
    bad = set(counts.index[counts > 1])
    n_ids = table["dicom_id"].nunique()
    if len(bad) > max(10, MAX_CONFLICT_SHARE * n_ids):
        example = sorted(bad)[0]
        values = distinct.loc[distinct["dicom_id"] == example, columns].to_dict("records")
        raise TableError(f"{source}: {len(bad)} of {n_ids} dicom_ids are listed with conflicting "
                         f"{'/'.join(columns)} (e.g. {example}: {values}); more than {MAX_CONFLICT_SHARE:.0%}")
    for dicom_id, rows in distinct[distinct["dicom_id"].isin(bad)].groupby("dicom_id", sort=True):
        values = "; ".join(", ".join(f"{c}={v}" for c, v in r.items()) for r in rows[columns].to_dict("records"))
        first = rows.iloc[0]
        problems.append(problem(kind, str(first.get("path", source)), first.get("subject_id"),
                                first.get("study_id"), dicom_id, f"{source} lists it {len(rows)} ways ({values})"))
    return bad


def problems_frame(problems: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(problems, columns=PROBLEM_COLUMNS).astype({"subject_id": "Int64", "study_id": "Int64"})
    for col in ("kind", "path", "dicom_id", "message"):
        df[col] = df[col].fillna("").astype(str)
    return df
