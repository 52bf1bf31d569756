"""Who each study's patient is: sex, age at the study, race and insurance, one row per study.

Sources:
- MIMIC-IV's `hosp/` folder (`dataset.demographics`; v1.0's `core/` and a folder holding the two files
  directly work too): `patients.csv.gz` (`subject_id, gender, anchor_age, anchor_year, anchor_year_group,
  dod`) and `admissions.csv.gz` (`subject_id, hadm_id, admittime, …, insurance, …, race` — `ethnicity`
  before v2.0), joined to the index's studies on `subject_id`.
- A table dataset's own columns (`format: table`): `sex`, `age`, `race` (looked for under those names,
  any case, or mapped by `dataset.table.demographics`) and any further group columns it names.
- Neither (IU X-ray has no patient identifiers): a table of ids only, with the reason in the record.

Choices (documented in README "For whom it fails"):
- Age at the study = `anchor_age + (study year − anchor_year)` (Glocker et al. 2023), the study year
  from `StudyDate` of MIMIC-CXR's metadata table (the same date shift as MIMIC-IV), else `anchor_year`
  (the age is then `anchor_age`).
- Race: MIMIC's detailed values are grouped as White, Black, Asian, Hispanic/Latino and Other; unknown,
  declined and unable-to-obtain are missing. A patient whose grouped race differs across admissions is
  set aside as "conflicting" (missing race, counted in the record), as Glocker et al. did.
- Insurance: Medicare, Medicaid, else Other (Private, No charge…, as CheXclusion grouped them); a patient
  with several admissions gets the value of most of them (ties: the latest admission's).
- Sex: `gender` M / F (a table's Male/Female/M/F/… likewise); anything else is missing.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from txtrayalign.errors import InputError
from txtrayalign.utils import atomic_path, setup_logging, write_parquet_atomic

log = logging.getLogger(__name__)

ATTRIBUTES = ("sex", "age", "race", "insurance")
PATIENTS = "patients.csv.gz"
ADMISSIONS = "admissions.csv.gz"
METADATA = "mimic-cxr-2.0.0-metadata.csv.gz"
RACE_GROUPS = (  # (prefix of MIMIC's upper-case value, group); first match wins
    ("WHITE", "White"), ("PORTUGUESE", "White"), ("BLACK", "Black"), ("AFRICAN", "Black"), ("ASIAN", "Asian"),
    ("HISPANIC", "Hispanic/Latino"), ("LATINO", "Hispanic/Latino"), ("SOUTH AMERICAN", "Hispanic/Latino"),
    ("UNKNOWN", None), ("UNABLE", None), ("PATIENT DECLINED", None), ("DECLINED", None),
)
INSURANCE_GROUPS = {"MEDICARE": "Medicare", "MEDICAID": "Medicaid"}
SEX_VALUES = {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F"}


def race_group(value) -> str | None:
    """MIMIC's detailed race (or a table's) as one of White, Black, Asian, Hispanic/Latino, Other; None unknown."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().upper()
    for prefix, group in RACE_GROUPS:
        if text.startswith(prefix):
            return group
    return "Other"


def sex_group(value) -> str | None:
    return SEX_VALUES.get(str(value).strip().upper()) if isinstance(value, str) else None


def insurance_group(value) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return INSURANCE_GROUPS.get(value.strip().upper(), "Other")


def find_mimic_iv(folder: str | Path) -> tuple[Path, Path]:
    """The patients and admissions files of a MIMIC-IV folder (the root, `hosp/` or `core/`)."""
    folder = Path(folder)
    for sub in (folder, folder / "hosp", folder / "core"):
        if (sub / PATIENTS).is_file() and (sub / ADMISSIONS).is_file():
            return sub / PATIENTS, sub / ADMISSIONS
    raise InputError(f"dataset.demographics: {folder} holds no {PATIENTS} and {ADMISSIONS} "
                     "(looked in it, hosp/ and core/)")


