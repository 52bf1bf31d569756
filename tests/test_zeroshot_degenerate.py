"""Zero-shot on a small or rare-class test set (issue 27, items 5 and 7): resamples without both classes
are left out with a count, the same ones for the mean and its interval; the plot never crashes on a
degenerate interval; an interval wholly below 0.5 is flagged "prompt inverted?"."""

from __future__ import annotations

import numpy as np

from txtrayalign.constants import OBSERVATIONS
from txtrayalign.evaluate.bootstrap import resample_counts
from txtrayalign.evaluate.zeroshot import auroc_table, plot_auroc, to_json, to_markdown


def rare_class_case(n=40, seed=0):
    """Every observation balanced but Pneumothorax, with 2 positives ranked low (an inverted prompt)."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, len(OBSERVATIONS))) < 0.5).astype(float)
    scores = targets * 0.3 + rng.random((n, len(OBSERVATIONS)))
    j = OBSERVATIONS.index("Pneumothorax")
    targets[:, j] = 0.0
    targets[:2, j] = 1.0
    scores[:, j] = np.linspace(1, 2, n)
    scores[:2, j] = [0.0, 0.1]
    return scores, targets, j


def test_resamples_without_a_class_are_counted_and_the_mean_uses_the_same_ones():
    scores, targets, j = rare_class_case()
    counts = resample_counts(len(scores), 200, 0)
    table = auroc_table(scores, targets, counts).set_index("observation")
    # by hand: a resample holds no Pneumothorax positive when neither of the first two images is drawn
    without_positive = int((counts[:, :2].sum(axis=1) == 0).sum())
    assert without_positive > 0
    assert table.loc["Pneumothorax", "resamples_left_out"] == without_positive
    assert table.loc["mean", "resamples_left_out"] == without_positive
    assert table.loc["Cardiomegaly", "resamples_left_out"] == 0
    # the mean's interval comes from exactly the resamples where all 14 are defined
    kept = counts[:, :2].sum(axis=1) > 0
    table_kept = auroc_table(scores, targets, counts[kept]).set_index("observation")
    assert table_kept.loc["mean", "ci_low"] == table.loc["mean", "ci_low"]
    assert table_kept.loc["mean", "ci_high"] == table.loc["mean", "ci_high"]
    assert table_kept.loc["mean", "resamples_left_out"] == 0
    mean = table.loc["mean"]
    assert mean["ci_low"] <= mean["auroc"] <= mean["ci_high"]


def test_inverted_prompt_is_flagged_and_the_plot_survives_a_value_outside_its_interval(tmp_path):
    scores, targets, j = rare_class_case()
    table = auroc_table(scores, targets, resample_counts(len(scores), 200, 0))
    result = to_json(table, {})
    entry = result["auroc"]["Pneumothorax"]
    assert entry["value"] == 0.0 and entry["ci_high"] < 0.5 and entry["prompt_inverted"]
    assert not result["auroc"]["Cardiomegaly"]["prompt_inverted"]
    markdown = to_markdown({"exp": result})
    assert "| Pneumothorax | 0.000 [" in markdown and "prompt inverted?" in markdown.split("Pneumothorax")[1]
    assert markdown.count("prompt inverted?") == sum(e["prompt_inverted"] for e in result["auroc"].values())
    # a value outside its interval (before: "'xerr' must not contain negative values") and a missing one
    result["mean"].update(value=0.40, ci_low=0.45, ci_high=0.60)
    result["auroc"]["Fracture"].update(value=None, ci_low=None, ci_high=None)
    out = plot_auroc(result, tmp_path / "zeroshot.png")
    assert out.stat().st_size > 1000
