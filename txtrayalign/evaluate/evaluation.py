"""Evaluate one experiment: load and check inputs, retrieve, score the model and the baselines.

`load_inputs` reads the embeddings and tables and raises `EvaluationInputError` (naming the files)
when they do not fit together; `evaluate` computes everything in memory and `write_outputs` writes
metrics.json and predictions.parquet atomically. Output depends only on the inputs and the seed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from txtrayalign.constants import OBSERVATIONS
from txtrayalign.utils import atomic_path, write_parquet_atomic

from . import EvaluationInputError
from .baselines import most_frequent, oracle_retrieval, random_ranks, random_retrieval
from .bootstrap import point_and_interval_many, resample_counts
from .embed import read_bank, read_queries, read_table
from .label_sensitivity import sensitivity_table
from .metrics import (
    exact_pair_arrays,
    exact_pair_statistic,
    f1_by_observation,
    hit_arrays,
    hit_matrix,
    hit_statistic,
    report_generation_arrays,
    report_generation_statistic,
)
from .report_retrieval import joined_sentences, reference_texts, retrieve_reports, retrieved_texts
from .retrieval import rank_of_targets, topk_similarity
from .textmetrics import TextCache, bleu_arrays, bleu_statistic, text_metrics
from .zeroshot import zeroshot_evaluation

log = logging.getLogger(__name__)

METHODS = ("model", "random", "most_frequent", "oracle")
# How a query study gets its labels: the CheXpert labeller on the whole report (labels/reports.parquet),
# or, as the original research code did, the per-observation maximum over the study's sentence labels.
QUERY_LABELS = ("report", "sentence_max")
# Each random draw gets its own stream, (seed, stream id), so that e.g. the bootstrap resamples are
# not correlated with the random baseline's draws although both come from the one --seed.
STREAMS = {"sample": 1, "random": 2, "bootstrap": 3, "random_ranks": 4, "random_reports": 5}


def stream_seed(seed: int, stream: str) -> list[int]:
    """The entropy of one independent random stream derived from the user's seed."""
    return [int(seed), STREAMS[stream]]


Labeller = Callable[[list[str]], np.ndarray]


@dataclass
class EvalInputs:
    """Everything aligned by row: query i has labels query_labels[i]; bank row j has bank_labels[j]."""

    dicom_id: np.ndarray
    study_id: np.ndarray
    view: np.ndarray
    query_embeddings: np.ndarray
    query_labels: np.ndarray
    report_embeddings: np.ndarray
    report_study_id: np.ndarray
    bank_embeddings: np.ndarray
    sentence_id: np.ndarray
    bank_labels: np.ndarray
    bank_text: np.ndarray
    text_count: np.ndarray
    paths: dict[str, str] = field(default_factory=dict)
    experiment: str = ""
    query_labels_from: str = "report"  # one of QUERY_LABELS
    query_reports: np.ndarray | None = None  # each query's report text (BLEU reference); None: no BLEU
    # zero-shot: (14, 2, D) prompt embeddings from bank.h5 and their prompts; None: not embedded
    prompt_embeddings: np.ndarray | None = None
    prompts: dict | None = None
    # report-level retrieval: the report bank of bank.h5 with each report's text and its study's labels
    report_bank_embeddings: np.ndarray | None = None
    report_bank_study_id: np.ndarray | None = None
    report_bank_text: np.ndarray | None = None
    report_bank_labels: np.ndarray | None = None
    report_bank_text_count: np.ndarray | None = None
    report_section: str | None = None
    # text metrics: each query's reference section text ("" where it has none) and the mask of those with one
    reference_texts: np.ndarray | None = None
    reference_valid: np.ndarray | None = None
    reference_section: str | None = None
    # labeller sensitivity: truth labels of the query studies by labeller name, or why they are absent
    truth_labels: dict[str, np.ndarray | str] = field(default_factory=dict)
    query_label_texts: np.ndarray | None = None  # each query's label_text (what a text labeller reads)
    sentence_labels_from: str = "chexpert"  # the labeller of the sentence labels (TEXT_LABELLERS)


def _labels_by_id(
    df: pd.DataFrame, key: str, ids: np.ndarray, path: str, what: str, ids_path: str
) -> np.ndarray:
    table = df.drop_duplicates(key).set_index(key)
    missing = pd.Index(ids).difference(table.index)
    if len(missing):
        raise EvaluationInputError(
            f"{len(missing)} {what} of {ids_path} are absent from {path} (first: {list(missing[:5])}): "
            "embeddings and labels come from different runs?"
        )
    return table.loc[ids, OBSERVATIONS].to_numpy(np.float32)


