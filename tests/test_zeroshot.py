"""Zero-shot classification: CheXzero's softmax pair score, AUROC and its bootstrap against scikit-learn."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from txtrayalign.constants import OBSERVATIONS, TOP5_OBSERVATIONS
from txtrayalign.errors import InputError
from txtrayalign.evaluate import zeroshot
from txtrayalign.evaluate.bootstrap import resample_counts


def test_pair_score_is_the_softmax_over_the_two_similarities() -> None:
    img = np.array([[3.0, 4.0, 0.0]])  # norm 5: normalised to (0.6, 0.8, 0)
    prompts = np.zeros((14, 2, 3))
    prompts[:, 0] = [1.0, 0.0, 0.0]  # cos = 0.6
    prompts[:, 1] = [0.0, 2.0, 0.0]  # cos = 0.8 (normalised)
    prompts[5, 0] = [0.0, 0.0, 1.0]  # cos = 0.0 for observation 5's positive
    got = zeroshot.pair_scores(img, prompts)
    hand = math.exp(0.6) / (math.exp(0.6) + math.exp(0.8))
    assert got.shape == (1, 14)
    assert got[0, 0] == pytest.approx(hand, rel=1e-12)
    assert got[0, 5] == pytest.approx(math.exp(0.0) / (math.exp(0.0) + math.exp(0.8)), rel=1e-12)
    warm = zeroshot.pair_scores(img, prompts, temperature=0.1)
    assert warm[0, 0] == pytest.approx(math.exp(6.0) / (math.exp(6.0) + math.exp(8.0)), rel=1e-12)


def test_targets_follow_the_uncertain_and_blank_choices() -> None:
    labels = np.full((4, 14), np.nan)
    labels[:, 0] = [1, 0, -1, np.nan]
    t = zeroshot.binary_targets(labels)
    np.testing.assert_array_equal(t[:, 0], [1, 0, np.nan, 0])
    np.testing.assert_array_equal(zeroshot.binary_targets(labels, "positive")[:, 0], [1, 0, 1, 0])
    np.testing.assert_array_equal(zeroshot.binary_targets(labels, "negative", "exclude")[:, 0], [1, 0, 0, np.nan])
    with pytest.raises(InputError, match="evaluation.zeroshot.uncertain: 'maybe'"):
        zeroshot.binary_targets(labels, "maybe")


def _random_case(n: int = 300, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.choice([1.0, 0.0, -1.0, np.nan], size=(n, 14), p=[0.3, 0.3, 0.1, 0.3])
    scores = np.round(rng.random((n, 14)) + 0.3 * (labels == 1), 2)  # rounded: many ties
    labels[:, OBSERVATIONS.index("Fracture")] = np.where(rng.random(n) < 0.5, 0.0, np.nan)  # no positive at all
    return scores, labels


def test_auroc_and_intervals_equal_scikit_learn_on_the_same_scores() -> None:
    scores, labels = _random_case()
    targets = zeroshot.binary_targets(labels)  # -1 left out, blank negative
    n_boot, seed = 200, 11
    table = zeroshot.auroc_table(scores, targets, n_boot=n_boot, seed=seed).set_index("observation")
    idx = np.random.default_rng(seed).integers(0, len(scores), size=(n_boot, len(scores)))  # resample_counts' draw
    per_resample = {}
    for j, name in enumerate(OBSERVATIONS):
        keep = labels[:, j] != -1
        row = table.loc[name]
        assert row["n_excluded"] == (~keep).sum()
        if name == "Fracture":
            assert np.isnan(row["auroc"]) and row["n_positive"] == 0
            assert np.isnan(row["ci_low"]) and np.isnan(row["ci_high"])
            continue
        y = (labels[keep, j] == 1).astype(int)
        assert row["auroc"] == pytest.approx(roc_auc_score(y, scores[keep, j]), abs=1e-12)
        assert row["n_positive"] == y.sum() and row["n_negative"] == (1 - y).sum()
        boot = []
        for b in range(n_boot):
            sel = idx[b][keep[idx[b]]]
            boot.append(roc_auc_score((labels[sel, j] == 1).astype(int), scores[sel, j]))
        per_resample[name] = np.array(boot)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        assert row["ci_low"] == pytest.approx(lo, abs=1e-12) and row["ci_high"] == pytest.approx(hi, abs=1e-12)
    defined = [o for o in OBSERVATIONS if o != "Fracture"]
    assert table.loc["mean", "auroc"] == pytest.approx(table.loc[defined, "auroc"].mean(), abs=1e-12)
    means = np.mean([per_resample[o] for o in defined], axis=0)
    assert table.loc["mean", "ci_low"] == pytest.approx(np.percentile(means, 2.5), abs=1e-12)
    assert table.loc["mean_top5", "auroc"] == pytest.approx(table.loc[TOP5_OBSERVATIONS, "auroc"].mean(), abs=1e-12)


def test_weighted_auroc_equals_scikit_learn_with_sample_weights() -> None:
    rng = np.random.default_rng(0)
    s = np.round(rng.random(50), 1)
    y = (rng.random(50) < 0.4).astype(float)
    w = rng.integers(0, 4, size=(5, 50)).astype(float)
    got = zeroshot.weighted_auroc(s, y, w)
    for b in range(5):
        assert got[b] == pytest.approx(roc_auc_score(y, s, sample_weight=w[b]), abs=1e-12)
    assert np.isnan(zeroshot.weighted_auroc(s, np.zeros(50), w)).all()


def test_shared_resample_counts_are_used_as_given() -> None:
    scores, labels = _random_case(120)
    counts = resample_counts(120, 50, 4)
    a = zeroshot.auroc_table(scores, zeroshot.binary_targets(labels), counts=counts)
    b = zeroshot.auroc_table(scores, zeroshot.binary_targets(labels), n_boot=50, seed=4)
    assert a.equals(b)


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A toy text encoder: one dimension per vocabulary word, 'no' flips the sign of what follows."""
    vocab = sorted({w for o in OBSERVATIONS for w in o.lower().split()} | {"acute", "cardiopulmonary", "process"})
    out = np.zeros((len(texts), len(vocab)))
    for i, t in enumerate(texts):
        words = t.lower().split()
        sign = -1.0 if words and words[0] == "no" else 1.0
        for w in words:
            if w in vocab:
                out[i, vocab.index(w)] += sign
    return out


