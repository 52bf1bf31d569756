"""Per-group evaluation: values against scikit-learn and direct computation, gaps resampled together,
suppression, a planted disparity flagged (and only it), no more false alarms than the interval allows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from txtrayalign.constants import OBSERVATIONS
from txtrayalign.evaluate.bootstrap import resample_counts
from txtrayalign.evaluate.fairness import (
    NO_FINDING,
    auroc_figures,
    f1_thresholds,
    retrieval_normal,
    subgroup_evaluation,
    underdiagnosis_arrays,
)
from txtrayalign.evaluate.metrics import hit_arrays, hit_statistic
from txtrayalign.evaluate.prevalence import rare_against_common, training_prevalence
from txtrayalign.evaluate.subgroup_report import section, summary_columns
from txtrayalign.evaluate.subgroups import age_labels, define_groups, with_full_row

SETTINGS = dict(attributes=["sex", "age", "race", "insurance"], age_bins=[0, 20, 40, 60, 80],
                intersections=["age×sex", "race×sex"], min_size=20, rare_below=0.05)


def _patients(rng, n):
    return pd.DataFrame({
        "subject_id": np.arange(n) // 2,
        "sex": rng.choice(["M", "F"], n),
        "age": rng.uniform(18, 95, n),
        "race": rng.choice(np.array(["White", "Black", "Asian", None], dtype=object), n, p=[0.55, 0.25, 0.1, 0.1]),
        "insurance": rng.choice(["Medicare", "Medicaid", "Other"], n),
    })


def _data(rng, n, planted=None, gap=0.0):
    """Labels, retrieved labels and zero-shot scores; `planted` (mask) queries' scores carry less signal."""
    labels = rng.choice([1.0, 0.0, -1.0, np.nan], (n, 14), p=[0.25, 0.25, 0.05, 0.45]).astype(np.float32)
    retrieved = rng.choice([1.0, 0.0, np.nan], (n, 5, 14), p=[0.2, 0.2, 0.6]).astype(np.float32)
    targets = np.where(labels == 1, 1.0, np.where(labels == -1, np.nan, 0.0))
    signal = np.full(n, 1.5)
    if planted is not None:
        signal[planted] -= gap
    # No Finding's score follows "no pathology": the planted group's findings are missed more often
    scores = 1 / (1 + np.exp(-(rng.normal(0, 1, (n, 14)) + signal[:, None] * (np.nan_to_num(targets) - 0.5))))
    return labels, retrieved, scores, targets


def test_age_labels_and_groups():
    assert age_labels([0, 20, 40, 60, 80]) == ["0-20", "20-40", "40-60", "60-80", "80+"]
    patients = pd.DataFrame({"subject_id": [1, 1, 2, 3, 4, 5], "sex": ["F", "F", "M", None, "M", "F"],
                             "age": [19.0, 20.0, 85.0, 50.0, np.nan, 61.0]})
    groups, missing = define_groups(patients, ["sex", "age"], [0, 20, 40, 60, 80], ["age×sex"], min_size=2)
    by = {(g.attribute, g.name): g for g in groups}
    assert by[("sex", "F")].rows.tolist() == [0, 1, 5] and by[("sex", "F")].patients == 2
    assert by[("age", "0-20")].rows.tolist() == [0] and by[("age", "0-20")].suppressed
    assert by[("age", "20-40")].rows.tolist() == [1] and by[("age", "80+")].rows.tolist() == [2]
    assert missing == {"sex": 1, "age": 1, "age×sex": 2}
    assert by[("age×sex", "60-80 & F")].rows.tolist() == [5]


