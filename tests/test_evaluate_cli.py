"""End to end on a tiny fixture: embed (fake model) -> evaluate -> summarize, determinism, bad inputs."""

from __future__ import annotations

import json
import re
import shlex
import warnings
import zlib
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

import txtrayalign.train
from txtrayalign.cli import main
from txtrayalign.constants import OBSERVATIONS
from txtrayalign.evaluate import EvaluationInputError
from txtrayalign.evaluate.context import resolve_settings
from txtrayalign.evaluate.embed import read_bank, read_queries
from txtrayalign.evaluate.evaluation import evaluate
from txtrayalign.evaluate.inputs import load_inputs

SIZE = 16
DIM = 8
WORDS = [
    "effusion",
    "no",
    "pleural",
    "heart",
    "size",
    "normal",
    "edema",
    "mild",
    "tube",
    "in",
    "place",
    "clear",
]


class FakeModel:
    """Deterministic stand-in for a trained model: a random projection of the pixels and a hashed
    bag of words, both L2-normalised."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(SIZE * SIZE, DIM, generator=g)

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dtype == torch.uint8 and x.shape[1:] == (SIZE, SIZE)
        z = (x.reshape(x.shape[0], -1).float() / 255.0) @ self.w
        return torch.nn.functional.normalize(z, dim=1)

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        z = torch.zeros(len(texts), DIM)
        for i, t in enumerate(texts):
            for w in t.lower().replace(".", " ").split():
                z[i, zlib.crc32(w.encode()) % DIM] += 1.0
        return torch.nn.functional.normalize(z + 1e-3, dim=1)


def _labels(rng: np.random.Generator, n: int, p_mention: float) -> np.ndarray:
    values = rng.choice([1.0, 0.0, -1.0], size=(n, len(OBSERVATIONS)), p=[0.45, 0.45, 0.1])
    return np.where(rng.random((n, len(OBSERVATIONS))) < p_mention, values, np.nan)


def build_fixture(root: Path) -> dict[str, Path]:
    """Images (one shard), split table, sentences, sections and labels for 16 studies."""
    rng = np.random.default_rng(0)
    splits = ["train"] * 8 + ["validate"] * 3 + ["test"] * 5
    rows, sent_rows, sec_rows = [], [], []
    sid = 1000
    for s, split in enumerate(splits):
        study_id, subject_id = 50_000_000 + s, 10_000_000 + s
        n_images = 2 if s % 2 else 1
        for j in range(n_images):
            rows.append((subject_id, study_id, f"{s:08x}-0000000{j}-00000000-00000000-00000000", split))
        sentences = []
        for _ in range(3):
            words = rng.choice(WORDS, size=rng.integers(2, 5))
            sentences.append(" ".join(words).capitalize() + ".")
        if s % 4 == 0:
            sentences.append("No pleural effusion.")  # a repeated text across studies (dedupe, frequency)
        for p, text in enumerate(sentences):
            sent_rows.append((sid, subject_id, study_id, split, "impression", p, text))
            sid += 1
        # the impression: the last two sentences; study 13 (a test study) has none
        impression = "" if s == 13 else " ".join(sentences[-2:])
        sec_rows.append((subject_id, study_id, split, " ".join(sentences), " ".join(sentences), impression))
    split_df = pd.DataFrame(rows, columns=["subject_id", "study_id", "dicom_id", "split"])
    sentences = pd.DataFrame(
        sent_rows,
        columns=["sentence_id", "subject_id", "study_id", "split", "section", "position", "sentence"],
    )
    sections = pd.DataFrame(
        sec_rows, columns=["subject_id", "study_id", "split", "label_text", "train_text", "impression"]
    )
    report_labels = pd.DataFrame(_labels(rng, len(splits), 0.5), columns=OBSERVATIONS)
    report_labels.insert(0, "study_id", 50_000_000 + np.arange(len(splits)))
    report_labels.insert(0, "subject_id", 10_000_000 + np.arange(len(splits)))
    sentence_labels = pd.DataFrame(_labels(rng, len(sentences), 0.2), columns=OBSERVATIONS)
    sentence_labels.insert(0, "study_id", sentences["study_id"].to_numpy())
    sentence_labels.insert(0, "sentence_id", sentences["sentence_id"].to_numpy())

    paths = {
        name: root / rel
        for name, rel in {
            "index": "images/16/index.parquet",
            "split": "splits/full.parquet",
            "sentences": "text/sentences.parquet",
            "sections": "text/sections.parquet",
            "report_labels": "labels/reports.parquet",
            "sentence_labels": "labels/sentences.parquet",
        }.items()
    }
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    images = rng.integers(0, 256, size=(len(split_df), SIZE, SIZE), dtype=np.uint8)
    with h5py.File(paths["index"].parent / "p10.h5", "w") as f:
        f.create_dataset("images", data=images, chunks=(1, SIZE, SIZE))
        f.create_dataset(
            "dicom_id", data=split_df["dicom_id"].to_numpy(dtype=object), dtype=h5py.string_dtype()
        )
    pd.DataFrame(
        {"dicom_id": split_df["dicom_id"], "shard": "p10.h5", "row": np.arange(len(split_df))}
    ).to_parquet(paths["index"])
    split_df.to_parquet(paths["split"])
    sentences.to_parquet(paths["sentences"])
    sections.to_parquet(paths["sections"])
    report_labels.to_parquet(paths["report_labels"])
    sentence_labels.to_parquet(paths["sentence_labels"])
    return paths


def embed_args(paths: dict[str, Path], out: Path) -> list[str]:
    return [
        "embed",
        "--model-dir",
        str(out / "models" / "exp1"),
        "--images-index",
        str(paths["index"]),
        "--split",
        str(paths["split"]),
        "--sentences",
        str(paths["sentences"]),
        "--sections",
        str(paths["sections"]),
        "--query-split",
        "test",
        "--report-section",
        "impression",
        "--bank-splits",
        "train,validate",
        "--dtype",
        "float32",
        "--batch-size",
        "3",
        "--device",
        "cpu",
        "--out-queries",
        str(out / "emb" / "queries.h5"),
        "--out-bank",
        str(out / "emb" / "bank.h5"),
    ]


SETTINGS = {"evaluation": {"k": [1, 2, 5], "bootstrap": 50, "seed": 0, "gallery": 3,
                           "text_metrics": {"reference_section": "impression"}}}


def settings_json(**evaluation) -> str:
    """`--settings` of the tests: SETTINGS with `evaluation` keys replaced (a "labels" or "summary"
    keyword replaces that block)."""
    blocks = {key: evaluation.pop(key) for key in ("labels", "summary") if key in evaluation}
    return json.dumps({"evaluation": {**SETTINGS["evaluation"], **evaluation}, **blocks})


def evaluate_args(paths: dict[str, Path], emb: Path, out_dir: Path, *extra: str, **settings) -> list[str]:
    return [
        "evaluate",
        "--queries",
        str(emb / "queries.h5"),
        "--bank",
        str(emb / "bank.h5"),
        "--report-labels",
        str(paths["report_labels"]),
        "--sentence-labels",
        str(paths["sentence_labels"]),
        "--sentences",
        str(paths["sentences"]),
        "--sections",
        str(paths["sections"]),
        "--images-index",
        str(paths["index"]),
        "--settings",
        settings_json(**settings),
        "--report-labeller",
        "sentence-labels",
        "--out-dir",
        str(out_dir),
        *extra,
    ]


def input_paths(paths: dict[str, Path], queries: Path, bank: Path) -> dict[str, str]:
    """`load_inputs`' paths of the fixture."""
    return {"queries": str(queries), "bank": str(bank), "report_labels": str(paths["report_labels"]),
            "sentence_labels": str(paths["sentence_labels"]), "sentences": str(paths["sentences"])}


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> tuple[dict[str, Path], Path]:
    root = tmp_path_factory.mktemp("evalfix")
    paths = build_fixture(root)
    mp = pytest.MonkeyPatch()
    mp.setattr(txtrayalign.train, "load_model", lambda model_dir, device: FakeModel())
    try:
        assert main(embed_args(paths, root)) == 0
    finally:
        mp.undo()
    return paths, root