def sentence_max_labels(sentence_labels: pd.DataFrame, sentences: pd.DataFrame) -> pd.DataFrame:
    """Study labels as the original research code built them: per study and observation, the maximum
    of the values (1 > 0 > -1) of the study's sentences, blanks ignored (all blank: blank).

    Unlike CheXpert's report rule, a study with one negative and one uncertain sentence gets 0, not -1.
    The sentences are those of `sentences` (text/sentences.parquet: the training section's sentences);
    a study without any is absent from the result. Returns a table with `study_id` and the 14 columns.
    """
    labels = sentence_labels.drop_duplicates("sentence_id").drop(columns="study_id", errors="ignore")
    joined = (
        sentences[["sentence_id", "study_id"]]
        .drop_duplicates("sentence_id")
        .merge(labels[["sentence_id", *OBSERVATIONS]], on="sentence_id", how="inner")
    )
    return joined.groupby("study_id", sort=True)[list(OBSERVATIONS)].max().reset_index()


def _query_label_rows(table: pd.DataFrame, study_id: np.ndarray) -> np.ndarray:
    """(N, 14) labels of each query study from a study table; studies absent from it are all blank."""
    return (
        table.drop_duplicates("study_id")
        .set_index("study_id")
        .reindex(study_id)[list(OBSERVATIONS)]
        .to_numpy(np.float32)
    )


