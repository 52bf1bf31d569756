"""Linear probe: seeded label subsets, the joint solver against scikit-learn, AUROC and its intervals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from txtrayalign.constants import OBSERVATIONS
from txtrayalign.evaluate import linear_probe
from txtrayalign.evaluate.bootstrap import resample_counts
from txtrayalign.evaluate.zeroshot import binary_targets


def synthetic(n: int, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and 1 / 0 / -1 / NaN labels that depend on them linearly (plus noise)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    weights = np.random.default_rng(99).standard_normal((d, len(OBSERVATIONS)))  # the same for train and test
    z = x @ weights + rng.standard_normal((n, len(OBSERVATIONS)))
    labels = (z > 0.5).astype(float)
    labels[rng.random(labels.shape) < 0.1] = -1.0
    labels[rng.random(labels.shape) < 0.2] = np.nan
    return x, labels


def test_subsets_are_seeded_and_sized() -> None:
    ids = [f"d{i:03d}" for i in range(200)][::-1]  # input order does not matter
    subsets = linear_probe.draw_label_subsets(ids, (0.01, 0.1, 1.0), (0, 1))
    sizes = subsets.groupby(["fraction", "seed"]).size().to_dict()
    assert sizes == {(0.01, 0): 2, (0.01, 1): 2, (0.1, 0): 20, (0.1, 1): 20, (1.0, 0): 200}
    one = subsets[(subsets["fraction"] == 0.01) & (subsets["seed"] == 0)]["dicom_id"].tolist()
    assert one == ["d031", "d189"]  # the same ids for this seed on every run and machine
    again = linear_probe.draw_label_subsets(sorted(ids), (0.01, 0.1, 1.0), (0, 1))
    assert again.equals(subsets)


def test_solver_matches_scikit_learn() -> None:
    x, labels = synthetic(600)
    test_x, test_labels = synthetic(300, seed=1)
    targets = binary_targets(labels)
    scores = linear_probe.probe_scores(x, targets, test_x, c=0.5)
    scaler = StandardScaler().fit(x)
    for j in range(len(OBSERVATIONS)):
        keep = ~np.isnan(targets[:, j])
        ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=5000).fit(scaler.transform(x[keep]), targets[keep, j])
        want = ref.decision_function(scaler.transform(test_x))
        np.testing.assert_allclose(scores[:, j], want, atol=2e-3, rtol=1e-3)


def test_auroc_is_scikit_learns_on_the_same_split() -> None:
    x, labels = synthetic(500)
    test_x, test_labels = synthetic(250, seed=2)
    subsets = linear_probe.draw_label_subsets([str(i) for i in range(500)], (0.1, 1.0), (0, 1))
    counts = resample_counts(250, 200, 3)
    got = linear_probe.linear_probe_evaluation(x, [str(i) for i in range(500)], labels, test_x, test_labels,
                                               subsets, counts=counts)
    test_targets = binary_targets(test_labels)
    train_targets = binary_targets(labels)
    for fraction in ("0.1", "1"):
        part = subsets[subsets["fraction"] == float(fraction)]
        per_seed = []
        for _, rows in part.groupby("seed"):
            idx = rows["dicom_id"].astype(int).to_numpy()
            s = linear_probe.probe_scores(x[idx], train_targets[idx], test_x)
            keep = ~np.isnan(test_targets[:, 0])
            per_seed.append(roc_auc_score(test_targets[keep, 0], s[keep, 0]))
        entry = got["fractions"][fraction]["auroc"][OBSERVATIONS[0]]
        assert entry["value"] == pytest.approx(np.mean(per_seed), abs=1e-12)
        assert entry["ci_low"] < entry["value"] < entry["ci_high"]
    assert got["fractions"]["1"]["n_train"] == 500 and got["fractions"]["0.1"]["n_train"] == 50
    assert got["fractions"]["0.1"]["seed_std"] is not None and got["fractions"]["1"]["seed_std"] is None
    assert got["fractions"]["1"]["mean"]["value"] > 0.75  # the labels are linear in the embeddings


def test_observation_with_one_class_is_not_fitted() -> None:
    x, labels = synthetic(300)
    labels[:, 3] = 0.0  # no positive in training
    test_x, test_labels = synthetic(100, seed=4)
    scores = linear_probe.probe_scores(x, binary_targets(labels), test_x)
    assert np.isnan(scores[:, 3]).all() and not np.isnan(scores[:, 2]).any()
    subsets = linear_probe.draw_label_subsets([str(i) for i in range(300)], (1.0,), (0,))
    got = linear_probe.linear_probe_evaluation(x, [str(i) for i in range(300)], labels, test_x, test_labels, subsets)
    entry = got["fractions"]["1"]["auroc"][OBSERVATIONS[3]]
    assert entry["value"] is None and entry["n_seeds"] == 0
    fitted = [got["fractions"]["1"]["auroc"][o]["value"] for o in OBSERVATIONS if o != OBSERVATIONS[3]]
    assert got["fractions"]["1"]["mean"]["value"] == pytest.approx(np.mean(fitted))


def test_resamples_without_both_classes_are_left_out_and_counted() -> None:
    """A test observation with 2 positives: many resamples draw neither, have no AUROC, and are kept out
    of its interval and of the mean's, with their count (as the zero-shot protocol does)."""
    x, labels = synthetic(300)
    test_x, test_labels = synthetic(60, seed=5)
    test_labels[:, 4] = 0.0
    test_labels[:2, 4] = 1.0
    subsets = linear_probe.draw_label_subsets([str(i) for i in range(300)], (1.0,), (0,))
    got = linear_probe.linear_probe_evaluation(x, [str(i) for i in range(300)], labels, test_x, test_labels,
                                               subsets, counts=resample_counts(60, 400, 7))["fractions"]["1"]
    rare = got["auroc"][OBSERVATIONS[4]]
    expected = 400 * (58 / 60) ** 60  # P(a resample draws neither positive) = (1 - 2/60)^60, about 0.13
    assert 0.5 * expected < rare["resamples_left_out"] < 1.5 * expected
    assert got["mean"]["resamples_left_out"] == rare["resamples_left_out"]  # those resamples have no mean
    assert got["auroc"][OBSERVATIONS[0]]["resamples_left_out"] == 0
    assert rare["ci_low"] is not None and rare["ci_low"] <= rare["ci_high"]
