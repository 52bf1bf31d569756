"""The field's protocols through `txtrayalign embed` / `evaluate` / `summarize` on the tiny fixture of
test_evaluate_cli: each one's numbers equal a direct computation from the embedding files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from test_evaluate_cli import FakeModel, embedded, evaluate_args  # noqa: F401  (embedded: a fixture)

import txtrayalign.train
from txtrayalign.cli import main
from txtrayalign.constants import OBSERVATIONS
from txtrayalign.evaluate import exact_pair, linear_probe
from txtrayalign.evaluate.embed import read_queries
from txtrayalign.evaluate.zeroshot import binary_targets

PROBE = {"enabled": True, "fractions": [0.5, 1.0], "seeds": [0, 1]}


@pytest.fixture(scope="module")
def with_train(embedded):  # noqa: F811
    paths, root = embedded
    mp = pytest.MonkeyPatch()
    mp.setattr(txtrayalign.train, "load_model", lambda model_dir, device: FakeModel())
    args = ["embed", "--model-dir", str(root / "models" / "exp1"), "--images-index", str(paths["index"]),
            "--split", str(paths["split"]), "--sections", str(paths["sections"]), "--query-split", "train",
            "--no-reports", "--dtype", "float32", "--device", "cpu", "--out-queries", str(root / "emb" / "queries.train.h5")]
    try:
        assert main(args) == 0
    finally:
        mp.undo()
    return paths, root


@pytest.fixture(scope="module")
def protocols_run(with_train, tmp_path_factory):
    paths, root = with_train
    tmp = tmp_path_factory.mktemp("protocols")
    queries = read_queries(root / "emb" / "queries.h5")
    ids = tmp / "ids.csv"  # a user's 5x200 list: the fixture's images have no view, so nothing is drawn
    pd.DataFrame({"dicom_id": queries.dicom_id[:4], "observation": ["Edema", "Edema", "Atelectasis", "Atelectasis"]}
                 ).to_csv(ids, index=False)
    out = tmp / "eval" / "exp1"
    args = evaluate_args(paths, root / "emb", out, "--train-queries", str(root / "emb" / "queries.train.h5"),
                         linear_probe=PROBE, five_by_200={"ids": str(ids)})
    assert main(args) == 0
    return paths, root, out, json.loads((out / "metrics.json").read_text())


def test_train_embeddings_have_no_reports(with_train):
    paths, root = with_train
    train = read_queries(root / "emb" / "queries.train.h5")
    split = pd.read_parquet(paths["split"])
    assert sorted(train.dicom_id) == sorted(split.loc[split["split"] == "train", "dicom_id"])
    assert train.report_embeddings.shape[0] == 0


def test_exact_pair_equals_the_ranks_of_the_embedding_files(protocols_run):
    _, root, out, metrics = protocols_run
    q = read_queries(root / "emb" / "queries.h5")
    ranks = exact_pair.partner_ranks(q.embeddings, q.report_embeddings, q.study_id, q.report_study_id)
    result = metrics["exact_pair"]["image_to_text"]
    assert result["missing"] == int(np.isnan(ranks).sum()) and result["n_queries"] == len(q.dicom_id)
    assert result["model"]["recall@1"]["value"] == pytest.approx(np.mean(ranks[~np.isnan(ranks)] <= 1))
    assert result["random"]["recall@1"]["value"] == pytest.approx(1 / q.report_embeddings.shape[0])
    assert (out / "exact_pair.png").stat().st_size > 0


def test_linear_probe_auroc_equals_scikit_learn_on_the_same_split(protocols_run):
    paths, root, out, metrics = protocols_run
    train = read_queries(root / "emb" / "queries.train.h5")
    labels = pd.read_parquet(paths["report_labels"]).set_index("study_id").loc[train.study_id, OBSERVATIONS]
    q = read_queries(root / "emb" / "queries.h5")
    test_labels = pd.read_parquet(paths["report_labels"]).set_index("study_id").loc[q.study_id, OBSERVATIONS]
    scores = linear_probe.probe_scores(train.embeddings, binary_targets(labels.to_numpy()), q.embeddings)
    truth = binary_targets(test_labels.to_numpy())
    checked = 0
    for j, name in enumerate(OBSERVATIONS):
        entry = metrics["linear_probe"]["fractions"]["1"]["auroc"][name]
        keep = ~np.isnan(truth[:, j])
        if entry["value"] is None:
            continue
        assert entry["value"] == pytest.approx(roc_auc_score(truth[keep, j], scores[keep, j]))
        checked += 1
    assert checked >= 3
    ids = pd.read_csv(out / "linear_probe_ids.csv", dtype={"dicom_id": str})
    assert ids.groupby(["fraction", "seed"]).size().to_dict() == {(0.5, 0): 6, (0.5, 1): 6, (1.0, 0): 12}


def test_five_by_200_from_a_user_list_and_the_summary(protocols_run, tmp_path):
    _, _, out, metrics = protocols_run
    result = metrics["five_by_200"]
    assert result["n_by_class"]["Edema"] == 2 and result["n_by_class"]["Atelectasis"] == 2
    written = pd.read_csv(out / "five_by_200_ids.csv")
    assert sorted(written["dicom_id"]) == sorted(i for ids in result["ids"].values() for i in ids)
    assert metrics["text_to_image"]["report"]["n_queries"] == metrics["n_reports"]
    md, csv = tmp_path / "summary.md", tmp_path / "summary.csv"
    assert main(["summarize", "--metrics", str(out / "metrics.json"), "--k", "2", "--out-md", str(md),
                 "--out-csv", str(csv)]) == 0
    text = md.read_text()
    for title in ("## Exact-pair retrieval", "## Text-to-image retrieval", "## CheXpert 5x200", "## Linear probe"):
        assert title in text
    table = pd.read_csv(csv)
    assert "exact_pair_i2t_recall@1" in table.columns and "linear_probe_auroc_100pct" in table.columns


def test_the_workflow_embeds_training_images_only_for_the_probe(tmp_path):
    from workflow_helpers import planned_jobs, snakemake, tiny_config, write_config

    cfg = tiny_config()
    plans = {}
    for enabled in (False, True):
        cfg["defaults"]["evaluation"]["linear_probe"] = {"enabled": enabled}
        res = snakemake(tmp_path, "-n", "-p", "--cores", "1", "evaluate", config=write_config(cfg, tmp_path))
        assert res.returncode == 0, res.stderr[-2000:]
        plans[enabled] = (planned_jobs(res), res.stdout + res.stderr)
    # embed_validation also embeds the validate split for the subgroups' thresholds (on by default):
    # the probe adds exactly one job of it, the training split's
    assert "--train-queries" not in plans[False][1] and "queries.train.h5" not in plans[False][1]
    assert plans[True][0]["embed_validation"] == plans[False][0]["embed_validation"] + 1
    assert "--query-split train --no-reports" in plans[True][1]
    assert "--train-queries" in plans[True][1] and "queries.train.h5" in plans[True][1]


def test_an_auxiliary_split_without_images_is_an_empty_file_and_the_evaluation_goes_on(embedded, tmp_path):  # noqa: F811
    """A dataset without validation (or training) images: `embed --allow-empty` writes an empty queries
    file instead of failing, and the evaluation reading it goes on without it (the linear probe is
    skipped, subgroup thresholds fall back to the evaluated queries); without the flag it is an error."""
    paths, root = embedded
    split = pd.read_parquet(paths["split"])
    no_validate = tmp_path / "split.parquet"
    split.loc[split["split"] != "validate"].to_parquet(no_validate)
    args = ["embed", "--model-dir", str(root / "models" / "exp1"), "--images-index", str(paths["index"]),
            "--split", str(no_validate), "--sections", str(paths["sections"]), "--query-split", "validate",
            "--dtype", "float32", "--device", "cpu", "--out-queries", str(tmp_path / "queries.validate.h5")]
    assert main(args) == 2 and not (tmp_path / "queries.validate.h5").exists()
    assert main(args + ["--allow-empty"]) == 0  # the model is never loaded: nothing to embed
    empty = read_queries(tmp_path / "queries.validate.h5")
    assert len(empty.dicom_id) == 0 and empty.attrs["empty"]
    out = tmp_path / "eval"
    assert main(evaluate_args(paths, root / "emb", out, "--validation-queries", str(tmp_path / "queries.validate.h5"),
                              "--train-queries", str(tmp_path / "queries.validate.h5"), linear_probe=PROBE)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics.get("linear_probe") is None
    assert metrics["methods"]["model"]