def load_inputs(
    queries_path: str | Path,
    bank_path: str | Path,
    report_labels_path: str | Path,
    sentence_labels_path: str | Path,
    sentences_path: str | Path,
    max_k: int,
    sample: int | None = None,
    seed: int = 0,
    experiment: str | None = None,
    query_labels: str = "report",
    sections_path: str | Path | None = None,
    reference_section: str | None = None,
    official_labels_path: str | Path | None = None,
    report_labels_name: str = "chexpert",
    sentence_labels_name: str = "chexpert",
    bank_sections_path: str | Path | None = None,
    bank_report_labels_path: str | Path | None = None,
) -> EvalInputs:
    """Read and cross-check the evaluation inputs; `sample` keeps that many queries (seeded).

    The report bank's texts and labels come from `bank_sections_path` / `bank_report_labels_path`
    when the bank is another dataset's (cross-dataset `evaluation.bank: source`), else from the
    query dataset's `sections_path` / `report_labels_path`.

    `query_labels` picks the query studies' labels (`QUERY_LABELS`): "report" reads them from
    `report_labels_path`, "sentence_max" aggregates `sentence_labels_path` (`sentence_max_labels`;
    a query study without sentences then has no labels and the metrics skip it). `sections_path`
    (text/sections.parquet) gives each query's report text (`train_text`) for BLEU; None: no BLEU.

    Also read, for the wider evaluation: the prompt embeddings and the report bank of `bank_path` when
    the embed stage wrote them (report texts from `sections_path`, each report's labels its study's row
    of `report_labels_path`, blank when absent); `reference_section`, the column of `sections_path`
    the text metrics compare against; the truth labels of the labeller-sensitivity table:
    `report_labels_name` (what `report_labels_path` holds: "chexpert" or "chexbert", the label stage's
    labeller, or "official" when it took the dataset's table), `<sentence_labels_name>-sentence-max`
    (`sentence_max_labels` of the sentence labels, labelled by `sentence_labels_name`) and `official`
    from `official_labels_path` (parquet or the official CSV; None: absent).
    """
    if query_labels not in QUERY_LABELS:
        raise EvaluationInputError(f"query labels must be one of {list(QUERY_LABELS)}, got {query_labels!r}")
    qs = read_queries(queries_path)
    bank = read_bank(bank_path)
    if qs.embeddings.shape[0] == 0:
        raise EvaluationInputError(f"empty query set: {queries_path} holds no query embeddings")
    if bank.embeddings.shape[0] == 0:
        raise EvaluationInputError(f"empty sentence bank: {bank_path} holds no sentence embeddings")
    if qs.embeddings.shape[1] != bank.embeddings.shape[1]:
        raise EvaluationInputError(
            f"embedding widths differ: {queries_path} has {qs.embeddings.shape[1]}, {bank_path} has {bank.embeddings.shape[1]}"
        )
    for path, emb in ((queries_path, qs.embeddings), (bank_path, bank.embeddings)):
        if not np.isfinite(emb).all():
            raise EvaluationInputError(
                f"{path}: embeddings contain NaN or infinite values (a diverged model?)"
            )
    m = bank.embeddings.shape[0]
    if max_k > m:
        raise EvaluationInputError(
            f"k={max_k} is larger than the sentence bank of {bank_path} ({m} sentences)"
        )
    if len(np.unique(bank.sentence_id)) != m:
        raise EvaluationInputError(f"{bank_path}: sentence_id values are not unique")

    rows = np.arange(qs.embeddings.shape[0])
    if sample is not None and sample < rows.size:
        rng = np.random.default_rng(stream_seed(seed, "sample"))
        rows = np.sort(rng.choice(rows.size, size=sample, replace=False))
        log.info("sampled %d of %d queries (seed %d)", rows.size, qs.embeddings.shape[0], seed)

    report_labels = read_table(report_labels_path, ["study_id", *OBSERVATIONS])
    sentence_labels = read_table(sentence_labels_path, ["sentence_id", *OBSERVATIONS])
    sentences = read_table(
        sentences_path, ["sentence_id", "sentence", *(["study_id"] if query_labels == "sentence_max" else [])]
    )
    study_id = qs.study_id[rows]
    sent_max: np.ndarray | str = (
        _query_label_rows(sentence_max_labels(sentence_labels, sentences), study_id)
        if "study_id" in sentences.columns
        else f"{sentences_path} has no study_id column"
    )
    if query_labels == "sentence_max":
        q_labels = sent_max
        report_truth = _query_label_rows(report_labels, study_id)
    else:
        q_labels = report_truth = _labels_by_id(
            report_labels, "study_id", study_id, str(report_labels_path), "query study ids", str(queries_path)
        )
    if report_labels_name not in REPORT_LABELLERS or sentence_labels_name not in TEXT_LABELLERS:
        raise EvaluationInputError(
            f"report labels from one of {list(REPORT_LABELLERS)} and sentence labels from one of "
            f"{list(TEXT_LABELLERS)}, got {report_labels_name!r} and {sentence_labels_name!r}"
        )
    truth: dict[str, np.ndarray | str] = {
        report_labels_name: report_truth,
        f"{sentence_labels_name}-sentence-max": sent_max,
    }
    if report_labels_name != "chexpert":
        truth["chexpert"] = f"{report_labels_path} holds {report_labels_name} labels (labels of the label stage)"
    if "official" not in truth:
        truth["official"] = (
            _query_label_rows(read_official_labels(official_labels_path), study_id)
            if official_labels_path
            else "no official label table (the dataset's own labels) given"
        )
    truth = {name: truth[name] for name in sorted(truth, key=_truth_order)}
    query_reports = sections = None
    reference = reference_valid = label_texts = None
    if sections_path is not None:
        sections = read_table(sections_path, ["study_id", "train_text"])
        texts = sections.drop_duplicates("study_id").set_index("study_id")["train_text"]
        missing = pd.Index(study_id).difference(texts.index)
        if len(missing):
            raise EvaluationInputError(
                f"{len(missing)} query study ids of {queries_path} are absent from {sections_path} "
                f"(first: {list(missing[:5])})"
            )
        query_reports = texts.loc[study_id].fillna("").astype(str).to_numpy(dtype=object)
        if reference_section:
            ref, reference_valid = reference_texts(sections, study_id, reference_section, str(sections_path))
            reference = np.asarray(ref, dtype=object)
        if "label_text" in sections.columns:
            by_study = sections.drop_duplicates("study_id").set_index("study_id")["label_text"]
            label_texts = by_study.loc[study_id].fillna("").astype(str).to_numpy(dtype=object)
    rb: dict = {}
    bank_sections, bank_report_labels = sections, report_labels
    if bank_sections_path is not None and sections is not None:
        bank_sections = read_table(bank_sections_path, ["study_id"])
    else:
        bank_sections_path = sections_path
    if bank_report_labels_path is not None:
        bank_report_labels = read_table(bank_report_labels_path, ["study_id", *OBSERVATIONS])
    if bank.report_embeddings is not None and bank_sections is not None:
        section = bank.report_section or "impression"
        column = bank_sections.drop_duplicates("study_id").set_index("study_id")
        if section not in column.columns:
            raise EvaluationInputError(
                f"{bank_path}: report bank of section {section!r} but {bank_sections_path} has no such column")
        missing = pd.Index(bank.report_study_id).difference(column.index)
        if len(missing):
            raise EvaluationInputError(
                f"{len(missing)} report bank study ids of {bank_path} are absent from {bank_sections_path} "
                f"(first: {list(missing[:5])}): embeddings and sections come from different runs?"
            )
        rb = {
            "report_bank_embeddings": bank.report_embeddings,
            "report_bank_study_id": bank.report_study_id,
            "report_bank_text": column.loc[bank.report_study_id, section].fillna("").astype(str).to_numpy(object),
            "report_bank_labels": _query_label_rows(bank_report_labels, bank.report_study_id),
            "report_bank_text_count": bank.report_text_count
            if bank.report_text_count is not None
            else np.ones(bank.report_study_id.shape[0], np.int64),
            "report_section": section,
        }
    elif bank.report_embeddings is not None:
        log.warning("%s holds a report bank but no sections table was given: report-level retrieval skipped", bank_path)
    b_labels = _labels_by_id(
        sentence_labels,
        "sentence_id",
        bank.sentence_id,
        str(sentence_labels_path),
        "bank sentence ids",
        str(bank_path),
    )
    text_table = sentences.drop_duplicates("sentence_id").set_index("sentence_id")["sentence"]
    missing = pd.Index(bank.sentence_id).difference(text_table.index)
    if len(missing):
        raise EvaluationInputError(
            f"{len(missing)} bank sentence ids of {bank_path} are absent from {sentences_path} (first: {list(missing[:5])})"
        )
    bank_text = text_table.loc[bank.sentence_id].astype(str).to_numpy(dtype=object)
    if bank.text_count is not None:
        text_count = bank.text_count
    else:
        text_count = pd.Series(bank_text).map(pd.Series(bank_text).value_counts()).to_numpy(np.int64)
    name = experiment or str(qs.attrs.get("experiment") or Path(queries_path).parent.name)
    return EvalInputs(
        dicom_id=qs.dicom_id[rows],
        study_id=study_id,
        view=qs.view[rows],
        query_embeddings=qs.embeddings[rows],
        query_labels=q_labels,
        report_embeddings=qs.report_embeddings,
        report_study_id=qs.report_study_id,
        bank_embeddings=bank.embeddings,
        sentence_id=bank.sentence_id,
        bank_labels=b_labels,
        bank_text=bank_text,
        text_count=text_count,
        paths={
            "queries": str(queries_path),
            "bank": str(bank_path),
            "report_labels": str(report_labels_path),
            "sentence_labels": str(sentence_labels_path),
            "sentences": str(sentences_path),
            **({"sections": str(sections_path)} if sections_path is not None else {}),
        },
        experiment=name,
        query_labels_from=query_labels,
        query_reports=query_reports,
        prompt_embeddings=bank.prompt_embeddings,
        prompts=bank.prompts,
        reference_texts=reference,
        reference_valid=reference_valid,
        reference_section=reference_section if reference is not None else None,
        truth_labels=truth,
        query_label_texts=label_texts,
        sentence_labels_from=sentence_labels_name,
        **rb,
    )