@pytest.mark.parametrize("ties", [True, False])
def test_group_auroc_matches_scikit_learn_on_full_data_and_on_a_resample(ties):
    rng = np.random.default_rng(1)
    n = 300
    patients = _patients(rng, n)
    _, _, scores, targets = _data(rng, n)
    if ties:
        scores = np.round(scores, 1)
    counts = resample_counts(n, 5, [0, 3])
    groups, _ = define_groups(patients, ["sex", "race"], [0, 20, 40, 60, 80], [], min_size=20)
    weights = with_full_row(counts, n)
    overall, figures, everyone = auroc_figures(scores, targets, weights, groups)
    j = OBSERVATIONS.index("Edema")
    keep = ~np.isnan(targets[:, j])
    assert everyone[0, j] == pytest.approx(roc_auc_score(targets[keep, j], scores[keep, j]), abs=1e-6)
    for g, fig in zip(groups, figures, strict=True):
        inside = np.zeros(n, bool)
        inside[g.rows] = True
        for mask, key in ((inside, "value"), (~inside, "rest")):
            m = mask & keep
            assert fig["auroc:Edema"][key] == pytest.approx(roc_auc_score(targets[m, j], scores[m, j]), abs=1e-6)
        # resample 0: the group's AUROC is scikit-learn's on the resampled images of the group
        idx = np.repeat(np.arange(n), counts[0].astype(int))
        sub = idx[inside[idx] & keep[idx]]
        rest = idx[~inside[idx] & keep[idx]]
        from txtrayalign.evaluate.fairness import _observation_aurocs

        code = np.where(inside, 0, -1)
        _, parts = _observation_aurocs(scores[keep, j], targets[keep, j], weights.T[keep].astype(np.float32),
                                       [code[keep]], [1])
        assert parts[0][0][1, 0] == pytest.approx(roc_auc_score(targets[sub, j], scores[sub, j]), abs=1e-6)
        assert parts[0][1][1, 0] == pytest.approx(roc_auc_score(targets[rest, j], scores[rest, j]), abs=1e-6)


def test_retrieval_per_group_and_gap_from_the_same_resamples():
    rng = np.random.default_rng(2)
    n = 200
    patients = _patients(rng, n)
    labels, retrieved, _, _ = _data(rng, n)
    counts = resample_counts(n, 50, [0, 3])
    result = subgroup_evaluation(patients, labels, retrieved, [1, 2], 2, counts, SETTINGS)
    women = patients["sex"].to_numpy() == "F"
    arrays = hit_arrays(labels, retrieved[:, :2])

    def f1(mask, w):
        return hit_statistic({k: np.array([w[mask] @ v[mask]]) for k, v in arrays.items()})["f1"][0]

    entry = next(g for g in result["groups"] if g["group"] == "F")["metrics"]["f1@2"]
    assert entry["value"] == pytest.approx(f1(women, np.ones(n)))
    assert entry["rest"] == pytest.approx(f1(~women, np.ones(n)))
    diffs = np.array([f1(women, c) - f1(~women, c) for c in counts])
    assert entry["gap_low"] == pytest.approx(np.percentile(diffs, 2.5))
    assert entry["gap_high"] == pytest.approx(np.percentile(diffs, 97.5))


def test_suppressed_groups_carry_no_numbers_and_missing_classes_are_counted():
    rng = np.random.default_rng(3)
    n = 120
    patients = _patients(rng, n)
    patients.loc[:4, "race"] = "Other"  # 5 queries: under min_size
    labels, retrieved, scores, targets = _data(rng, n)
    targets[:, OBSERVATIONS.index("Fracture")] = 0.0
    targets[np.flatnonzero(patients["sex"] == "F")[0], OBSERVATIONS.index("Fracture")] = 1.0  # one positive
    result = subgroup_evaluation(patients, labels, retrieved, [1], 1, resample_counts(n, 200, [0, 3]), SETTINGS,
                                 scores, targets)
    other = next(g for g in result["groups"] if g["group"] == "Other")
    assert other == {"attribute": "race", "group": "Other", "suppressed": True}
    women = next(g for g in result["groups"] if g["group"] == "F")["metrics"]["auroc:Fracture"]
    assert women["value"] is not None and women["resamples_left_out"] > 0  # resamples without the positive
    men = next(g for g in result["groups"] if g["group"] == "M")["metrics"]["auroc:Fracture"]
    assert men["value"] is None


def test_f1_thresholds_are_the_best_cut():
    rng = np.random.default_rng(4)
    scores = np.round(rng.uniform(size=(80, 14)), 2)
    targets = (rng.uniform(size=(80, 14)) < 0.3).astype(float)
    targets[:, 3] = 0.0
    t = f1_thresholds(scores, targets)
    j = 0
    best = max(np.unique(scores[:, j]), key=lambda c: (
        2 * ((scores[:, j] >= c) & (targets[:, j] == 1)).sum()
        / ((scores[:, j] >= c).sum() + (targets[:, j] == 1).sum())))
    assert t[j] == best and t[3] == 0.5


