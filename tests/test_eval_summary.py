"""The cross-experiment summary table from metrics.json files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from txtrayalign.evaluate import EvaluationInputError
from txtrayalign.evaluate.metrics import HEADLINE_METRICS
from txtrayalign.evaluate.summary import BASELINES, summary_table, to_markdown, write_summary


def _entry(base: float) -> dict:
    entry = {
        name: {"value": base + i / 100, "ci_low": base + i / 100 - 0.01, "ci_high": base + i / 100 + 0.01}
        for i, name in enumerate(HEADLINE_METRICS)
    }
    entry["kept"] = {"value": 9.0, "ci_low": 8.0, "ci_high": 10.0}
    return entry


def _write(path: Path, name: str, model: float, baseline: float, ks=("1", "2")) -> Path:
    methods = {"model": {"k": {k: _entry(model) for k in ks}}}
    methods.update({b: {"k": {k: _entry(baseline + j) for k in ks}} for j, b in enumerate(BASELINES)})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"experiment": name, "n_queries": 10, "k": [int(k) for k in ks], "methods": methods})
    )
    return path


def test_shared_baselines_appear_once_and_models_keep_their_order(tmp_path):
    a = _write(tmp_path / "b_exp" / "metrics.json", "b_exp", 0.5, 0.1)
    b = _write(tmp_path / "a_exp" / "metrics.json", "a_exp", 0.6, 0.1)
    table = summary_table([a, b], k=2)
    assert table["experiment"].tolist() == ["b_exp", "a_exp", "(baseline)", "(baseline)", "(baseline)"]
    assert table["method"].tolist() == ["model", "model", *BASELINES]
    assert table.loc[0, "precision"] == pytest.approx(0.51)
    md = to_markdown(table, 2)
    assert "| b_exp | model | 9 / 10 | 0.500 [0.490, 0.510] | 0.510 [0.500, 0.520]" in md
    assert "BLEU" not in md  # no BLEU in these metrics files: no empty column


def test_differing_baselines_are_listed_per_experiment(tmp_path):
    a = _write(tmp_path / "a" / "metrics.json", "a", 0.5, 0.1)
    b = _write(tmp_path / "b" / "metrics.json", "b", 0.6, 0.2)
    table = summary_table([a, b], k=1)
    assert len(table) == 2 + 2 * len(BASELINES)
    assert table.loc[table["method"] == "random", "experiment"].tolist() == ["a", "b"]


def test_write_summary_files_and_errors(tmp_path):
    a = _write(tmp_path / "a" / "metrics.json", "a", 0.5, 0.1)
    csv, md = tmp_path / "s.csv", tmp_path / "s.md"
    write_summary([a], 2, csv, md)
    assert pd.read_csv(csv)["method"].tolist() == ["model", *BASELINES]
    rows = [line for line in md.read_text().splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 1 + len(BASELINES)  # header, the model, the baselines
    with pytest.raises(EvaluationInputError, match="no model results at k=5"):
        summary_table([a], k=5)
    with pytest.raises(EvaluationInputError, match="not found"):
        summary_table([tmp_path / "missing.json"], k=2)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(EvaluationInputError, match="not valid JSON"):
        summary_table([tmp_path / "bad.json"], k=2)


def test_bleu_column_and_old_metrics_files(tmp_path):
    a = _write(tmp_path / "a" / "metrics.json", "a", 0.5, 0.1)
    m = json.loads(a.read_text())
    for entry in m["methods"].values():
        entry["k"]["2"]["bleu"] = {"value": 0.25, "ci_low": 0.2, "ci_high": 0.3}
    a.write_text(json.dumps(m))
    table = summary_table([a], k=2)
    assert table["bleu"].tolist() == [0.25] * 4 and table["kept"].tolist() == [9] * 4
    assert "BLEU@2" in to_markdown(table, 2) and "0.250 [0.200, 0.300]" in to_markdown(table, 2)
    for entry in m["methods"].values():
        del entry["k"]["2"]["kept"]
    a.write_text(json.dumps(m))
    with pytest.raises(EvaluationInputError, match=r"'kept'\] missing for model at k=2"):
        summary_table([a], k=2)