REPORT_LABELLERS = ("chexpert", "chexbert", "official")
TEXT_LABELLERS = ("chexpert", "chexbert")
TRUTH_ORDER = ("chexpert", "chexpert-sentence-max", "chexbert", "chexbert-sentence-max", "official")


def _truth_order(name: str) -> int:
    return TRUTH_ORDER.index(name) if name in TRUTH_ORDER else len(TRUTH_ORDER)


def read_official_labels(path: str | Path) -> pd.DataFrame:
    """A study label table (study_id + the 14 observations): parquet, or a CSV as the dataset ships it."""
    p = Path(path)
    if not p.is_file():
        raise EvaluationInputError(f"official label table not found: {p}")
    if p.suffix == ".parquet":
        return read_table(p, ["study_id", *OBSERVATIONS])
    from txtrayalign.chexpert.cli import read_official

    try:
        return read_official(str(p))
    except ValueError as exc:
        raise EvaluationInputError(str(exc)) from exc


def aggregate_sentence_labels(retrieved_labels: np.ndarray) -> np.ndarray:
    """Label a concatenation of sentences from the sentences' own labels (no text pass).

    Per observation: 1 if any sentence is 1, else -1 if any is -1, else 0 if any is 0, else NaN
    (the CheXpert labeller's mention aggregation); "No Finding" is dropped (NaN) when any other
    observation except Support Devices is 1 or -1. An approximation of labelling the joined text.
    """
    r = np.asarray(retrieved_labels, dtype=np.float32)
    out = np.full((r.shape[0], r.shape[2]), np.nan, dtype=np.float32)
    for value in (0.0, -1.0, 1.0):  # later assignments take precedence
        out[(r == value).any(axis=1)] = value
    nf, sd = OBSERVATIONS.index("No Finding"), OBSERVATIONS.index("Support Devices")
    others = [i for i in range(len(OBSERVATIONS)) if i not in (nf, sd)]
    finding = np.isin(out[:, others], (1.0, -1.0)).any(axis=1)
    out[finding, nf] = np.nan
    return out