def test_embed_writes_queries_bank_and_reports(embedded):
    paths, root = embedded
    q = read_queries(root / "emb" / "queries.h5")
    split = pd.read_parquet(paths["split"])
    test = split[split["split"] == "test"]
    assert sorted(q.dicom_id) == sorted(test["dicom_id"])
    assert q.embeddings.shape == (len(test), DIM) and q.embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(q.embeddings, axis=1), 1.0, rtol=1e-5)
    assert sorted(q.report_study_id) == sorted(test["study_id"].unique())
    assert q.report_embeddings.shape == (test["study_id"].nunique(), DIM)

    bank = read_bank(root / "emb" / "bank.h5")
    s = pd.read_parquet(paths["sentences"])
    src = s[s["split"].isin(["train", "validate"])]
    assert len(bank.sentence_id) == src["sentence"].nunique()  # deduplicated by exact text
    expected_ids = src.groupby("sentence")["sentence_id"].min()  # lowest sentence_id kept
    assert set(bank.sentence_id) == set(expected_ids)
    counts = dict(zip(bank.sentence_id, bank.text_count, strict=True))
    repeated = expected_ids["No pleural effusion."]
    assert counts[repeated] == (src["sentence"] == "No pleural effusion.").sum() >= 2
    assert bank.attrs["experiment"] == "exp1" and bank.attrs["dtype"] == "float32"