def test_end_to_end_with_a_text_encoder_and_json(tmp_path: Path) -> None:
    """Images embedded near the positive prompt of their positive findings: AUROC 1 there."""
    rng = np.random.default_rng(5)
    labels = np.where(rng.random((80, 14)) < 0.5, 1.0, 0.0)
    prompt = zeroshot.prompt_embeddings(bag_of_words)
    pos = prompt[:, 0] / np.linalg.norm(prompt[:, 0], axis=1, keepdims=True)
    images = np.where(labels[:, :, None] == 1, pos[None], -pos[None]).sum(axis=1) + 0.01 * rng.normal(size=(80, pos.shape[1]))
    result = zeroshot.zeroshot_evaluation(images, labels, encode_texts=bag_of_words, n_boot=20, seed=0)
    json.dumps(result)  # JSON-ready
    assert result["prompts"]["Atelectasis"] == ["atelectasis", "no atelectasis"]
    assert result["prompts"]["No Finding"] == ["no acute cardiopulmonary process", "acute cardiopulmonary process"]
    assert result["settings"] == {"uncertain": "exclude", "blank": "negative", "temperature": 1.0, "n": 80}
    assert result["auroc"]["Edema"]["value"] > 0.9 and result["mean"]["value"] > 0.8
    assert result["auroc"]["Edema"]["n_positive"] == int(labels[:, OBSERVATIONS.index("Edema")].sum())
    png = zeroshot.plot_auroc(result, tmp_path / "zeroshot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    one_class = zeroshot.zeroshot_evaluation(images, np.ones((80, 14)), prompt_emb=prompt, n_boot=5)
    assert one_class["auroc"]["Edema"] == {"value": None, "ci_low": None, "ci_high": None,
                                          "n_positive": 80, "n_negative": 0, "n_excluded": 0,
                                          "resamples_left_out": 0, "prompt_inverted": False}
    assert one_class["mean"]["value"] is None
    zeroshot.plot_auroc(one_class, tmp_path / "none.png")


def test_prompts_are_configurable_and_checked() -> None:
    p = zeroshot.resolve_prompts({"Edema": ["pulmonary edema", "no pulmonary edema"]})
    assert p["Edema"] == ("pulmonary edema", "no pulmonary edema") and p["Cardiomegaly"] == ("cardiomegaly", "no cardiomegaly")
    with pytest.raises(InputError, match=r"evaluation.zeroshot.prompts.Oedema: not an observation"):
        zeroshot.resolve_prompts({"Oedema": ["a", "b"]})
    with pytest.raises(InputError, match=r"evaluation.zeroshot.prompts.Edema: expected \[positive"):
        zeroshot.resolve_prompts({"Edema": "edema"})


def test_markdown_section() -> None:
    scores, labels = _random_case(100)
    targets = zeroshot.binary_targets(labels)
    table = zeroshot.auroc_table(scores, targets, n_boot=20, seed=0)
    result = zeroshot.to_json(table, zeroshot.default_prompts())
    md = zeroshot.to_markdown({"clip": result, "other": result}).splitlines()
    assert md[0] == "| observation | clip | other |" and len(md) == 2 + 14 + 2
    edema = result["auroc"]["Edema"]
    assert md[2 + OBSERVATIONS.index("Edema")] == (
        f"| Edema | {edema['value']:.3f} [{edema['ci_low']:.3f}, {edema['ci_high']:.3f}] | "
        f"{edema['value']:.3f} [{edema['ci_low']:.3f}, {edema['ci_high']:.3f}] |"
    )
    assert md[2 + OBSERVATIONS.index("Fracture")] == "| Fracture | n/a | n/a |"
    assert md[-1].startswith(f"| **mean (top 5)** | {result['mean_top5']['value']:.3f} [")