def default_labeller() -> Labeller:
    """The project's CheXpert labeller (`txtrayalign.chexpert.label_texts` or `label_reports`)."""
    import txtrayalign.chexpert as chexpert

    fn = getattr(chexpert, "label_texts", None) or getattr(chexpert, "label_reports", None)
    if fn is None:
        raise EvaluationInputError("txtrayalign.chexpert has neither label_texts nor label_reports")
    return fn


def labels_by_text(texts: Sequence[str], labeller: Labeller) -> dict[str, np.ndarray]:
    """Label each distinct text once with any labeller callable (ours, CheXbert); returns text -> (14,) labels.

    Not `txtrayalign.chexpert.label_unique` (ours only, in worker processes, an array in input order)."""
    unique = sorted(set(texts))
    if not unique:
        return {}
    labels = np.asarray(labeller(list(unique)), dtype=np.float32)
    if labels.shape != (len(unique), len(OBSERVATIONS)):
        raise EvaluationInputError(f"labeller returned shape {labels.shape}, expected ({len(unique)}, 14)")
    return dict(zip(unique, labels, strict=True))


@dataclass
class EvalResult:
    metrics: dict
    retrieved: dict[str, np.ndarray]  # method -> (N, max_k) bank indices
    scores: np.ndarray  # model scores (N, max_k)
    inputs: EvalInputs