def test_underdiagnosis_definition():
    labels = np.full((4, 14), np.nan, np.float32)
    edema = OBSERVATIONS.index("Edema")
    labels[0, edema] = 1  # a finding, called normal by both
    labels[1, edema] = 1  # a finding, caught
    labels[2, OBSERVATIONS.index("Support Devices")] = 1  # devices alone are no finding
    labels[3, NO_FINDING] = 1
    retrieved = np.full((4, 2, 14), np.nan, np.float32)
    retrieved[1, 1, edema] = -1  # uncertain counts as not normal
    normal_retrieval = retrieval_normal(retrieved)
    assert normal_retrieval.tolist() == [True, False, True, True]
    arrays = underdiagnosis_arrays(labels, {"retrieval": normal_retrieval})
    assert arrays["finding"].tolist() == [1, 1, 0, 0] and arrays["retrieval"].tolist() == [1, 0, 0, 0]


def test_planted_disparity_is_flagged_and_only_there():
    rng = np.random.default_rng(5)
    n = 800
    patients = _patients(rng, n)
    planted = (patients["race"] == "Black").to_numpy()
    labels, retrieved, scores, targets = _data(rng, n, planted, gap=1.2)
    result = subgroup_evaluation(patients, labels, retrieved, [1], 1, resample_counts(n, 300, [0, 3]), SETTINGS,
                                 scores, targets)
    flagged = {(g["attribute"], g["group"]) for g in result["groups"]
               if not g["suppressed"] and g["metrics"].get("auroc_mean", {}).get("flagged")}
    assert flagged == {("race", "Black")}
    black = next(g for g in result["groups"] if g["group"] == "Black")["metrics"]["auroc_mean"]
    assert black["gap_high"] < 0 and black["value"] < black["rest"]


def test_nothing_planted_flags_at_the_false_alarm_rate():
    """With nothing planted: about 2.5% of gaps exclude 0 on the worse side (one-sided at 95%; allow 3
    standard errors), and an evaluation flags a figure at all (Bonferroni over its groups) at most about
    alpha/2 of the time: 36 (evaluation, figure) families, at most 3 with a flag (P(more) < 1%)."""
    worse = trials = families_flagged = families = 0
    metrics = ("auroc_mean", "f1@1", "underdiagnosis_zeroshot")
    for seed in range(12):
        rng = np.random.default_rng(100 + seed)
        n = 400
        patients = _patients(rng, n)
        labels, retrieved, scores, targets = _data(rng, n)
        result = subgroup_evaluation(patients, labels, retrieved, [1], 1, resample_counts(n, 300, [seed, 3]),
                                     {**SETTINGS, "intersections": []}, scores, targets)
        entries = [(m, g["metrics"][m]) for g in result["groups"] if not g["suppressed"] for m in metrics
                   if g["metrics"].get(m, {}).get("gap") is not None]
        trials += len(entries)
        worse += sum(e["excludes_zero"] and not e["better"] and (e["gap"] > 0) == m.startswith("underdiagnosis")
                     for m, e in entries)
        families += len(metrics)
        families_flagged += len({m for m, e in entries if e["flagged"]})
    rate, se = 0.025, np.sqrt(0.025 * 0.975 / trials)
    assert trials > 200
    assert worse / trials <= rate + 3 * se
    assert families == 36 and families_flagged <= 3


