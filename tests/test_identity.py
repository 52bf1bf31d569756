"""The pieces of a run's identity without the workflow: code closures, table contracts, one schema."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from txtrayalign import settings
from txtrayalign.tables import TableError, read_table
from txtrayalign.utils import PACKAGE_ROOT, code_fingerprint, module_closure

STAGES = {
    "synth": "txtrayalign.synth.cli", "index": "txtrayalign.index", "images": "txtrayalign.images.cli",
    "text": "txtrayalign.text.cli", "label": "txtrayalign.chexpert.cli", "split": "txtrayalign.splits",
    "train": "txtrayalign.train.cli", "evaluate": "txtrayalign.evaluate.cli",
}


def _rel(paths):
    return {str(p.relative_to(PACKAGE_ROOT)) for p in paths}


def test_every_stage_closure_covers_utils_and_what_it_imports():
    closures = {stage: _rel(module_closure(m)) for stage, m in STAGES.items()}
    for stage, files in closures.items():
        assert "utils.py" in files and "__init__.py" in files, stage
    for stage in ("synth", "index", "label", "split", "train", "evaluate"):
        assert "constants.py" in closures[stage], stage
    assert "constants.py" not in closures["images"] | closures["text"]
    # lazy imports inside functions count: train.cli imports the loop only inside run()
    assert {"train/loop.py", "train/data.py", "images/shards.py", "settings.py", "tables.py"} <= closures["train"]
    # package data a module names: the labeller's phrase files
    assert {"chexpert/phrases/observations.yaml", "chexpert/phrases/triggers.yaml"} <= closures["label"]
    # and nothing it does not import
    assert not any(f.startswith(("evaluate/", "chexpert/", "synth/")) for f in closures["train"])
    assert "config.schema.yaml" not in set().union(*closures.values())


def test_code_fingerprint_follows_an_edit_of_an_imported_module(tmp_path, monkeypatch):
    import txtrayalign.utils as utils

    copy = tmp_path / "txtrayalign"
    shutil.copytree(PACKAGE_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(utils, "PACKAGE_ROOT", copy)
    before = {stage: code_fingerprint(m) for stage, m in STAGES.items()}
    (copy / "constants.py").write_text((copy / "constants.py").read_text() + "\n# edited\n")
    after = {stage: code_fingerprint(m) for stage, m in STAGES.items()}
    changed = {stage for stage in STAGES if before[stage] != after[stage]}
    assert changed == {"synth", "index", "label", "split", "train", "evaluate"}  # train: through tables.py
    (copy / "utils.py").write_text((copy / "utils.py").read_text() + "\n# edited\n")
    assert all(code_fingerprint(m) != after[stage] for stage, m in STAGES.items())


def test_read_table_names_the_file_and_the_missing_columns(tmp_path):
    path = tmp_path / "split.parquet"
    pd.DataFrame({"subject_id": [1], "study_id": [2], "split": ["train"]}).to_parquet(path)
    with pytest.raises(TableError, match=r"split.parquet: not a split table, missing column\(s\) \['dicom_id'\]"):
        read_table(path, "split")
    with pytest.raises(TableError, match="dicom_id"):
        read_table(path, "split", ["dicom_id", "split"])
    assert list(read_table(path, "split", ["study_id"]).columns) == ["study_id"]
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(TableError, match="bad.parquet: not a readable parquet file"):
        read_table(tmp_path / "bad.parquet", "split")
    with pytest.raises(FileNotFoundError, match="absent.parquet"):
        read_table(tmp_path / "absent.parquet", "sections")
    with pytest.raises(KeyError, match="not declared"):
        read_table(path, "split", ["colour"])


def test_one_schema_names_every_bad_key():
    with pytest.raises(settings.ConfigError, match=r"unknown key 'experiments\.x\.train\.epoch'"):
        settings.resolve_experiment({"train": {"epoch": 3}}, "experiments.x")
    with pytest.raises(settings.ConfigError, match=r"'experiments\.x\.gpus' = -1"):
        settings.resolve_experiment({"gpus": -1}, "experiments.x")
    with pytest.raises(settings.ConfigError, match=r"'defaults\.train\.micro_batch_size' = 64 is larger"):
        settings.resolve_experiment({"train": {"micro_batch_size": 64}}, "defaults")
    config = {"dataset": {"name": "d", "root": "r"}, "experiments": {"a": None},
              "splits": {"subsets": {"full": 1.0}}}
    settings.check_config(config)
    filled = settings.with_defaults(config)
    assert filled["images"]["resize_mode"] == "center_crop" and filled["summary"]["k"] == 2
    assert settings.resolve_experiments(filled)["a"] == settings.resolve_experiment({})
    with pytest.raises(settings.ConfigError, match=r"experiments\.a\.subset = 'half' is not one of"):
        settings.resolve_experiments({**filled, "experiments": {"a": {"subset": "half"}}})
