"""Cross-dataset evaluation: a model trained on the synthetic MIMIC twin, evaluated on its own test
split and on a synthetic Open-i tree (an evaluation-only `datasets` entry) by one `snakemake evaluate`."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.workflow_helpers import ROOT, planned_jobs, snakemake, tiny_config, write_config
from txtrayalign.synth import generate

pytestmark = pytest.mark.workflow


def pairs(sentences: pd.DataFrame) -> set:
    return set(zip(sentences["sentence_id"], sentences["sentence"], strict=True))


def retrieved(predictions: pd.DataFrame) -> set:
    return set(zip(predictions["sentence_id"], predictions["text"], strict=True))


def cross_config(tmp_path, **evaluation) -> dict:
    cfg = tiny_config(studies=60)
    cfg["datasets"] = {"iu": {"root": str(tmp_path / "iu-data"), "format": "openi"}}
    cfg["experiments"] = {"exp0": {"evaluate_on": ["tiny", "iu"], "evaluation": evaluation}}
    return cfg


def test_train_on_the_mimic_twin_evaluate_on_open_i(tmp_path):
    generate(tmp_path / "iu-data", studies=40, seed=7, image_size=64, layout="openi")
    config = write_config(cross_config(tmp_path), tmp_path)
    result = snakemake(tmp_path, "--cores", "2", "evaluate", config=config)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]

    results = tmp_path / "results"
    summary = pd.read_csv(results / "tiny" / "eval" / "summary.csv")
    print(summary[["experiment", "dataset", "method", "n_queries", "kept", "precision", "f1"]].to_string())
    print((results / "tiny" / "eval" / "summary.md").read_text())
    models = summary[summary["method"] == "model"]
    assert list(zip(models["experiment"], models["dataset"], strict=True)) == [("exp0", "tiny"), ("exp0", "iu")]
    baselines = summary[summary["experiment"] == "(baseline)"]  # one set per evaluated dataset
    assert sorted(baselines.groupby("dataset")["method"].apply(list).items()) == [
        ("iu", ["random", "most_frequent", "oracle"]), ("tiny", ["random", "most_frequent", "oracle"])]
    assert "| exp0 | iu | model |" in (results / "tiny" / "eval" / "summary.md").read_text()

    # the IU queries are the IU test split's images, scored against IU's labels and sentence bank
    iu_images = pd.read_parquet(results / "iu" / "index" / "images.parquet")
    test_images = set(iu_images.loc[iu_images["split"] == "test", "dicom_id"])
    metrics = json.loads((results / "iu" / "eval" / "exp0" / "metrics.json").read_text())
    predictions = pd.read_parquet(results / "iu" / "eval" / "exp0" / "predictions.parquet")
    assert test_images and set(predictions["dicom_id"]) == test_images
    assert metrics["n_queries"] == len(test_images) == int(models.iloc[1]["n_queries"])
    iu_sentences = pd.read_parquet(results / "iu" / "text" / "sentences.parquet")
    assert retrieved(predictions) <= pairs(iu_sentences)  # the target's bank (evaluation.bank: target)
    # results stay under each dataset's folder; the model only under the training one's
    assert (results / "tiny" / "eval" / "exp0" / "metrics.json").is_file()
    assert (results / "iu" / "embeddings" / "exp0" / "bank.h5").is_file()
    assert not (results / "iu" / "models").exists() and (results / "tiny" / "models" / "exp0" / "best.pt").is_file()

    again = snakemake(tmp_path, "--cores", "1", "-n", "evaluate", config=config)
    assert again.returncode == 0 and planned_jobs(again) == {}, again.stdout[-3000:]

    # bank: source scores the IU queries against the training dataset's bank: that bank is the one the
    # self-evaluation already embedded, so only the IU evaluation (and the summary) rerun, no embedding
    source = write_config(cross_config(tmp_path, bank="source"), tmp_path)
    plan = snakemake(tmp_path, "--cores", "1", "-n", "evaluate", config=source)
    assert plan.returncode == 0, plan.stderr[-3000:]
    jobs = planned_jobs(plan)
    assert jobs["evaluate_experiment"] == 1 and "embed" not in jobs and "train" not in jobs, jobs
    done = snakemake(tmp_path, "--cores", "2", "evaluate", config=source)
    assert done.returncode == 0, done.stderr[-6000:]
    predictions = pd.read_parquet(results / "iu" / "eval" / "exp0" / "predictions.parquet")
    tiny_sentences = pd.read_parquet(results / "tiny" / "text" / "sentences.parquet")
    assert set(predictions["dicom_id"]) == test_images
    assert retrieved(predictions) <= pairs(tiny_sentences) and not retrieved(predictions) <= pairs(iu_sentences)
    assert planned_jobs(snakemake(tmp_path, "--cores", "1", "-n", "evaluate", config=source)) == {}


def test_an_unknown_evaluate_on_name_stops_the_dry_run(tmp_path):
    cfg = cross_config(tmp_path)
    cfg["experiments"]["exp0"]["evaluate_on"] = ["tiny", "chexpert"]
    result = snakemake(tmp_path, "--cores", "1", "-n", "evaluate", config=write_config(cfg, tmp_path))
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "experiments.exp0.evaluate_on names 'chexpert', which is neither dataset.name (tiny)" in out
    assert "nor a key of datasets (iu)" in out


def test_a_source_bank_cannot_label_the_target_queries_by_its_sentences(tmp_path):
    cfg = cross_config(tmp_path, bank="source", query_labels="sentence_max")
    result = snakemake(tmp_path, "--cores", "1", "-n", "evaluate", config=write_config(cfg, tmp_path))
    assert result.returncode != 0
    assert "experiments.exp0.evaluation.bank = source with query_labels = sentence_max" in result.stdout + result.stderr


def test_a_dataset_entry_with_a_misspelt_key_names_it(tmp_path):
    cfg = cross_config(tmp_path)
    cfg["datasets"]["iu"]["fromat"] = "openi"
    result = snakemake(tmp_path, "--cores", "1", "-n", "evaluate", config=write_config(cfg, tmp_path))
    assert result.returncode != 0 and "datasets.iu.fromat" in result.stderr + result.stdout


def test_the_mimic_to_iu_example_plans_one_training_and_two_evaluations(tmp_path):
    configs = [str(ROOT / "config" / "config.yaml"), str(ROOT / "config" / "mimic-to-iu.yaml")]
    result = snakemake(tmp_path, "--cores", "1", "-n", "evaluate", "--configfile", *configs)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result)
    assert (jobs["train"], jobs["embed"], jobs["evaluate_experiment"], jobs["index_dataset"], jobs["summarize"]) == (
        1, 2, 2, 2, 1), jobs
    assert "results/iu-xray/eval/demo-cnn-bert/metrics.json" in result.stdout