def test_rare_against_common_and_the_summary():
    rng = np.random.default_rng(6)
    studies = pd.DataFrame({"study_id": [1, 2, 3, 4], "split": ["train", "train", "train", "test"]})
    labels = pd.DataFrame({"study_id": [1, 2, 3, 4], **{o: [1.0, 0.0, np.nan, 1.0] for o in OBSERVATIONS}})
    labels["Fracture"] = [0.0, 0.0, 0.0, 1.0]
    prev = training_prevalence(labels, studies)
    assert prev["Edema"] == pytest.approx(1 / 3) and prev["Fracture"] == 0.0
    values = np.tile(np.linspace(0.5, 0.9, 14), (3, 1))
    out = rare_against_common(prev, {"auroc": values}, 0.05)
    assert out["rare"] == ["Fracture"]
    rare_value = values[0, OBSERVATIONS.index("Fracture")]
    common = np.delete(values[0], OBSERVATIONS.index("Fracture")).mean()
    assert out["comparison"]["auroc"]["gap"] == pytest.approx(rare_value - common)
    n = 150
    patients = _patients(rng, n)
    lab, ret, scores, targets = _data(rng, n)
    result = subgroup_evaluation(patients, lab, ret, [1], 1, resample_counts(n, 50, [0, 3]), SETTINGS, scores,
                                 targets, prevalence=prev, predicted=ret[:, 0])
    text = section([("exp", {**result, "n_queries": n})])
    assert "| sex | F |" in text and "Rare: training prevalence below 0.05 (Fracture)" in text
    assert "suppressed (< 20)" in text
    cols = summary_columns(result)
    assert {"subgroups_flagged", "worst_group_auroc_mean_gap", "rare_minus_common_auroc"} <= set(cols)