def evaluate(
    inputs: EvalInputs,
    ks: Sequence[int],
    n_boot: int = 1000,
    seed: int = 0,
    labeller: Labeller | None = None,
    query_chunk: int = 2048,
    key_chunk: int = 16384,
    summary_k: int | None = None,
    zeroshot: Mapping | None = None,
    report_ks: Sequence[int] | None = (1,),
    text_similarity: bool = True,
    bertscore_model: str | None = None,
    sensitivity: bool = True,
    chexbert: Labeller | str | None = None,
) -> EvalResult:
    """Retrieve with the model and the baselines and compute every metric with bootstrap intervals.

    `labeller` labels the concatenated retrieved sentences for the report-generation metrics; None
    uses `aggregate_sentence_labels` (recorded in metrics.json as the report labeller).

    The wider evaluation (all with the one bootstrap resample matrix):
    - `zeroshot` ({"uncertain", "blank"}; None: skipped): zero-shot AUROC of the 14 observations from the
      prompt embeddings of bank.h5 against the query labels (`zeroshot.zeroshot_evaluation`).
    - `text_similarity`: BLEU-1..4, ROUGE-L (and BERTScore with `bertscore_model`) of every method's
      top-`summary_k` sentences against the query's reference section (`textmetrics.text_metrics`);
      only at `summary_k` (default: 2 when evaluated, else the smallest k), as it costs a library call
      per query.
    - `report_ks` (None or empty: skipped): report-level retrieval (CXR-RePaiR) from the report bank of
      bank.h5 for every method (random reports, the most frequent report, the label oracle over the
      report labels), the hit and report-generation metrics on the retrieved reports' labels and the
      text metrics of the retrieved reports.
    - `sensitivity`: the labeller-sensitivity table of the model's top-`summary_k` sentences
      (`label_sensitivity.sensitivity_table`): truth labellers of `inputs.truth_labels` (plus CheXbert),
      retrieved-text labels of the report-generation metrics (`chexpert`) and of `chexbert` (a labeller
      of texts, or the reason it is absent).
    """
    ks = sorted(set(int(k) for k in ks))
    if not ks or ks[0] < 1:
        raise EvaluationInputError(f"k values must be positive, got {ks}")
    if summary_k is None:
        summary_k = 2 if 2 in ks else ks[0]
    if summary_k not in ks:
        raise EvaluationInputError(f"summary k={summary_k} is not one of the evaluated k {ks}")
    max_k = ks[-1]
    n, m = inputs.query_embeddings.shape[0], inputs.bank_embeddings.shape[0]
    if n == 0:
        raise EvaluationInputError(f"empty query set after sampling: {inputs.paths.get('queries')}")
    if max_k > m:
        raise EvaluationInputError(
            f"k={max_k} is larger than the sentence bank of {inputs.paths.get('bank')} ({m})"
        )
    log.info("%s: %d queries, bank of %d sentences, k=%s", inputs.experiment, n, m, ks)

    scores, model_idx = topk_similarity(
        inputs.query_embeddings, inputs.bank_embeddings, max_k, query_chunk, key_chunk, show_progress=True
    )
    retrieved = {
        "model": model_idx,
        "random": random_retrieval(n, m, max_k, stream_seed(seed, "random")),
        "most_frequent": np.broadcast_to(most_frequent(inputs.text_count, max_k), (n, max_k)).copy(),
        "oracle": oracle_retrieval(inputs.query_labels, inputs.bank_labels, max_k)[0],
    }
    counts = resample_counts(n, n_boot, stream_seed(seed, "bootstrap")) if n_boot > 0 else None

    text_labels: dict[str, np.ndarray] = {}
    if labeller is not None:
        texts = [t for idx in retrieved.values() for k in ks for t in joined_sentences(inputs.bank_text, idx, k)]
        log.info("labelling %d distinct retrieved-sentence reports", len(set(texts)))
        text_labels = labels_by_text(texts, labeller)

    # Per-query arrays of every (method, k) first; then all bootstrap sums in one matrix product.
    groups: list[tuple[dict[str, np.ndarray], Callable]] = []
    slots: list[tuple[str, str | None]] = []  # (method, k) per group pair; k None = exact pair
    per_obs: dict[str, dict[str, dict[str, float]]] = {}
    predicted_at: dict[str, np.ndarray] = {}  # method -> report labels of its top-summary_k sentences
    for method, idx in retrieved.items():
        per_obs[method] = {}
        for k in ks:
            r_labels = inputs.bank_labels[idx[:, :k]]
            if labeller is None:
                predicted = aggregate_sentence_labels(r_labels)
            else:
                predicted = np.stack([text_labels[t] for t in joined_sentences(inputs.bank_text, idx, k)])
            hits = hit_arrays(inputs.query_labels, r_labels)
            groups.append((hits, hit_statistic))
            groups.append(
                (report_generation_arrays(inputs.query_labels, predicted), report_generation_statistic)
            )
            slots += [(method, str(k))] * 2
            if inputs.query_reports is not None:
                groups.append(
                    (
                        bleu_arrays(inputs.query_reports, inputs.bank_text[idx[:, :k]], hits["kept"]),
                        bleu_statistic,
                    )
                )
                slots.append((method, str(k)))
            per_obs[method][str(k)] = f1_by_observation(inputs.query_labels, predicted)
            if k == summary_k:
                predicted_at[method] = predicted

    ranks = own_report_ranks(inputs)
    n_reports = inputs.report_embeddings.shape[0]
    if n_reports and not np.isnan(ranks).all():
        rand = random_ranks(n, n_reports, stream_seed(seed, "random_ranks"))
        rand[np.isnan(ranks)] = np.nan
        groups += [
            (exact_pair_arrays(ranks), exact_pair_statistic),
            (exact_pair_arrays(rand), exact_pair_statistic),
        ]
        slots += [("model", None), ("random", None)]
    else:
        log.warning(
            "no query report embeddings in %s: exact-pair retrieval skipped", inputs.paths.get("queries")
        )

    report_level = _report_level_groups(inputs, report_ks, seed, labeller)
    for method, k, arrays, statistic in report_level["groups"]:
        groups.append((arrays, statistic))
        slots.append((method, f"report:{k}"))

    methods: dict[str, dict] = {method: {"k": {str(k): {} for k in ks}} for method in retrieved}
    for (method, k), result in zip(slots, point_and_interval_many(groups, counts), strict=True):
        if k is None:
            methods[method]["exact_pair"] = result
        elif k.startswith("report:"):
            methods[method].setdefault("report_level", {}).setdefault(k[len("report:"):], {}).update(result)
        else:
            methods[method]["k"][k].update(result)

    cache = TextCache()  # tokens and n-grams of each distinct text, shared by every method
    if text_similarity and inputs.reference_texts is not None:
        log.info("text metrics of the top-%d sentences against the %s section", summary_k, inputs.reference_section)
        for method, idx in retrieved.items():
            methods[method]["text_similarity"] = {
                str(summary_k): _text_metrics(
                    joined_sentences(inputs.bank_text, idx, summary_k), inputs, counts, bertscore_model, cache
                )
            }
    elif text_similarity:
        log.warning("no reference section given: text similarity metrics skipped")
    if text_similarity and inputs.reference_texts is not None:
        for method, k, texts in report_level["texts"]:
            methods[method]["report_level"][str(k)].update(
                _text_metrics(texts, inputs, counts, bertscore_model, cache)
            )

    zeroshot_result = None
    if zeroshot is not None and inputs.prompt_embeddings is not None:
        zeroshot_result = zeroshot_evaluation(
            inputs.query_embeddings.astype(np.float32),
            inputs.query_labels,
            prompt_emb=inputs.prompt_embeddings,
            prompts=inputs.prompts,
            uncertain=zeroshot.get("uncertain", "exclude"),
            blank=zeroshot.get("blank", "negative"),
            counts=counts,
            n_boot=0,
        )
        zeroshot_result["settings"]["labels"] = inputs.query_labels_from
    elif zeroshot is not None:
        log.warning("%s holds no prompt embeddings (embedded by an older version?): zero-shot skipped",
                    inputs.paths.get("bank"))

    sensitivity_result = None
    if sensitivity:
        # the report-generation labels of the retrieved text: the text labeller's (ours), else the
        # combined sentence labels, whose labeller is the label stage's
        name = "chexpert" if labeller is not None else inputs.sentence_labels_from
        sensitivity_result = _sensitivity(inputs, retrieved["model"], predicted_at["model"], summary_k,
                                          counts, chexbert, name)

    metrics = {
        "experiment": inputs.experiment,
        "n_queries": int(n),
        "n_query_studies": int(len(np.unique(inputs.study_id))),
        "bank_size": int(m),
        "n_reports": int(n_reports),
        "k": ks,
        "bootstrap": int(n_boot),
        "confidence": 0.95,
        "seed": int(seed),
        "query_labels": inputs.query_labels_from,
        "bleu": "original (nltk sentence_bleu, weights 0.5/0.5)"
        if inputs.query_reports is not None
        else None,
        "summary_k": int(summary_k),
        "report_section": inputs.report_section if report_level["ks"] else None,
        "report_k": report_level["ks"],
        "n_report_bank": 0 if inputs.report_bank_embeddings is None else int(inputs.report_bank_embeddings.shape[0]),
        "reference_section": inputs.reference_section if text_similarity else None,
        "report_labeller": "aggregate_sentence_labels"
        if labeller is None
        else getattr(labeller, "__module__", "labeller") + "." + getattr(labeller, "__name__", "labeller"),
        "inputs": dict(inputs.paths),
        "methods": methods,
        "f1_by_observation": per_obs,
    }
    if zeroshot_result is not None:
        metrics["zeroshot"] = zeroshot_result
    if sensitivity_result is not None:
        metrics["label_sensitivity"] = sensitivity_result
    return EvalResult(metrics=metrics, retrieved=retrieved, scores=scores, inputs=inputs)


