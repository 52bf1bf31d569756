"""Demographics per study: MIMIC-IV's tables (both versions' column names), the documented choices
(age at the study, conflicting race, insurance), a table dataset's columns, and the synthetic twin's
MIMIC-IV tables with the planted disparity."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from txtrayalign.demographics import (
    find_mimic_iv,
    mimic_demographics,
    patient_attributes,
    race_group,
    table_demographics,
)
from txtrayalign.errors import InputError
from txtrayalign.synth import demographics as synth_demo
from txtrayalign.synth.labels import Finding
from txtrayalign.synth.plan import plan_dataset
from txtrayalign.synth.render import render

PATIENTS = pd.DataFrame({"subject_id": [1, 2, 3], "gender": ["F", "M", "X"], "anchor_age": [70, 40, 91],
                         "anchor_year": [2150, 2160, 2170]})


def test_race_groups():
    assert race_group("WHITE - OTHER EUROPEAN") == "White"
    assert race_group("BLACK/CAPE VERDEAN") == "Black"
    assert race_group("HISPANIC OR LATINO") == "Hispanic/Latino"
    assert race_group("ASIAN - CHINESE") == "Asian"
    assert race_group("AMERICAN INDIAN/ALASKA NATIVE") == "Other"
    assert race_group("UNABLE TO OBTAIN") is None and race_group("PATIENT DECLINED TO ANSWER") is None
    assert race_group(np.nan) is None


@pytest.mark.parametrize("race_column", ["race", "ethnicity"])
def test_patient_attributes_conflicting_race_and_insurance(race_column):
    admissions = pd.DataFrame({
        "subject_id": [1, 1, 2, 2, 2, 3],
        "admittime": ["2150-01-01", "2151-01-01", "2160-01-01", "2160-05-01", "2161-01-01", "2170-01-01"],
        race_column: ["WHITE", "BLACK/AFRICAN AMERICAN", "ASIAN", "UNKNOWN", "ASIAN - KOREAN", "OTHER"],
        "insurance": ["Medicare", "Medicaid", "Other", "Medicaid", "Medicaid", "Private"],
    })
    people, counts = patient_attributes(PATIENTS, admissions)
    people = people.set_index("subject_id")
    assert people.loc[1, "race"] is None or pd.isna(people.loc[1, "race"])  # White, then Black: conflicting
    assert people.loc[2, "race"] == "Asian"  # unknown is no conflict; ASIAN - KOREAN is Asian
    assert counts == {"patients": 3, "race_conflicting": 1, "race_column": race_column}
    assert people.loc[1, "insurance"] == "Medicaid"  # a tie: the latest admission's
    assert people.loc[2, "insurance"] == "Medicaid"  # most of the admissions
    assert people.loc[3, "insurance"] == "Other"  # Private is Other
    assert people.loc[1, "sex"] == "F" and pd.isna(people.loc[3, "sex"])


def _write(path, df):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        df.to_csv(f, index=False)


def test_mimic_demographics_age_at_the_study(tmp_path):
    root = tmp_path / "cxr"
    hosp = tmp_path / "mimiciv" / "hosp"
    _write(hosp / "patients.csv.gz", PATIENTS.assign(anchor_year_group="2008 - 2010", dod=""))
    _write(hosp / "admissions.csv.gz", pd.DataFrame({"subject_id": [1, 2], "hadm_id": [5, 6], "race": ["WHITE", "BLACK"],
                                                     "insurance": ["Medicare", "Other"]}))
    _write(root / "mimic-cxr-2.0.0-metadata.csv.gz", pd.DataFrame({"dicom_id": ["a", "b"], "study_id": [11, 21],
                                                                   "StudyDate": [21530612, 21591231]}))
    studies = pd.DataFrame({"subject_id": [1, 2, 3, 4], "study_id": [11, 21, 31, 41]})
    table, record = mimic_demographics(studies, tmp_path / "mimiciv", root)
    table = table.set_index("study_id")
    assert table.loc[11, "age"] == 73  # 70 + (2153 - 2150)
    assert table.loc[21, "age"] == 39  # a study before the anchor year
    assert table.loc[31, "age"] == 91  # no study date: the anchor age
    assert pd.isna(table.loc[41, "sex"]) and record["studies_without_patient_row"] == 1
    assert find_mimic_iv(tmp_path / "mimiciv")[0] == hosp / "patients.csv.gz"
    with pytest.raises(InputError, match="patients.csv.gz"):
        find_mimic_iv(tmp_path)


def test_table_demographics_chexpert_style_columns(tmp_path):
    pd.DataFrame({"image": ["a.png", "b.png", "c.png"], "Sex": ["Female", "Male", ""], "Age": ["63", "40", "x"],
                  "site": ["north", "south", "north"]}).to_csv(tmp_path / "pairs.csv", index=False)
    images = pd.DataFrame({"path": ["a.png", "b.png", "c.png"], "study_id": [1, 2, 3]})
    studies = pd.DataFrame({"subject_id": [1, 2, 3], "study_id": [1, 2, 3]})
    table, record = table_demographics(studies, images, tmp_path / "pairs.csv", {}, ["site"])
    assert table["sex"].tolist()[:2] == ["F", "M"] and pd.isna(table["sex"].iloc[2])
    assert table["age"].tolist()[:2] == [63.0, 40.0] and np.isnan(table["age"].iloc[2])
    assert table["site"].tolist() == ["north", "south", "north"]
    assert record["columns"] == {"sex": "Sex", "age": "Age"}
    with pytest.raises(InputError, match="'ward'"):
        table_demographics(studies, images, tmp_path / "pairs.csv", {}, ["ward"])


def test_synthetic_people_marginals_and_planted_group():
    plans = plan_dataset(3000, seed=0)
    people = synth_demo.draw_people(plans, seed=0)
    assert len(people) == len({p.subject_id for p in plans})
    women = np.mean([p.gender == "F" for p in people])
    assert 0.47 < women < 0.57
    ages = np.array([p.anchor_age for p in people])
    assert 55 < ages.mean() < 68 and ages.min() >= 18 and ages.max() <= 91
    old = [p for p in people if p.anchor_age >= 70]
    assert np.mean([p.insurance == "Medicare" for p in old]) > 0.6
    by_subject = {p.subject_id: p for p in people}
    planted = synth_demo.planted_subjects(plans, people, "race=Black")
    expected = {p.study_id for p in plans if race_group(by_subject[p.subject_id].race) == "Black"}
    assert planted == expected and 0.1 < len(planted) / len(plans) < 0.3
    with pytest.raises(ValueError, match="ATTRIBUTE=GROUP"):
        synth_demo.planted_subjects(plans, people, "height=tall")


def test_fainter_findings_are_drawn_fainter():
    findings = {"Pleural Effusion": Finding("Pleural Effusion", 1.0, side="right", severity="large")}
    normal = render({}, "PA", 64, [0, 1, 0])
    full = render(findings, "PA", 64, [0, 1, 0])
    faint = render(synth_demo.fainter(findings, 0.35), "PA", 64, [0, 1, 0])
    assert np.abs(faint - normal).sum() < 0.6 * np.abs(full - normal).sum()


def test_generate_writes_mimic_iv_tables(tmp_path):
    from txtrayalign.synth.generate import generate

    summary = generate(tmp_path, studies=12, seed=3, image_size=32, disparity="sex=F")
    patients = pd.read_csv(tmp_path / "mimic-iv/hosp/patients.csv.gz")
    admissions = pd.read_csv(tmp_path / "mimic-iv/hosp/admissions.csv.gz")
    assert list(patients.columns) == synth_demo.PATIENT_COLUMNS
    assert list(admissions.columns) == synth_demo.ADMISSION_COLUMNS
    assert set(admissions["subject_id"]) == set(patients["subject_id"])
    studies = pd.read_csv(tmp_path / "cxr-study-list.csv.gz")
    table, _ = mimic_demographics(studies, tmp_path / "mimic-iv", tmp_path)
    assert summary["planted_studies"] == int((table["sex"] == "F").sum())
    assert table["age"].notna().all()
