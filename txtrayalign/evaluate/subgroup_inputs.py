"""What the subgroup evaluation reads besides the evaluation's own arrays: the patient table of the
query studies (`index/patients.parquet` + `patients.json`), the settings, and the training prevalence."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from . import EvaluationInputError
from .prevalence import training_prevalence

DEFAULTS_KEYS = ("attributes", "age_bins", "intersections", "min_size", "rare_below")


def subgroup_settings(config: Mapping) -> dict:
    """`evaluation.subgroups` as the evaluation uses it: intersections [[age, sex]] named "age×sex"."""
    missing = [k for k in DEFAULTS_KEYS if k not in config]
    if missing:
        raise EvaluationInputError(f"evaluation.subgroups: missing {missing}")
    out = {k: config[k] for k in DEFAULTS_KEYS}
    out["intersections"] = ["×".join(pair) for pair in config["intersections"]]
    out["age_bins"] = sorted(float(b) for b in config["age_bins"])
    return out


def query_patients(path: str | Path, study_id: np.ndarray) -> tuple[pd.DataFrame, dict]:
    """The patient row of each query's study (aligned with `study_id`; absent studies: unknown) and the
    demographics record (source, counts, or why absent)."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationInputError(f"patient table not found: {path}")
    table = pd.read_parquet(path)
    if "study_id" not in table.columns or "subject_id" not in table.columns:
        raise EvaluationInputError(f"{path}: needs study_id and subject_id columns; found {list(table.columns)}")
    rows = table.drop_duplicates("study_id").set_index("study_id").reindex(np.asarray(study_id))
    rows["subject_id"] = rows["subject_id"].fillna(-1)
    record_path = path.with_suffix(".json")
    record = json.loads(record_path.read_text()) if record_path.is_file() else {"source": str(path)}
    return rows.reset_index(drop=True), record


def prevalence_from(report_labels: pd.DataFrame, splits: pd.DataFrame | None) -> dict[str, float] | None:
    """Training prevalence from the report labels and a table with `study_id` and `split`."""
    if splits is None or "split" not in splits.columns:
        return None
    return training_prevalence(report_labels, splits[["study_id", "split"]].drop_duplicates("study_id"))