def _text_metrics(hypotheses: list[str], inputs: EvalInputs, counts, bertscore_model, cache: TextCache) -> dict:
    return text_metrics(
        hypotheses, list(inputs.reference_texts), inputs.reference_valid, counts=counts, n_boot=0,
        bertscore_model=bertscore_model, cache=cache,
    )


def _report_level_groups(inputs: EvalInputs, report_ks, seed: int, labeller: Labeller | None) -> dict:
    """Report-level retrieval for every method: (method, k, per-query arrays, statistic) groups and the
    retrieved texts per (method, k). A bank report's labels are its study's labels (labels/reports.parquet);
    the top-k reports for k > 1 are labelled as one report like the sentences (labeller, else aggregated)."""
    out: dict = {"groups": [], "texts": [], "ks": []}
    ks = sorted(set(int(k) for k in (report_ks or ())))
    if not ks:
        return out
    if inputs.report_bank_embeddings is None:
        log.warning("%s holds no report bank (embedded with --report-section none or by an older version): "
                    "report-level retrieval skipped", inputs.paths.get("bank"))
        return out
    n, r = inputs.query_embeddings.shape[0], inputs.report_bank_embeddings.shape[0]
    k_max = ks[-1]
    _, model_idx = retrieve_reports(
        inputs.query_embeddings, inputs.report_bank_embeddings, k_max, inputs.study_id, inputs.report_bank_study_id
    )
    retrieved = {
        "model": model_idx,
        "random": random_retrieval(n, r, k_max, stream_seed(seed, "random_reports")),
        "most_frequent": np.broadcast_to(most_frequent(inputs.report_bank_text_count, k_max), (n, k_max)).copy(),
        "oracle": oracle_retrieval(inputs.query_labels, inputs.report_bank_labels, k_max)[0],
    }
    bank = pd.DataFrame({"text": inputs.report_bank_text})
    joined = {(m, k): retrieved_texts(bank, idx, k) for m, idx in retrieved.items() for k in ks}
    text_labels = {}
    if labeller is not None and k_max > 1:
        text_labels = labels_by_text([t for (m, k), ts in joined.items() if k > 1 for t in ts], labeller)
    for method, idx in retrieved.items():
        for k in ks:
            r_labels = inputs.report_bank_labels[idx[:, :k]]
            if k == 1:
                predicted = r_labels[:, 0]
            elif labeller is None:
                predicted = aggregate_sentence_labels(r_labels)
            else:
                predicted = np.stack([text_labels[t] for t in joined[(method, k)]])
            out["groups"].append((method, k, hit_arrays(inputs.query_labels, r_labels), hit_statistic))
            out["groups"].append(
                (method, k, report_generation_arrays(inputs.query_labels, predicted), report_generation_statistic)
            )
            out["texts"].append((method, k, joined[(method, k)]))
    out["ks"] = ks
    log.info("report-level retrieval: %d %s reports, k=%s", r, inputs.report_section, ks)
    return out