def _read_csv(path: Path, needed: list[str], either: tuple[str, ...] = ()) -> pd.DataFrame:
    try:
        header = pd.read_csv(path, nrows=0).columns
    except Exception as exc:  # noqa: BLE001 - any parse failure names the file
        raise InputError(f"{path}: cannot read the table ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in needed if c not in header]
    if missing or (either and not any(c in header for c in either)):
        want = missing + ([" or ".join(either)] if either and not any(c in header for c in either) else [])
        raise InputError(f"{path}: missing column(s) {want}; found {list(header)}")
    use = needed + [c for c in either if c in header] + [c for c in ("admittime",) if c in header]
    return pd.read_csv(path, usecols=use, dtype={c: str for c in use if c not in ("subject_id",)})


def patient_attributes(patients: pd.DataFrame, admissions: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """One row per patient: `subject_id, sex, anchor_age, anchor_year, race, insurance`, and counts.

    `admissions` carries `race` (MIMIC-IV v2+) or `ethnicity` (v1), `insurance` and optionally `admittime`.
    """
    race_col = "race" if "race" in admissions.columns else "ethnicity"
    adm = admissions.assign(race_group=admissions[race_col].map(race_group),
                            insurance_group=admissions["insurance"].map(insurance_group))
    adm = adm.sort_values(["subject_id", *(["admittime"] if "admittime" in adm.columns else [])], kind="stable")
    known = adm.dropna(subset=["race_group"])
    n_races = known.groupby("subject_id")["race_group"].nunique()
    conflicting = n_races.index[n_races > 1]
    race = known.groupby("subject_id")["race_group"].first().drop(conflicting)
    ins = adm.dropna(subset=["insurance_group"])
    tally = ins.groupby(["subject_id", "insurance_group"]).agg(n=("insurance_group", "size"),
                                                               last=("insurance_group", lambda s: s.index.max()))
    insurance = (tally.reset_index().sort_values(["subject_id", "n", "last"]).groupby("subject_id").last()
                 ["insurance_group"])
    out = patients.drop_duplicates("subject_id").copy()
    out["sex"] = out["gender"].map(sex_group)
    out["anchor_age"] = pd.to_numeric(out["anchor_age"], errors="coerce")
    out["anchor_year"] = pd.to_numeric(out["anchor_year"], errors="coerce")
    out["race"] = out["subject_id"].map(race)
    out["insurance"] = out["subject_id"].map(insurance)
    counts = {"patients": int(len(out)), "race_conflicting": int(out["subject_id"].isin(conflicting).sum()),
              "race_column": race_col}
    return out[["subject_id", "sex", "anchor_age", "anchor_year", "race", "insurance"]], counts


def study_years(root: Path) -> pd.Series | None:
    """study_id -> year of its StudyDate, from MIMIC-CXR's metadata table when the root has one."""
    path = root / METADATA
    if not path.is_file():
        return None
    meta = pd.read_csv(path, usecols=["study_id", "StudyDate"])
    year = pd.to_numeric(meta["StudyDate"], errors="coerce") // 10000
    return year.groupby(meta["study_id"]).min().dropna()


def mimic_demographics(studies: pd.DataFrame, folder: str | Path, root: Path) -> tuple[pd.DataFrame, dict]:
    """Per study of `studies` (subject_id, study_id): sex, age at the study, race, insurance."""
    patients_path, admissions_path = find_mimic_iv(folder)
    patients = _read_csv(patients_path, ["subject_id", "gender", "anchor_age", "anchor_year"])
    admissions = _read_csv(admissions_path, ["subject_id", "insurance"], either=("race", "ethnicity"))
    people, counts = patient_attributes(patients, admissions)
    out = studies[["subject_id", "study_id"]].drop_duplicates("study_id").merge(people, on="subject_id", how="left")
    years = study_years(root)
    year = out["study_id"].map(years) if years is not None else pd.Series(np.nan, index=out.index)
    counts["age_from_study_date"] = int(year.notna().sum())
    year = year.fillna(out["anchor_year"])
    out["age"] = out["anchor_age"] + (year - out["anchor_year"])
    counts["studies_without_patient_row"] = int(out["anchor_year"].isna().sum())
    counts.update(source=str(folder), patients_file=str(patients_path), admissions_file=str(admissions_path))
    return out[["subject_id", "study_id", *ATTRIBUTES]], counts


def _table_column(df: pd.DataFrame, name: str, mapped: str | None, path: Path) -> str | None:
    if mapped:
        if mapped not in df.columns:
            raise InputError(f"{path}: missing column {mapped!r} (dataset.table.demographics); found {list(df.columns)}")
        return mapped
    return next((c for c in df.columns if c.lower() == name), None)


def table_demographics(studies: pd.DataFrame, images: pd.DataFrame, table_path: Path, mapping: dict[str, str],
                       groups: list[str]) -> tuple[pd.DataFrame, dict]:
    """A table dataset's `sex`, `age`, `race` and extra `groups` columns per index study (joined by image path)."""
    from txtrayalign.datasets.table import read_pairs

    df = read_pairs(table_path)
    image_col = mapping.get("image") or "image"
    if image_col not in df.columns:
        raise InputError(f"{table_path}: missing column {image_col!r} (the image path); found {list(df.columns)}")
    found = {a: _table_column(df, a, mapping.get(a), table_path) for a in ("sex", "age", "race")}
    for g in groups:
        if g not in df.columns:
            raise InputError(f"{table_path}: missing column {g!r} (dataset.table.demographics.groups); "
                             f"found {list(df.columns)}")
    rows = df.set_index(image_col)
    rows = rows[~rows.index.duplicated()]
    joined = images[["path", "study_id"]].drop_duplicates("study_id").set_index("path")
    picked = rows.reindex(joined.index)
    out = studies[["subject_id", "study_id"]].drop_duplicates("study_id").set_index("study_id")
    by_study = pd.DataFrame(index=joined["study_id"].to_numpy())
    by_study["sex"] = picked[found["sex"]].map(sex_group).to_numpy() if found["sex"] else None
    by_study["age"] = pd.to_numeric(picked[found["age"]], errors="coerce").to_numpy() if found["age"] else np.nan
    by_study["race"] = picked[found["race"]].map(race_group).to_numpy() if found["race"] else None
    by_study["insurance"] = None
    for g in groups:
        by_study[g] = picked[g].replace("", None).to_numpy()
    out = out.join(by_study, how="left").reset_index()
    counts = {"source": str(table_path), "columns": {a: c for a, c in found.items() if c}, "groups": groups}
    return out[["subject_id", "study_id", *ATTRIBUTES, *groups]], counts


def none_demographics(studies: pd.DataFrame, why: str) -> tuple[pd.DataFrame, dict]:
    out = studies[["subject_id", "study_id"]].drop_duplicates("study_id").copy()
    for a in ATTRIBUTES:
        out[a] = np.nan if a == "age" else None
    return out, {"source": None, "absent": why}


def write_patients(table: pd.DataFrame, record: dict, out: Path) -> None:
    """`patients.parquet` (one row per study) and `patients.json` (source, counts, why absent), atomically."""
    for a in ("sex", "race", "insurance"):
        table[a] = table[a].astype(object).where(table[a].notna(), None)
    table["age"] = pd.to_numeric(table["age"], errors="coerce").astype("float64")
    record = {**record, "studies": int(len(table)),
              "known": {a: int(table[a].notna().sum()) for a in table.columns if a not in ("subject_id", "study_id")}}
    write_parquet_atomic(table, out)
    with atomic_path(out.with_suffix(".json"), suffix=".json.tmp") as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    log.info("demographics of %d studies: %s", len(table), record)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--studies", type=Path, required=True, help="index/studies.parquet")
    parser.add_argument("--images", type=Path, required=True, help="index/images.parquet")
    parser.add_argument("--root", type=Path, required=True, help="the dataset root (MIMIC-CXR's metadata table)")
    parser.add_argument("--mimic-iv", type=Path, default=None, help="MIMIC-IV folder with hosp/patients.csv.gz")
    parser.add_argument("--table", type=Path, default=None, help="format table: the table of pairs")
    parser.add_argument("--column", action="append", default=[], metavar="ROLE=NAME",
                        help="a table's column for image, sex, age or race")
    parser.add_argument("--group", action="append", default=[], help="a table's extra group column")
    parser.add_argument("--absent", default="no demographics source configured (dataset.demographics)",
                        help="why there are none, when neither --mimic-iv nor --table is given")
    parser.add_argument("--out", type=Path, required=True, help="index/patients.parquet to write")
    parser.add_argument("--log", type=Path, default=None)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log)
    studies = pd.read_parquet(args.studies, columns=["subject_id", "study_id"])
    if args.mimic_iv is not None:
        table, record = mimic_demographics(studies, args.mimic_iv, args.root)
    elif args.table is not None:
        mapping = dict(c.split("=", 1) for c in args.column)
        images = pd.read_parquet(args.images, columns=["path", "study_id"])
        path = args.table if args.table.is_absolute() else args.root / args.table
        table, record = table_demographics(studies, images, path, mapping, list(args.group))
    else:
        table, record = none_demographics(studies, args.absent)
    write_patients(table, record, args.out)
    return 0