def test_evaluate_and_summarize_end_to_end(embedded, tmp_path, capsys):
    paths, root = embedded
    out = tmp_path / "eval" / "exp1"
    assert main(evaluate_args(paths, root / "emb", out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["experiment"] == "exp1" and metrics["n_queries"] == 8 and metrics["k"] == [1, 2, 5]
    assert set(metrics["methods"]) == {"model", "random", "most_frequent", "oracle"}
    for method, entry in metrics["methods"].items():
        for k in ("1", "2", "5"):
            m = entry["k"][k]
            for name in (
                "flat_hit",
                "precision",
                "recall",
                "f1",
                "duplicates",
                "micro_f1_all",
                "macro_f1_top5",
            ):
                assert set(m[name]) == {"value", "ci_low", "ci_high"}, (method, k, name)
        assert entry["k"]["1"]["hits"]["value"] <= metrics["methods"]["oracle"]["k"]["1"]["hits"]["value"]
        assert (
            entry["k"]["5"]["flat_hit"]["value"]
            <= metrics["methods"]["oracle"]["k"]["5"]["flat_hit"]["value"]
        )
    assert set(metrics["methods"]["model"]["exact_pair"]) == {"recall@1", "recall@5", "recall@10", "mrr"}
    assert metrics["methods"]["model"]["exact_pair"]["recall@10"]["value"] == 1.0  # only 5 reports
    assert "exact_pair" in metrics["methods"]["random"]

    pred = pd.read_parquet(out / "predictions.parquet")
    assert len(pred) == 8 * 5
    assert {"dicom_id", "study_id", "rank", "sentence_id", "score", "text", "hits", *OBSERVATIONS} <= set(
        pred.columns
    )
    assert (pred.groupby("dicom_id")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()
    for png in ("f1_by_observation.png", "precision_recall_vs_k.png", "model_vs_baselines.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "gallery.html").read_text()
    thumbs = sorted((out / "gallery").glob("*.png"))
    assert len(thumbs) == 3 and all(f'src="gallery/{t.name}"' in page for t in thumbs)

    csv, md = tmp_path / "eval" / "summary.csv", tmp_path / "eval" / "summary.md"
    args = ["summarize", "--metrics", str(out / "metrics.json"), str(out / "metrics.json"), "--k", "2"]
    assert main([*args, "--out-csv", str(csv), "--out-md", str(md)]) == 0
    table = pd.read_csv(csv)
    assert table["method"].tolist() == ["model", "model", "random", "most_frequent", "oracle"]
    text = md.read_text()
    assert "flat-hit@2" in text and "F1@2" in text and " [" in text
    printed = capsys.readouterr().out
    assert str(csv) in printed and str(md) in printed


def recompute_from_predictions(pred: pd.DataFrame, study_labels: pd.DataFrame, k: int) -> dict[str, float]:
    """The original's metrics in plain Python from predictions.parquet rows and the query labels."""
    labels = study_labels.drop_duplicates("study_id").set_index("study_id")[OBSERVATIONS]
    flat, kept, prec, rec, dup = [], 0, 0.0, 0.0, 0.0
    for _, rows in pred.groupby("dicom_id", sort=False):
        rows = rows.sort_values("rank").head(k)
        query = labels.loc[rows["study_id"].iloc[0]].to_numpy(dtype=float)
        retrieved = rows[OBSERVATIONS].to_numpy(dtype=float)
        hit = {o for o in range(14) for r in retrieved if not np.isnan(query[o]) and r[o] == query[o]}
        flat.append(1.0 if hit else 0.0)
        n_query, n_retrieved = int((~np.isnan(query)).sum()), int((~np.isnan(retrieved)).sum())
        if n_query == 0 or n_retrieved == 0:
            continue  # skipped: no labels, or only blank sentences retrieved
        kept += 1
        prec += len(hit) / n_retrieved
        rec += len(hit) / n_query
        dup += k - len({tuple("-" if np.isnan(v) else v for v in r) for r in retrieved})
    p, r = prec / kept, rec / kept
    return {
        "flat_hit": sum(flat) / len(flat),
        "precision": p,
        "recall": r,
        "f1": 2 * p * r / (p + r) if p + r else 0.0,
        "duplicates": dup / kept,
        "kept": kept,
    }


def test_metrics_and_summary_equal_a_direct_recomputation_from_predictions(embedded, tmp_path):
    from nltk.translate.bleu_score import sentence_bleu

    paths, root = embedded
    out = tmp_path / "eval" / "exp1"
    assert main(evaluate_args(paths, root / "emb", out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["query_labels"] == "report"
    pred = pd.read_parquet(out / "predictions.parquet")
    study_labels = pd.read_parquet(paths["report_labels"])
    reports = pd.read_parquet(paths["sections"]).set_index("study_id")["train_text"]
    for k in (1, 2, 5):
        got = metrics["methods"]["model"]["k"][str(k)]
        expected = recompute_from_predictions(pred, study_labels, k)
        for name, value in expected.items():
            assert got[name]["value"] == pytest.approx(value), (k, name)
        for name in ("precision", "recall", "f1", "flat_hit"):
            for method in metrics["methods"]:
                assert 0 <= metrics["methods"][method]["k"][str(k)][name]["value"] <= 1, (method, k, name)
        bleus = []  # the original BLEU, written out once more from its definition
        for _, rows in pred.groupby("dicom_id", sort=False):
            rows = rows.sort_values("rank").head(k)
            labels = study_labels.set_index("study_id").loc[rows["study_id"].iloc[0], OBSERVATIONS]
            if labels.isna().all() or rows[OBSERVATIONS].isna().all().all():
                continue
            ref = re.sub(
                "[^0-9a-zA-Z]+", " ", reports.loc[rows["study_id"].iloc[0]].replace("\n", "")
            ).split()
            hyp = ". ".join(rows["text"]).split()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                bleus.append(sentence_bleu([ref], hyp, weights=(0.5, 0.5)))
        assert got["bleu"]["value"] == pytest.approx(np.mean(bleus)), k
    csv, md = tmp_path / "eval" / "summary.csv", tmp_path / "eval" / "summary.md"
    args = ["summarize", "--metrics", str(out / "metrics.json"), "--k", "2"]
    assert main([*args, "--out-csv", str(csv), "--out-md", str(md)]) == 0
    row = pd.read_csv(csv).iloc[0]
    expected = recompute_from_predictions(pred, study_labels, 2)
    for name, value in expected.items():
        assert row[name] == pytest.approx(value, abs=1e-6), name
    assert f"| exp1 | model | {expected['kept']} / 8 | {expected['flat_hit']:.3f} [" in md.read_text()


def test_sentence_max_query_labels(embedded, tmp_path):
    from txtrayalign.evaluate.labels import sentence_max_labels

    paths, root = embedded
    out = tmp_path / "eval" / "exp1"
    assert main(evaluate_args(paths, root / "emb", out, query_labels="sentence_max")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["query_labels"] == "sentence_max"
    pred = pd.read_parquet(out / "predictions.parquet")
    study_labels = sentence_max_labels(
        pd.read_parquet(paths["sentence_labels"]), pd.read_parquet(paths["sentences"])
    )
    for k in (1, 2, 5):
        expected = recompute_from_predictions(pred, study_labels, k)
        for name, value in expected.items():
            assert metrics["methods"]["model"]["k"][str(k)][name]["value"] == pytest.approx(value), (k, name)


def test_identical_inputs_give_identical_outputs(embedded, tmp_path):
    paths, root = embedded
    a, b = tmp_path / "a" / "exp1", tmp_path / "b" / "exp1"
    for out in (a, b):
        assert main(evaluate_args(paths, root / "emb", out, sample=5)) == 0
    assert (a / "metrics.json").read_bytes() == (b / "metrics.json").read_bytes()
    pd.testing.assert_frame_equal(
        pd.read_parquet(a / "predictions.parquet"), pd.read_parquet(b / "predictions.parquet")
    )
    assert (a / "gallery.html").read_text() == (b / "gallery.html").read_text()
    assert json.loads((a / "metrics.json").read_text())["n_queries"] == 5


def test_labeller_gets_the_concatenated_retrieved_sentences(embedded):
    paths, root = embedded
    settings = resolve_settings({"evaluation": {"k": [1, 2], "bootstrap": 0}})
    inputs = load_inputs(input_paths(paths, root / "emb" / "queries.h5", root / "emb" / "bank.h5"),
                         settings["evaluation"], settings["labels"])
    seen: list[str] = []

    def labeller(texts: list[str]) -> np.ndarray:
        seen.extend(texts)
        return np.array([[1.0 if "effusion" in t.lower() else np.nan] * len(OBSERVATIONS) for t in texts])

    result = evaluate(inputs, settings, labeller=labeller)
    joined = " ".join(inputs.sentence_bank.texts[result.context.sentence_retrieval["model"].index[0, :2]])
    assert joined in seen and len(seen) == len(set(seen))  # each distinct text labelled once
    assert result.metrics["methods"]["model"]["k"]["2"]["micro_recall_all"]["value"] is not None


def _rewrite(path: Path, df: pd.DataFrame) -> None:
    df.to_parquet(path)


@pytest.mark.parametrize(
    "case",
    ["query_study_missing", "bank_sentence_missing", "k_too_large", "empty_bank", "report_text_missing"],
)
def test_bad_inputs_fail_with_clear_errors(embedded, tmp_path, case, capsys):
    paths, root = embedded
    paths = dict(paths)
    emb = root / "emb"
    settings: dict = {}
    if case == "query_study_missing":
        df = pd.read_parquet(paths["report_labels"])
        paths["report_labels"] = tmp_path / "reports.parquet"
        _rewrite(paths["report_labels"], df[df["study_id"] != df["study_id"].max()])
        expect = ["query study ids", str(paths["report_labels"]), "queries.h5"]
    elif case == "bank_sentence_missing":
        df = pd.read_parquet(paths["sentence_labels"])
        paths["sentence_labels"] = tmp_path / "sentences_labels.parquet"
        _rewrite(paths["sentence_labels"], df.iloc[1:])
        expect = ["bank sentence ids", str(paths["sentence_labels"]), "bank.h5"]
    elif case == "report_text_missing":  # BLEU needs each query study's report
        df = pd.read_parquet(paths["sections"])
        paths["sections"] = tmp_path / "sections.parquet"
        test_studies = df.loc[df["split"] == "test", "study_id"]
        _rewrite(paths["sections"], df[df["study_id"] != test_studies.max()])
        expect = ["query study ids", str(paths["sections"]), "queries.h5"]
    elif case == "k_too_large":
        settings = {"k": [1, 2, 1000]}
        expect = ["k=1000", "bank.h5"]
    else:
        emb = tmp_path / "emb"
        emb.mkdir()
        (emb / "queries.h5").write_bytes((root / "emb" / "queries.h5").read_bytes())
        with h5py.File(emb / "bank.h5", "w") as f:  # the layout embed writes, without sentences
            f.create_dataset("embeddings", data=np.zeros((0, DIM), np.float32))
            f.create_dataset("sentence_id", data=np.zeros(0, np.int64))
            f.create_dataset("text_count", data=np.zeros(0, np.int64))
            f.create_dataset("prompt_embeddings", data=np.zeros((len(OBSERVATIONS), 2, DIM), np.float32))
            f.attrs["prompts"] = "{}"
        expect = ["empty sentence bank", str(emb / "bank.h5")]
    args = evaluate_args(paths, emb, tmp_path / "out", **settings)
    assert main(args) == 2  # the CLI logs to stderr (setup_logging replaces the root handlers)
    message = " ".join(line for line in capsys.readouterr().err.splitlines() if " ERROR " in line)
    for part in expect:
        assert part in message, (part, message)
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_empty_query_set_raises(embedded, tmp_path):
    paths, root = embedded
    with h5py.File(tmp_path / "queries.h5", "w") as f:
        f.create_dataset("embeddings", data=np.zeros((0, DIM), np.float32))
        f.create_dataset("dicom_id", data=np.zeros(0, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("study_id", data=np.zeros(0, np.int64))
        f.create_dataset("view", data=np.zeros(0, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("report_embeddings", data=np.zeros((0, DIM), np.float32))
        f.create_dataset("report_study_id", data=np.zeros(0, np.int64))
    settings = resolve_settings({})
    with pytest.raises(EvaluationInputError, match="empty query set.*queries.h5"):
        load_inputs(input_paths(paths, tmp_path / "queries.h5", root / "emb" / "bank.h5"),
                    settings["evaluation"], settings["labels"])


def test_embed_with_no_query_images_fails(embedded, tmp_path, monkeypatch, capsys):
    paths, root = embedded
    monkeypatch.setattr(txtrayalign.train, "load_model", lambda model_dir, device: FakeModel())
    args = embed_args(paths, tmp_path)
    args[args.index("--query-split") + 1] = "nonexistent"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no query images" in err and str(paths["split"]) in err


def test_select_inputs_no_dedupe_keeps_rows_with_text_counts_and_views():
    from txtrayalign.evaluate.embed import select_inputs

    split = pd.DataFrame(
        {
            "study_id": [1, 1, 2, 3],
            "dicom_id": ["a", "b", "c", "d"],
            "split": ["test", "test", "train", "train"],
        }
    )
    index = pd.DataFrame({"dicom_id": ["b", "a", "c"], "shard": "p10.h5", "row": [0, 1, 2]})
    sentences = pd.DataFrame(
        {
            "sentence_id": [30, 20, 21, 10],
            "study_id": [3, 2, 2, 1],
            "split": ["train", "train", "train", "test"],
            "sentence": ["No effusion.", "No effusion.", "Heart normal.", "Test only."],
        }
    )
    sections = pd.DataFrame({"study_id": [1, 2, 3], "train_text": ["Test only.", "x", "y"]})
    views = pd.DataFrame({"dicom_id": ["a", "b"], "view": ["PA", None]})
    kept = select_inputs(split, index, sentences, sections, "test", ["train"], dedupe=False, views=views)
    assert kept.queries.to_dict("list") == {"dicom_id": ["a", "b"], "study_id": [1, 1], "view": ["PA", ""]}
    assert kept.bank.to_dict("list") == {
        "sentence_id": [20, 21, 30],
        "sentence": ["No effusion.", "Heart normal.", "No effusion."],
        "text_count": [2, 1, 2],
    }
    deduped = select_inputs(split, index, sentences, sections, "test", ["train"])
    assert deduped.bank["sentence_id"].tolist() == [20, 21] and deduped.bank["text_count"].tolist() == [2, 1]
    assert deduped.reports.to_dict("list") == {"study_id": [1], "text": ["Test only."]}
    with pytest.raises(EvaluationInputError, match="empty sentence bank"):
        select_inputs(split, index, sentences, sections, "test", ["validate"])


def test_evaluate_with_the_project_chexpert_labeller(embedded, tmp_path):
    chexpert = pytest.importorskip("txtrayalign.chexpert")
    if not hasattr(chexpert, "label_texts"):
        pytest.skip("txtrayalign.chexpert.label_texts not available")
    paths, root = embedded
    out = tmp_path / "exp1"
    args = evaluate_args(paths, root / "emb", out, gallery=0, bootstrap=0)
    args[args.index("--report-labeller") + 1] = "chexpert"
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "chexpert" in metrics["report_labeller"]
    oracle_k2 = metrics["methods"]["oracle"]["k"]["2"]
    assert oracle_k2["micro_f1_all"]["value"] is not None and oracle_k2["micro_f1_all"]["ci_low"] is None
    page = (out / "gallery.html").read_text()  # written without queries: a workflow output exists
    assert 'class="query"' not in page and not list((out / "gallery").glob("*.png"))


def test_non_finite_embeddings_are_rejected(embedded, tmp_path):
    paths, root = embedded
    bad = tmp_path / "bank.h5"
    bad.write_bytes((root / "emb" / "bank.h5").read_bytes())
    with h5py.File(bad, "r+") as f:
        f["embeddings"][0, 0] = np.nan
    settings = resolve_settings({})
    with pytest.raises(EvaluationInputError, match="bank.h5: embeddings contain NaN"):
        load_inputs(input_paths(paths, root / "emb" / "queries.h5", bad), settings["evaluation"], settings["labels"])


# --- the wider evaluation (issue 15): zero-shot, text metrics, report level, labeller sensitivity ----


@pytest.fixture(scope="module")
def evaluated(embedded, tmp_path_factory) -> tuple[dict[str, Path], Path, Path, dict]:
    paths, root = embedded
    out = tmp_path_factory.mktemp("wider") / "eval" / "exp1"
    assert main(evaluate_args(paths, root / "emb", out)) == 0
    return paths, root, out, json.loads((out / "metrics.json").read_text())


def _top(pred: pd.DataFrame, k: int) -> pd.DataFrame:
    return pred.sort_values(["dicom_id", "rank"]).groupby("dicom_id", sort=False).head(k)


def _by_query(values: pd.Series, dicom_ids: np.ndarray) -> np.ndarray:
    return values.loc[list(dicom_ids)].to_numpy()


def test_zeroshot_auroc_through_the_cli_equals_scikit_learn(evaluated):
    from sklearn.metrics import roc_auc_score

    from txtrayalign.evaluate.zeroshot import default_prompts

    paths, root, out, metrics = evaluated
    with h5py.File(root / "emb" / "bank.h5") as f:
        prompt_emb = f["prompt_embeddings"][()]
        assert json.loads(f.attrs["prompts"]) == {k: list(v) for k, v in default_prompts().items()}
    texts = [p for o in OBSERVATIONS for p in default_prompts()[o]]  # what the embed stage had to embed
    expected = FakeModel().encode_texts(texts).numpy().reshape(len(OBSERVATIONS), 2, DIM)
    np.testing.assert_allclose(prompt_emb, expected, rtol=1e-5, atol=1e-6)

    q = read_queries(root / "emb" / "queries.h5")
    img = q.embeddings / np.linalg.norm(q.embeddings, axis=1, keepdims=True)
    txt = prompt_emb / np.linalg.norm(prompt_emb, axis=2, keepdims=True)
    sims = np.einsum("nd,opd->nop", img, txt)
    prob = np.exp(sims[..., 0]) / np.exp(sims).sum(axis=2)  # softmax over (positive, negative)
    labels = pd.read_parquet(paths["report_labels"]).set_index("study_id").loc[q.study_id, OBSERVATIONS]
    labels = labels.to_numpy(float)
    got = metrics["zeroshot"]
    assert got["settings"]["uncertain"] == "exclude" and got["settings"]["blank"] == "negative"
    values = []
    for j, o in enumerate(OBSERVATIONS):
        keep = labels[:, j] != -1  # uncertain left out, blank negative
        y = (labels[keep, j] == 1).astype(int)
        if 0 < y.sum() < y.size:
            values.append(roc_auc_score(y, prob[keep, j]))
            assert got["auroc"][o]["value"] == pytest.approx(values[-1]), o
            assert got["auroc"][o]["ci_low"] <= got["auroc"][o]["ci_high"]
        else:
            assert got["auroc"][o]["value"] is None, o
    assert len(values) >= 3 and got["mean"]["value"] == pytest.approx(np.mean(values))
    assert (out / "zeroshot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_text_metrics_and_report_level_retrieval_equal_a_direct_computation(evaluated):
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu
    from rouge_score import rouge_scorer

    from txtrayalign.evaluate.textmetrics import tokenize

    paths, root, out, metrics = evaluated
    assert metrics["summary_k"] == 2 and metrics["text_similarity"]["reference_section"] == "impression"
    pred = pd.read_parquet(out / "predictions.parquet")
    sections = pd.read_parquet(paths["sections"]).set_index("study_id")
    q = read_queries(root / "emb" / "queries.h5")
    refs = sections.loc[q.study_id, "impression"].to_numpy()
    valid = np.array([bool(r.strip()) for r in refs])
    assert 0 < valid.sum() < len(valid)  # study 13 has no impression: left out
    hyps = _by_query(_top(pred, 2).groupby("dicom_id", sort=False)["text"].agg(" ".join), q.dicom_id)
    bleu4 = corpus_bleu(
        [[tokenize(r)] for r in refs[valid]],
        [tokenize(h) for h in hyps[valid]],
        smoothing_function=SmoothingFunction().method1,
    )
    assert metrics["text_similarity"]["k"] == 2  # the summary k only
    text = metrics["text_similarity"]["methods"]["model"]
    assert text["bleu4"]["value"] == pytest.approx(bleu4)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge = np.mean(
        [scorer.score(r, h)["rougeL"].fmeasure for r, h in zip(refs[valid], hyps[valid], strict=True)]
    )
    assert text["rouge_l"]["value"] == pytest.approx(rouge)
    assert text["bertscore_f1"]["value"] is None and "absent" in text["bertscore_f1"]

    # report level: the nearest bank impression by cosine, its study's labels, the hit metrics by hand
    with h5py.File(root / "emb" / "bank.h5") as f:
        r_emb, r_study = f["report_embeddings"][()], f["report_study_id"][()]
        assert f.attrs["report_section"] == "impression"
    split = pd.read_parquet(paths["split"])
    bank_studies = set(split.loc[split["split"].isin(["train", "validate"]), "study_id"])
    bank_texts = sections.loc[sorted(bank_studies), "impression"]
    assert len(r_study) == bank_texts[bank_texts.str.strip() != ""].nunique()
    sims = (q.embeddings / np.linalg.norm(q.embeddings, axis=1, keepdims=True)) @ (
        r_emb / np.linalg.norm(r_emb, axis=1, keepdims=True)
    ).T
    top = r_study[sims.argmax(axis=1)]
    study_labels = pd.read_parquet(paths["report_labels"]).set_index("study_id")[OBSERVATIONS]
    ql, rl = study_labels.loc[q.study_id].to_numpy(float), study_labels.loc[top].to_numpy(float)
    hits = ((ql == rl) & ~np.isnan(ql)).sum(axis=1)
    level = metrics["report_retrieval"]["methods"]["model"]["1"]
    assert level["flat_hit"]["value"] == pytest.approx((hits > 0).mean())
    kept = (~np.isnan(ql)).any(axis=1) & (~np.isnan(rl)).any(axis=1)
    recall = (hits / np.maximum((~np.isnan(ql)).sum(axis=1), 1))[kept].mean()
    assert level["recall"]["value"] == pytest.approx(recall)
    retrieved = sections.loc[top, "impression"].to_numpy()
    rouge = np.mean(
        [scorer.score(r, h)["rougeL"].fmeasure for r, h in zip(refs[valid], retrieved[valid], strict=True)]
    )
    assert level["rouge_l"]["value"] == pytest.approx(rouge)
    oracle = metrics["report_retrieval"]["methods"]["oracle"]
    assert set(oracle) == {"1"} and level["flat_hit"]["value"] <= oracle["1"]["flat_hit"]["value"]


def _sensitivity_row(metrics: dict, truth: str, retrieved: str, uncertain: str, averaging: str) -> dict:
    rows = [
        r
        for r in metrics["label_sensitivity"]["rows"]
        if (r["truth"], r["retrieved"], r["uncertain"], r["averaging"])
        == (truth, retrieved, uncertain, averaging)
    ]
    assert len(rows) == 1, (truth, retrieved, uncertain, averaging)
    return rows[0]


@pytest.mark.parametrize("query_labels", ["report", "sentence_max"])
def test_sensitivity_rows_agree_with_the_single_labeller_metrics(embedded, tmp_path, query_labels):
    from sklearn.metrics import f1_score

    from txtrayalign.evaluate.labels import aggregate_sentence_labels, sentence_max_labels

    paths, root = embedded
    out = tmp_path / "eval" / "exp1"
    assert main(evaluate_args(paths, root / "emb", out, query_labels=query_labels)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    own = "chexpert" if query_labels == "report" else "chexpert-sentence-max"
    at2 = metrics["methods"]["model"]["k"]["2"]
    for averaging, name in (("micro", "micro_f1_all"), ("macro", "macro_f1_all")):
        row = _sensitivity_row(metrics, own, "chexpert", "negative", averaging)
        assert row["value"] == pytest.approx(at2[name]["value"]) and not row["absent"]
        assert row["ci_low"] == pytest.approx(at2[name]["ci_low"])
        assert row["ci_high"] == pytest.approx(at2[name]["ci_high"])
    # uncertain as positive, both truth rules, against scikit-learn on the labels written out again
    pred = _top(pd.read_parquet(out / "predictions.parquet"), 2)
    q = read_queries(root / "emb" / "queries.h5")
    retrieved = np.stack(
        [
            aggregate_sentence_labels(g[OBSERVATIONS].to_numpy(np.float32)[None])[0]
            for _, g in pred.set_index("dicom_id").loc[list(q.dicom_id)].groupby(level=0, sort=False)
        ]
    )
    truths = {
        "chexpert": pd.read_parquet(paths["report_labels"]),
        "chexpert-sentence-max": sentence_max_labels(
            pd.read_parquet(paths["sentence_labels"]), pd.read_parquet(paths["sentences"])
        ),
    }
    for name, table in truths.items():
        truth = table.set_index("study_id").reindex(q.study_id)[OBSERVATIONS].to_numpy(float)
        t, p = np.isin(truth, (1, -1)), np.isin(retrieved, (1, -1))
        for averaging in ("micro", "macro"):
            expected = f1_score(t, p, average=averaging, zero_division=0)
            assert _sensitivity_row(metrics, name, "chexpert", "positive", averaging)[
                "value"
            ] == pytest.approx(expected), (name, averaging)
    for truth in ("chexbert", "official"):
        row = _sensitivity_row(
            metrics, truth, "chexpert" if truth == "official" else "chexbert", "negative", "micro"
        )
        assert row["value"] is None and row["absent"]
    assert "checkpoint" in _sensitivity_row(metrics, "chexbert", "chexbert", "positive", "micro")["absent"]


def test_official_labels_and_chexbert_fill_their_rows(embedded, tmp_path):
    from test_chexbert import save_like_chexbert, tiny_model, write_tokenizer

    from txtrayalign import chexbert
    from txtrayalign.evaluate.label_sensitivity import f1_arrays, f1_statistic, positives

    paths, root = embedded
    tok = write_tokenizer(tmp_path / "tok")
    checkpoint = save_like_chexbert(
        tiny_model(len(chexbert.load_tokenizer(tok)), seed=3), tmp_path / "chexbert.pth"
    )
    official = pd.read_parquet(paths["report_labels"]).copy()
    official[OBSERVATIONS] = np.where(official[OBSERVATIONS].isna(), 0.0, official[OBSERVATIONS])
    official.to_parquet(tmp_path / "official.parquet")
    out = tmp_path / "eval" / "exp1"
    labels = {"chexbert": {"checkpoint": str(checkpoint), "tokenizer": str(tok), "device": "cpu"}}
    extra = ["--official-labels", str(tmp_path / "official.parquet")]
    assert main(evaluate_args(paths, root / "emb", out, *extra, bootstrap=0, labels=labels)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert not any(r["absent"] for r in metrics["label_sensitivity"]["rows"])
    q = read_queries(root / "emb" / "queries.h5")
    pred = _top(pd.read_parquet(out / "predictions.parquet"), 2)
    texts = _by_query(pred.groupby("dicom_id", sort=False)["text"].agg(" ".join), q.dicom_id)
    labeller = chexbert.CheXbertLabeller.load(checkpoint, tokenizer=tok, device="cpu")
    retrieved = labeller.label_texts(list(texts))
    truth = labeller.label_texts(
        list(pd.read_parquet(paths["sections"]).set_index("study_id").loc[q.study_id, "label_text"])
    )
    for uncertain in ("positive", "negative"):
        expected = f1_statistic(
            {
                k: v.sum(axis=0)[None]
                for k, v in f1_arrays(positives(truth, uncertain), positives(retrieved, uncertain)).items()
            }
        )
        for averaging in ("micro", "macro", "example"):
            got = _sensitivity_row(metrics, "chexbert", "chexbert", uncertain, averaging)["value"]
            assert got == pytest.approx(float(expected[averaging][0])), (uncertain, averaging)
    # the official table is ours with blanks made negative: positives unchanged, so every row equals ours
    for uncertain in ("positive", "negative"):
        for averaging in ("micro", "macro", "example"):
            ours = _sensitivity_row(metrics, "chexpert", "chexpert", uncertain, averaging)["value"]
            got = _sensitivity_row(metrics, "official", "chexpert", uncertain, averaging)["value"]
            assert got == pytest.approx(ours), (uncertain, averaging)


def test_summary_shows_every_protocol_section(evaluated, tmp_path):
    paths, root, out, metrics = evaluated
    csv, md = tmp_path / "summary.csv", tmp_path / "summary.md"
    assert (
        main(
            [
                "summarize",
                "--metrics",
                str(out / "metrics.json"),
                "--k",
                "2",
                "--out-csv",
                str(csv),
                "--out-md",
                str(md),
            ]
        )
        == 0
    )
    text = md.read_text()
    for heading in (
        "## Zero-shot classification",
        "## Text similarity at k=2",
        "## Report-level retrieval",
        "## Labeller sensitivity",
    ):
        assert heading in text, heading
    mean = metrics["zeroshot"]["mean"]
    assert f"| **mean (14)** | {mean['value']:.3f} [{mean['ci_low']:.3f}, {mean['ci_high']:.3f}] |" in text
    bleu4 = metrics["text_similarity"]["methods"]["model"]["bleu4"]
    assert (
        "| model | " in text
        and f"{bleu4['value']:.3f} [{bleu4['ci_low']:.3f}, {bleu4['ci_high']:.3f}]" in text
    )
    assert "| chexbert | chexbert | positive | absent | absent | absent |" in text
    row = _sensitivity_row(metrics, "chexpert", "chexpert", "negative", "micro")
    assert f"| chexpert | chexpert | negative | {row['value']:.3f} [" in text
    level = metrics["report_retrieval"]["methods"]["model"]["1"]
    assert f"| exp1 | model | 1 | {level['flat_hit']['value']:.3f} [" in text
    table = pd.read_csv(csv).set_index("method")
    assert table.loc["model", "zeroshot_mean_auroc"] == pytest.approx(mean["value"], abs=1e-6)
    assert np.isnan(table.loc["random", "zeroshot_mean_auroc"])
    for method in ("model", "random", "oracle"):
        expected = metrics["text_similarity"]["methods"][method]["rouge_l"]["value"]
        assert table.loc[method, "rouge_l"] == pytest.approx(expected, abs=1e-6)


def test_rule_options_from_the_config_reach_the_commands(tmp_path):
    """The arguments the rules build from the config parse, and land on the settings they name."""
    import argparse
    import shlex

    from txtrayalign.evaluate.cli import configure_evaluate, read_settings
    from txtrayalign.evaluate.embed_cli import configure as configure_embed
    from txtrayalign.rule_args import (
        embed_options,
        evaluation_settings,
        headline_settings,
        label_options,
        official_labels_option,
    )
    from txtrayalign.settings import resolve_experiment, with_defaults

    def parse(configure, options: str, required: list[str]) -> argparse.Namespace:
        parser = argparse.ArgumentParser()
        configure(parser)
        return parser.parse_args([*required, *shlex.split(options)])

    emb_required = [
        f"--{a}=x"
        for a in ("model-dir", "images-index", "split", "sentences", "sections", "out-queries", "out-bank")
    ]
    ev_required = [
        f"--{a}=x" for a in ("queries", "bank", "report-labels", "sentence-labels", "sentences", "out-dir")
    ]
    config = with_defaults({})
    evaluation = resolve_experiment({})["evaluation"]
    args = parse(configure_embed, embed_options(evaluation), emb_required)
    assert json.loads(args.prompts) == {} and args.report_section == evaluation["report_retrieval"]["section"]
    text = evaluation_settings(evaluation, config["labels"], config["summary"])
    args = parse(configure_evaluate, f"--settings {shlex.quote(text)}", ev_required)
    assert read_settings(args.settings) == {"evaluation": evaluation, "labels": config["labels"],
                                            "summary": config["summary"]}
    assert "bank" not in json.loads(text)["evaluation"]  # chooses inputs only: no rerun of its own
    headline = read_settings(headline_settings(evaluation, config["labels"], config["summary"]))["evaluation"]
    assert headline["gallery"] == 0 and headline["k"] == evaluation["k"]
    assert not any(headline[key]["enabled"] for key in ("zeroshot", "report_retrieval", "text_metrics", "sensitivity"))

    changed = resolve_experiment({"evaluation": {
        "zeroshot": {"prompts": {"Edema": ["edema's there", "no edema"]}, "uncertain": "positive"},
        "report_retrieval": {"enabled": False},
        "text_metrics": {"reference_section": "findings", "bertscore_model": "/m/roberta large"},
        "sensitivity": {"enabled": False},
    }})["evaluation"]
    args = parse(configure_embed, embed_options(changed), emb_required)
    assert json.loads(args.prompts) == {"Edema": ["edema's there", "no edema"]} and args.report_section == "none"
    labels = {**config["labels"], "source": "official", "chexbert": {**config["labels"]["chexbert"],
                                                                     "checkpoint": "/c/chexbert.pth"}}
    args = parse(configure_evaluate, f"--settings {shlex.quote(evaluation_settings(changed, labels, {'k': 5}))}",
                 ev_required)
    settings = read_settings(args.settings)  # the schema's defaults fill in what a caller leaves out
    assert settings["evaluation"]["text_metrics"]["bertscore_model"] == "/m/roberta large"
    assert settings["labels"]["chexbert"]["checkpoint"] == "/c/chexbert.pth" and settings["summary"]["k"] == 5
    assert read_settings('{"evaluation": {"k": [3]}}')["evaluation"]["bootstrap"] == evaluation["bootstrap"]

    root = tmp_path / "mimic"
    root.mkdir()
    (root / "mimic-cxr-2.0.0-chexpert.csv.gz").write_bytes(b"")
    args = parse(configure_evaluate, official_labels_option({"format": "auto"}, root), ev_required)
    assert args.official_labels == str(root / "mimic-cxr-2.0.0-chexpert.csv.gz")
    assert official_labels_option({"format": "table"}, root) == ""
    assert label_options(config["labels"]) == "--labeller chexpert"


def test_bad_settings_fail_with_one_line(embedded, tmp_path, capsys):
    paths, root = embedded
    for settings, expect in (('{"evaluation": {"k": [0]}}', "evaluation.k.0"),
                             ('{"evaluation": {"kk": 1}}', "unknown key 'evaluation.kk'"),
                             ("[1]", "expected a JSON object"), ("{nope", "not valid JSON"),
                             ('{"evaluation": {"k": [1, 5]}}', "summary k=2 is not one of the evaluated k")):
        args = evaluate_args(paths, root / "emb", tmp_path / "out")
        args[args.index("--settings") + 1] = settings
        assert main(args) == 2, settings
        assert expect in capsys.readouterr().err, settings
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_label_stage_chexbert_labels_become_the_chexbert_rows(embedded, tmp_path):
    """With the label stage's labels from CheXbert, the evaluation's own figure is the chexbert row."""
    paths, root = embedded
    out = tmp_path / "eval" / "exp1"
    labels = {"labeller": "chexbert"}
    assert main(evaluate_args(paths, root / "emb", out, labels=labels)) == 0  # --report-labeller sentence-labels
    metrics = json.loads((out / "metrics.json").read_text())
    own = metrics["methods"]["model"]["k"]["2"]
    for averaging, name in (("micro", "micro_f1_all"), ("macro", "macro_f1_all")):
        row = _sensitivity_row(metrics, "chexbert", "chexbert", "negative", averaging)
        assert not row["absent"] and row["value"] == pytest.approx(own[name]["value"])
    assert (
        _sensitivity_row(metrics, "chexbert-sentence-max", "chexbert", "positive", "micro")["value"]
        is not None
    )
    assert (
        "holds chexbert labels"
        in _sensitivity_row(metrics, "chexpert", "chexpert", "negative", "micro")["absent"]
    )


def test_label_stage_and_evaluation_with_chexbert_end_to_end(embedded, tmp_path, capsys, monkeypatch):
    """`txtrayalign label --labeller chexbert` with a tiny CheXbert-layout checkpoint, then the evaluation."""
    from test_chexbert import save_like_chexbert, tiny_model, write_tokenizer

    from txtrayalign import chexbert
    from txtrayalign.rule_args import label_options
    from txtrayalign.settings import with_defaults

    paths, root = embedded
    tok = write_tokenizer(tmp_path / "tok")
    checkpoint = save_like_chexbert(
        tiny_model(len(chexbert.load_tokenizer(tok)), seed=5), tmp_path / "chexbert.pth"
    )
    labels = {
        "labeller": "chexbert",
        "chexbert": {"checkpoint": str(checkpoint), "tokenizer": str(tok), "device": "cpu", "batch_size": 4},
    }
    labels = with_defaults({"labels": labels})["labels"]
    out_r, out_s = tmp_path / "labels" / "reports.parquet", tmp_path / "labels" / "sentences.parquet"
    args = [
        "label",
        "--sections",
        str(paths["sections"]),
        "--sentences",
        str(paths["sentences"]),
        *shlex.split(label_options(labels)),
        "--out-reports",
        str(out_r),
        "--out-sentences",
        str(out_s),
    ]
    assert main(args) == 0
    model = chexbert.CheXbertLabeller.load(checkpoint, tokenizer=tok, device="cpu")
    sections = pd.read_parquet(paths["sections"])
    np.testing.assert_array_equal(
        pd.read_parquet(out_r)[OBSERVATIONS].to_numpy(), model.label_texts(list(sections["label_text"]))
    )
    sentences = pd.read_parquet(paths["sentences"])
    np.testing.assert_array_equal(
        pd.read_parquet(out_s)[OBSERVATIONS].to_numpy(), model.label_texts(list(sentences["sentence"]))
    )
    eval_paths = {**paths, "report_labels": out_r, "sentence_labels": out_s}
    out = tmp_path / "eval" / "exp1"
    assert main(evaluate_args(eval_paths, root / "emb", out, bootstrap=0, labels={"labeller": "chexbert"})) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    row = _sensitivity_row(metrics, "chexbert", "chexbert", "negative", "micro")
    assert row["value"] == pytest.approx(metrics["methods"]["model"]["k"]["2"]["micro_f1_all"]["value"])

    monkeypatch.delenv("CHEXBERT_CHECKPOINT", raising=False)
    capsys.readouterr()
    missing = [a if a != str(checkpoint) else str(tmp_path / "absent.pth") for a in args]
    assert main(missing) == 2
    err = capsys.readouterr().err
    assert "absent.pth" in err and "CHEXBERT_CHECKPOINT" in err


def test_gallery_shows_each_query_its_own_report_when_the_bank_is_another_datasets(embedded, tmp_path):
    """`evaluation.bank: source`: the bank's sentences come from the training dataset, where the query
    study ids may belong to other studies; the gallery still shows the query dataset's own report."""
    import html

    paths, root = embedded
    sentences = pd.read_parquet(paths["sentences"])
    sections = pd.read_parquet(paths["sections"]).set_index("study_id")
    queries = read_queries(root / "emb" / "queries.h5")
    # the source dataset: the same bank sentences, but its studies with the query ids say something else
    colliding = sentences["study_id"].isin(set(queries.study_id))
    sentences.loc[colliding, "sentence"] = "Another dataset's study with a colliding id."
    source = tmp_path / "source_sentences.parquet"
    sentences.to_parquet(source)
    out = tmp_path / "eval" / "exp1"
    args = evaluate_args({**paths, "sentences": source}, root / "emb", out, gallery=5)
    args += ["--bank-sections", str(paths["sections"]), "--bank-report-labels", str(paths["report_labels"])]
    assert main(args) == 0
    page = (out / "gallery.html").read_text()
    shown = re.findall(r"\(study (\d+)\)</h3><div class=\"report\"><b>Report:</b> (.*?)</div>", page)
    assert len(shown) == 5
    for study_id, text in shown:
        assert html.unescape(text) == sections.loc[int(study_id), "train_text"]
    assert "colliding id" not in page and "(no report text)" not in page


def test_validation_queries_are_a_second_query_set_with_their_own_labels(embedded):
    from txtrayalign.rule_args import needs_validation_queries
    from txtrayalign.settings import resolve_experiment

    paths, root = embedded
    settings = resolve_settings({"evaluation": {"k": [1, 2]}})
    queries = root / "emb" / "queries.h5"
    base = input_paths(paths, queries, root / "emb" / "bank.h5")
    assert load_inputs(base, settings["evaluation"], settings["labels"]).validation_queries is None
    inputs = load_inputs({**base, "validation_queries": str(queries)}, settings["evaluation"], settings["labels"])
    validation = inputs.validation_queries
    assert validation is not None and validation is not inputs.queries
    np.testing.assert_array_equal(validation.dicom_id, inputs.queries.dicom_id)
    expected = pd.read_parquet(paths["report_labels"]).set_index("study_id").loc[validation.study_id, OBSERVATIONS]
    np.testing.assert_array_equal(validation.labels, expected.to_numpy(np.float32))
    assert needs_validation_queries(resolve_experiment({}))  # the subgroups protocol's thresholds
    assert not needs_validation_queries(resolve_experiment({"evaluation": {"subgroups": {"enabled": False}}}))
