"""Labeller-sensitivity table: micro / macro / example-based F1 equal scikit-learn's, per labeller and policy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from txtrayalign.constants import OBSERVATIONS, TOP5_OBSERVATIONS
from txtrayalign.evaluate import label_sensitivity as ls
from txtrayalign.evaluate.bootstrap import resample_counts


def labels(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice([1.0, 0.0, -1.0, np.nan], size=(n, 14), p=[0.25, 0.25, 0.15, 0.35])


def sklearn_f1(truth: np.ndarray, pred: np.ndarray, uncertain: str, cols=slice(None)) -> dict[str, float]:
    pos = {-1.0: 1 if uncertain == "positive" else 0}
    t = np.vectorize(lambda v: 1 if v == 1 else pos.get(v, 0))(truth[:, cols])
    p = np.vectorize(lambda v: 1 if v == 1 else pos.get(v, 0))(pred[:, cols])
    return {
        "micro": f1_score(t, p, average="micro", zero_division=0),
        "macro": f1_score(t, p, average="macro", zero_division=0),
        "example": f1_score(t, p, average="samples", zero_division=1),
    }


def test_rows_equal_scikit_learn_for_every_labeller_and_policy() -> None:
    rng = np.random.default_rng(1)
    n = 60
    ours_truth, ours_ret, bert_truth, bert_ret, official = (labels(rng, n) for _ in range(5))
    ours_truth[:3] = np.nan  # queries without any label: example F1 1 when nothing is predicted
    ours_ret[:3] = np.nan
    truth = {"chexpert": ours_truth, "chexbert": bert_truth, "official": official}
    retrieved = {"chexpert": ours_ret, "chexbert": bert_ret}
    table = ls.sensitivity_table(truth, retrieved)
    pairs = [("chexpert", "chexpert"), ("chexbert", "chexbert"), ("official", "chexpert"), ("official", "chexbert")]
    assert list(dict.fromkeys(zip(table["truth"], table["retrieved"], strict=True))) == pairs
    assert len(table) == len(pairs) * 2 * 3 and not table["absent"].any()
    for t_name, r_name in pairs:
        for uncertain in ("positive", "negative"):
            expected = sklearn_f1(truth[t_name], retrieved[r_name], uncertain)
            rows = table[(table["truth"] == t_name) & (table["retrieved"] == r_name) & (table["uncertain"] == uncertain)]
            for avg, value in expected.items():
                assert rows.set_index("averaging").loc[avg, "value"] == pytest.approx(value, abs=1e-12), (t_name, avg)
    moved = table.pivot_table(index=["truth", "retrieved", "averaging"], columns="uncertain", values="value")
    assert (moved["positive"] != moved["negative"]).all()  # the policy matters when -1 labels exist


def test_top5_scope_and_intervals_against_resampled_scikit_learn() -> None:
    rng = np.random.default_rng(2)
    n, n_boot = 50, 30
    truth, pred = labels(rng, n), labels(rng, n)
    counts = resample_counts(n, n_boot, 9)
    table = ls.sensitivity_table({"chexpert": truth}, {"chexpert": pred}, counts=counts, scope="top5")
    cols = [OBSERVATIONS.index(o) for o in TOP5_OBSERVATIONS]
    idx = np.random.default_rng(9).integers(0, n, size=(n_boot, n))
    for uncertain in ("positive", "negative"):
        rows = table[table["uncertain"] == uncertain].set_index("averaging")
        boot = [sklearn_f1(truth[i], pred[i], uncertain, cols) for i in idx]
        for avg, value in sklearn_f1(truth, pred, uncertain, cols).items():
            assert rows.loc[avg, "value"] == pytest.approx(value, abs=1e-12)
            lo, hi = np.percentile([b[avg] for b in boot], [2.5, 97.5])
            assert rows.loc[avg, "ci_low"] == pytest.approx(lo, abs=1e-12)
            assert rows.loc[avg, "ci_high"] == pytest.approx(hi, abs=1e-12)


def test_absent_labellers_keep_their_rows_and_say_why() -> None:
    rng = np.random.default_rng(3)
    ours = labels(rng, 20)
    why = "no CheXbert checkpoint (labels.chexbert.checkpoint / CHEXBERT_CHECKPOINT)"
    table = ls.sensitivity_table(
        {"chexpert": ours, "chexbert": why, "official": ours}, {"chexpert": labels(rng, 20), "chexbert": why}
    )
    absent = table[table["absent"] != ""]
    assert set(zip(absent["truth"], absent["retrieved"], strict=True)) == {("chexbert", "chexbert"), ("official", "chexbert")}
    assert absent["value"].isna().all() and len(absent) == 2 * 2 * 3
    assert absent["absent"].str.contains("no CheXbert checkpoint").all()
    md = ls.to_markdown(table)
    lines = md.splitlines()
    assert lines[0] == "| truth labels | retrieved text labels | uncertain as | micro F1 | macro F1 | example F1 |"
    assert "| chexbert | chexbert | positive | absent | absent | absent |" in lines
    assert sum(line.startswith("| ") for line in lines) == 1 + 4 * 2
    assert any(line.startswith("- chexbert / chexbert absent: truth chexbert: no CheXbert") for line in lines)
    official = table[(table["truth"] == "official") & (table["retrieved"] == "chexpert")]
    assert official["value"].notna().all()
    row = official.iloc[0]
    assert f"| official | chexpert | positive | {row['value']:.3f} |" in md  # no interval without counts


def test_real_iu_findings_ours_against_chexbert() -> None:
    """Real reports: CheXbert's published labels of IU X-ray findings against our labeller on the same text."""
    import xml.etree.ElementTree as ET
    from pathlib import Path

    import pandas as pd

    from txtrayalign.chexpert import label_reports

    root = Path(__file__).resolve().parents[1] / ".." / "shared" / "testdata" / "reports" / "iu_dev"
    if not (root / "chexbert_findings.csv").is_file():
        pytest.skip(f"real IU X-ray development set absent: {root}")
    cb = pd.read_csv(root / "chexbert_findings.csv").head(300)
    findings = []
    for uid in cb["uid"]:
        node = ET.parse(root / "xml" / f"{uid}.xml").find(".//AbstractText[@Label='FINDINGS']")
        findings.append(" ".join((node.text or "").split()))
    ours = label_reports(findings)
    theirs = cb[OBSERVATIONS].to_numpy()
    table = ls.sensitivity_table({"chexbert": theirs}, {"chexpert": ours}, pairs=[("chexbert", "chexpert")])
    for uncertain in ("positive", "negative"):
        rows = table[table["uncertain"] == uncertain].set_index("averaging")
        for avg, value in sklearn_f1(theirs, ours, uncertain).items():
            assert rows.loc[avg, "value"] == pytest.approx(value, abs=1e-12)
    assert (table["value"] > 0.5).all()  # two labellers of the same text agree far above chance