def _records(table: pd.DataFrame) -> list[dict]:
    rows = table.to_dict("records")
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()} for row in rows]


def _sensitivity(inputs: EvalInputs, model_idx: np.ndarray, predicted: np.ndarray, k: int, counts,
                 chexbert: Labeller | str | None, predicted_by: str = "chexpert") -> dict:
    """The labeller-sensitivity table of the model's top-k sentences (JSON-ready); `predicted` are the
    report-generation labels of the retrieved text, by `predicted_by`."""
    truth = dict(inputs.truth_labels)
    retrieved: dict[str, np.ndarray | str] = {
        "chexpert": "the sentence labels are CheXbert's and no CheXpert text labeller ran",
        predicted_by: predicted,
    }
    if chexbert is None or isinstance(chexbert, str):
        why = chexbert or "no CheXbert checkpoint (labels.chexbert.checkpoint or $CHEXBERT_CHECKPOINT)"
        retrieved.setdefault("chexbert", why)
        truth.setdefault("chexbert", why)  # the label stage's CheXbert labels are kept
    else:
        if predicted_by != "chexbert":
            texts = joined_sentences(inputs.bank_text, model_idx, k)
            log.info("CheXbert: labelling %d retrieved texts", len(texts))
            retrieved["chexbert"] = np.asarray(chexbert(texts), dtype=np.float32)
        if isinstance(truth.get("chexbert", ""), str):
            truth["chexbert"] = (
                np.asarray(chexbert(list(inputs.query_label_texts)), dtype=np.float32)
                if inputs.query_label_texts is not None
                else "no query report texts (sections.parquet label_text) to label"
            )
    truth = {name: truth[name] for name in sorted(truth, key=_truth_order)}
    table = sensitivity_table(truth, retrieved, counts=counts)
    return {
        "k": int(k),
        "method": "model",
        "query_labels": inputs.query_labels_from,
        "rows": _records(table),
    }


def own_report_ranks(inputs: EvalInputs) -> np.ndarray:
    """Rank of each query's own study report among the query reports (NaN: study has no report)."""
    ranks = np.full(inputs.study_id.shape[0], np.nan)
    if inputs.report_embeddings.shape[0] == 0:
        return ranks
    pos = pd.Series(np.arange(inputs.report_study_id.shape[0]), index=inputs.report_study_id)
    pos = pos[~pos.index.duplicated()]
    target = pos.reindex(inputs.study_id).to_numpy()
    ok = ~np.isnan(target)
    if ok.any():
        ranks[ok] = rank_of_targets(
            inputs.query_embeddings[ok], inputs.report_embeddings, target[ok].astype(np.int64)
        )
    return ranks


def predictions_table(result: EvalResult, method: str = "model") -> pd.DataFrame:
    """One row per (query, rank) for `method`: ids, score, text, the 14 labels and the hits."""
    inp = result.inputs
    idx = result.retrieved[method]
    n, k = idx.shape
    labels = inp.bank_labels[idx]  # (n, k, 14)
    hits = hit_matrix(inp.query_labels, labels)
    obs = np.asarray(OBSERVATIONS, dtype=object)
    df = pd.DataFrame(
        {
            "dicom_id": np.repeat(inp.dicom_id, k),
            "study_id": np.repeat(inp.study_id, k),
            "rank": np.tile(np.arange(1, k + 1), n),
            "sentence_id": inp.sentence_id[idx].ravel(),
            "score": result.scores.ravel() if method == "model" else np.full(n * k, np.nan, np.float32),
            "text": inp.bank_text[idx].ravel(),
        }
    )
    flat_labels = labels.reshape(n * k, -1)
    for j, o in enumerate(OBSERVATIONS):
        df[o] = flat_labels[:, j]
    flat_hits = hits.reshape(n * k, -1)
    df["hits"] = flat_hits.sum(axis=1).astype(np.int64)
    df["hit_observations"] = ["; ".join(obs[row]) for row in flat_hits]
    return df


def write_outputs(result: EvalResult, out_dir: str | Path) -> dict[str, Path]:
    """metrics.json and predictions.parquet (model retrieval), atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.json"
    with atomic_path(metrics_path, suffix=".json.tmp") as tmp:
        tmp.write_text(json.dumps(result.metrics, indent=2, sort_keys=False, allow_nan=False) + "\n")
    pred_path = write_parquet_atomic(predictions_table(result), out / "predictions.parquet")
    return {"metrics": metrics_path, "predictions": pred_path}
