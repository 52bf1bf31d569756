"""The whole `snakemake evaluate` on the other dataset formats: a synthetic Open-i tree through
config/iu-xray.yaml, and a `table` dataset (the synthetic MIMIC twin listed as a CSV of pairs)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.workflow_helpers import ROOT, snakemake, tiny_config
from txtrayalign import constants as C
from txtrayalign.synth import generate

pytestmark = pytest.mark.workflow


def shrunk(dataset: dict, **sections) -> dict:
    """Overrides that shrink a full configuration to the tiny workflow tests' sizes."""
    tiny = tiny_config()
    return {"dataset": dataset, "images": tiny["images"], "defaults": tiny["defaults"], **sections}


def check_run(result, results: Path) -> tuple[pd.DataFrame, dict]:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    summary = pd.read_csv(results / "eval" / "summary.csv")
    metrics_files = sorted((results / "eval").glob("*/metrics.json"))
    models = summary[~summary["experiment"].str.startswith("(")]  # the rest are the baselines
    assert len(metrics_files) == len(models) == 1 and (results / "eval" / "summary.md").is_file()
    return models, json.loads(metrics_files[0].read_text())


def test_iu_xray_config_is_valid():
    from txtrayalign import settings

    config = yaml.safe_load((ROOT / "config/iu-xray.yaml").read_text())
    settings.check_config(config)  # the one packaged schema, with the workflow's own checks
    assert settings.with_defaults(config)["dataset"]["format"] == "openi"


def test_evaluate_on_a_synthetic_open_i_tree(tmp_path):
    data = tmp_path / "iu"
    generate(data, studies=80, seed=1, image_size=64, faults=True, layout="openi")
    over = tmp_path / "over.yaml"
    over.write_text(yaml.safe_dump(shrunk({"root": str(data), "name": "iu-synth"})))
    result = snakemake(tmp_path, "--cores", "2", "evaluate", "--configfile",
                       str(ROOT / "config" / "iu-xray.yaml"), str(over))
    results = tmp_path / "results" / "iu-synth"
    summary, metrics = check_run(result, results)
    images = pd.read_parquet(results / "index" / "images.parquet")
    problems = pd.read_parquet(results / "index" / "problems.parquet")
    faults = pd.read_csv(data / "faults.csv")
    assert set(faults["kind"]) <= set(problems["kind"])
    # every indexed image went through the shards, and the test images are the queries
    merged = pd.read_parquet(results / "images" / "48" / "index.parquet")
    assert set(merged["dicom_id"]) == set(images["dicom_id"])
    queries = pd.read_parquet(results / "eval" / "iu-cnn-bert" / "predictions.parquet")
    assert set(queries["dicom_id"]) == set(images.loc[images.split == "test", "dicom_id"])
    sections = pd.read_parquet(results / "text" / "sections.parquet")
    assert (sections["label_text"] != "").all() and len(sections) == 80 - 2
    assert summary["experiment"].tolist() == ["iu-cnn-bert"] and metrics
    assert metrics["subgroups"]["groups"] == [] and "IU X-ray has no patient" in metrics["subgroups"]["demographics"]["absent"]
    assert "No demographics: IU X-ray has no patient identifiers" in (results / "eval" / "summary.md").read_text()


def test_evaluate_on_a_table_of_pairs_with_its_labels(tmp_path):
    data = tmp_path / "twin"
    generate(data, studies=60, seed=4, image_size=64, fmt="jpg")
    record = pd.read_csv(data / C.RECORD_LIST)
    split = pd.read_csv(data / C.SPLIT_TABLE)[["dicom_id", "split"]]
    views = pd.read_csv(data / C.METADATA, keep_default_na=False)[["dicom_id", "ViewPosition"]]
    labels = pd.read_csv(data / C.CHEXPERT_TABLE)
    reports = pd.read_csv(data / C.STUDY_LIST).rename(columns={"path": "report"})
    pairs = (record.merge(split, on="dicom_id").merge(views, on="dicom_id")
             .merge(reports[["study_id", "report"]], on="study_id").merge(labels.drop(columns="subject_id"), on="study_id"))
    pairs["file"] = pairs["path"].str.replace(".dcm", ".jpg")
    pairs["patient"] = "patient-" + pairs["subject_id"].astype(str)
    pairs["report_text"] = [(data / p).read_text(encoding="utf-8") for p in pairs["report"]]
    people = pd.read_csv(data / "mimic-iv/hosp/patients.csv.gz").set_index("subject_id")  # CheXpert-style columns
    pairs["Sex"] = pairs["subject_id"].map(people["gender"]).map({"F": "Female", "M": "Male"})
    pairs["Age"] = pairs["subject_id"].map(people["anchor_age"])
    pairs = pairs.drop(columns=["path", "report", "subject_id", "dicom_id"])
    pairs.to_parquet(tmp_path / "pairs.parquet")
    dataset = {"name": "pairs", "root": str(data), "format": "table", "synthetic": {"enabled": False},
               "table": {"file": str(tmp_path / "pairs.parquet"),
                         "columns": {"image": "file", "patient_id": "patient", "view": "ViewPosition"}}}
    cfg = {**tiny_config(), **shrunk(dataset), "labels": {"source": "official"}}
    cfg["defaults"]["evaluation"]["subgroups"] = {"min_size": 1}
    cfg["text"] = {**cfg.get("text", {}), "train_section": "auto"}  # 5 of the 60 twin reports have no impression
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    result = snakemake(tmp_path, "--cores", "2", "evaluate", "--configfile", str(config))
    results = tmp_path / "results" / "pairs"
    _, metrics = check_run(result, results)
    # a table with sex and age columns gets the subgroup section (no race, no insurance there)
    assert metrics["subgroups"]["demographics"]["columns"] == {"sex": "Sex", "age": "Age"}
    assert {g["attribute"] for g in metrics["subgroups"]["groups"]} == {"sex", "age", "age×sex"}
    summary_md = (results / "eval" / "summary.md").read_text()
    assert "## Subgroups" in summary_md and "| **sex** | all |" in summary_md and "| **age** | all |" in summary_md
    images = pd.read_parquet(results / "index" / "images.parquet")
    assert len(images) == len(record) and set(images["split"]) == set(split["split"])
    by_view = dict(zip(images["path"], images["view"], strict=True))
    assert all(by_view[f] == v for f, v in zip(pairs["file"], pairs["ViewPosition"], strict=True))
    # labels.source official: the report labels are the table's own, for every study
    got = pd.read_parquet(results / "labels" / "reports.parquet")
    studies = pd.read_parquet(results / "index" / "studies.parquet")
    study_of = dict(zip(pairs["study_id"], pairs["patient"], strict=True))
    assert len(got) == len(labels) == len(studies) and len(set(study_of.values())) == studies.subject_id.nunique()
    truth = labels.set_index("study_id")[C.OBSERVATIONS].sort_index()
    mine = got.set_index("study_id")[C.OBSERVATIONS].sort_index()
    pd.testing.assert_frame_equal(mine, truth, check_dtype=False)