def test_the_protocol_inside_evaluate(tmp_path):
    """`evaluate()` with the subgroups protocol: patients from index/patients.parquet, thresholds from the
    validation queries, prevalence from the training studies; the summary section and the figures."""
    from txtrayalign.evaluate.context import resolve_settings
    from txtrayalign.evaluate.evaluation import evaluate
    from txtrayalign.evaluate.inputs import EvaluationInputs, Prompts, Queries, SentenceBank, Truth
    from txtrayalign.evaluate.protocols import subgroups as protocol

    rng = np.random.default_rng(7)
    d, n, m = 16, 160, 300

    def unit(rows):
        x = rng.standard_normal((rows, d)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def queries(count, first):
        study = np.arange(count) + first
        labels, _, _, _ = _data(rng, count)
        return Queries(dicom_id=np.array([f"d{s}" for s in study], dtype=object), study_id=study,
                       view=np.full(count, "", dtype=object), embeddings=unit(count), labels=labels,
                       labels_from="report", sections=None, report_embeddings=np.zeros((0, d), np.float32),
                       report_study_id=np.zeros(0, np.int64), path="queries.h5")

    test, validate = queries(n, 50_000_000), queries(60, 51_000_000)
    patients = _patients(rng, n).assign(study_id=test.study_id)
    patients.to_parquet(tmp_path / "patients.parquet")
    train = np.arange(400) + 52_000_000
    all_studies = np.r_[train, test.study_id]
    report_labels = pd.DataFrame({"study_id": all_studies, **{o: rng.choice([1.0, 0.0, np.nan], all_studies.size)
                                                              for o in OBSERVATIONS}})
    report_labels.loc[: train.size - 1, "Fracture"] = np.r_[1.0, np.zeros(train.size - 1)]  # rare: 1 in 400
    report_labels.to_parquet(tmp_path / "reports.parquet")
    pd.DataFrame({"study_id": all_studies, "split": ["train"] * train.size + ["test"] * n,
                  "train_text": "x"}).to_parquet(tmp_path / "sections.parquet")
    bank = SentenceBank(embeddings=unit(m), sentence_id=np.arange(m), texts=np.array([f"s{i}" for i in range(m)], dtype=object),
                        labels=rng.choice([1.0, 0.0, np.nan], (m, 14)).astype(np.float32),
                        text_count=np.ones(m, np.int64), labelled_by="chexpert", path="bank.h5")
    inputs = EvaluationInputs(
        experiment="exp", queries=test, sentence_bank=bank, report_bank=None,
        prompts=Prompts(unit(28).reshape(14, 2, d), {}), truth=Truth({"chexpert": test.labels}),
        validation_queries=validate,
        paths={"patients": str(tmp_path / "patients.parquet"), "sections": str(tmp_path / "sections.parquet"),
               "report_labels": str(tmp_path / "reports.parquet")})
    off = {name: {"enabled": False} for name in ("report_retrieval", "text_metrics", "sensitivity")}
    settings = resolve_settings({"evaluation": {"k": [1, 2], "bootstrap": 40, **off, "subgroups": {"min_size": 10}},
                                 "summary": {"k": 2}})
    result = evaluate(inputs, settings).metrics["subgroups"]
    assert result["settings"]["threshold_from"].startswith("validation")
    assert result["settings"]["intersections"] == ["age×sex", "race×sex"]
    assert {("sex", "F"), ("sex", "M"), ("insurance", "Medicaid")} <= {(g["attribute"], g["group"]) for g in result["groups"]}
    assert result["rare_common"]["rare"] == ["Fracture"]
    assert "## Subgroups" in protocol.summary_section([("exp", result)], 2)
    written = protocol.figures(result, tmp_path, "exp")
    assert [p.name for p in written] == ["subgroups.png", "prevalence.png", "subgroups.csv"]
    assert all(p.stat().st_size > 0 for p in written)


def test_cluster_resamples_draw_patients_whole():
    """Every query counts as often as its patient was drawn; one patient per query is the study law."""
    from txtrayalign.evaluate.bootstrap import resample_cluster_counts

    subject = np.array([7, 7, 3, 9, 9, 9, 3, 11])
    counts = resample_cluster_counts(subject, 200, [4, 2])
    for s in np.unique(subject):
        same = counts[:, subject == s]
        assert (same == same[:, :1]).all()
    first_study = np.unique(subject, return_index=True)[1]
    assert (counts[:, first_study].sum(axis=1) == 4).all()  # 4 patients drawn per resample
    assert np.array_equal(resample_cluster_counts(np.arange(8), 200, [4, 2]), resample_counts(8, 200, [4, 2]))


def test_a_patients_studies_resample_together():
    """Nothing planted, but each patient's 5 studies alike (as a patient's studies resemble each other):
    drawing studies one by one counts 5 copies as 5 independent queries, and the gaps exclude 0 on the
    worse side far beyond the one-sided 2.5%; drawing patients (the protocol's resamples) keeps to it."""
    from txtrayalign.evaluate.bootstrap import resample_cluster_counts

    metrics = ("auroc_mean", "f1@1", "underdiagnosis_zeroshot")
    worse = {"studies": 0, "patients": 0}
    trials = 0
    for seed in range(6):
        rng = np.random.default_rng(300 + seed)
        n_patients, per = 80, 5
        patients = _patients(rng, n_patients).assign(subject_id=np.arange(n_patients))
        patients = patients.loc[np.repeat(np.arange(n_patients), per)].reset_index(drop=True)
        data = [np.repeat(a, per, axis=0) for a in _data(rng, n_patients)]
        n = n_patients * per
        for name, counts in (("studies", resample_counts(n, 300, [seed, 3])),
                             ("patients", resample_cluster_counts(patients["subject_id"].to_numpy(), 300, [seed, 3]))):
            result = subgroup_evaluation(patients, data[0], data[1], [1], 1, counts,
                                         {**SETTINGS, "intersections": []}, data[2], data[3])
            entries = [(m, g["metrics"][m]) for g in result["groups"] if not g["suppressed"] for m in metrics
                       if g["metrics"].get(m, {}).get("gap") is not None]
            worse[name] += sum(e["excludes_zero"] and not e["better"] and (e["gap"] > 0) == m.startswith("underdiagnosis")
                               for m, e in entries)
            trials += len(entries) if name == "studies" else 0
    rate, se = 0.025, np.sqrt(0.025 * 0.975 / trials)
    assert trials > 100
    assert worse["patients"] / trials <= rate + 3 * se
    assert worse["studies"] / trials > rate + 3 * se  # the flaw the patient draw removes


def test_queries_without_a_known_patient_are_drawn_on_their_own():
    from types import SimpleNamespace

    from txtrayalign.evaluate.protocols.subgroups import patient_counts

    patients = pd.DataFrame({"subject_id": [5.0, 5.0, -1.0, -1.0, 8.0]})
    counts = patient_counts(patients, SimpleNamespace(counts=np.ones((400, 5)), seed=0))
    assert counts.shape == (400, 5) and (counts[:, 0] == counts[:, 1]).all()
    assert not (counts[:, 2] == counts[:, 3]).all()  # two unknown patients, not one
    assert patient_counts(patients, SimpleNamespace(counts=None, seed=0)) is None
