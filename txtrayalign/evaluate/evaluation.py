"""Evaluate one experiment: the sentence-level retrieval metrics, then each protocol, in memory.

`evaluate(inputs, settings)` reads as the evaluation's table of contents: the shared context (k,
summary k, bootstrap resamples, every method's sentence retrieval with its labels), the metrics of
the sentence retrieval (hit, report-generation, the original's BLEU, exact-pair recall), then every
protocol of `protocols.PROTOCOLS`, each result under its own key of metrics.json. `write_outputs`
writes metrics.json and predictions.parquet atomically. Output depends only on the inputs and the seed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from txtrayalign.constants import OBSERVATIONS
from txtrayalign.utils import atomic_path, write_parquet_atomic

from .baselines import random_ranks
from .bootstrap import resample_counts
from .context import Context, evaluated_ks, stream_seed, summary_k
from .inputs import EvaluationInputs, Queries
from .labels import Labeller
from .metrics import exact_pair_arrays, exact_pair_statistic, f1_by_observation, hit_matrix
from .protocols import PROTOCOLS
from .retrieval import rank_of_targets
from .scoring import METHODS, Group, interval_table, label_retrievals, retrieval_groups, retrieve_sentences
from .textmetrics import bleu_arrays, bleu_statistic

log = logging.getLogger(__name__)

CONFIDENCE = 0.95
BLEU = "original (nltk sentence_bleu, weights 0.5/0.5)"


@dataclass
class EvalResult:
    metrics: dict
    inputs: EvaluationInputs
    context: Context


def evaluate(inputs: EvaluationInputs, settings: dict, labeller: Labeller | None = None,
             query_chunk: int = 2048, key_chunk: int = 16384) -> EvalResult:
    """Every metric of one experiment with bootstrap intervals (`settings`: `context.resolve_settings`).

    `labeller` labels the joined retrieved text for the report-generation metrics; None combines the
    retrieved sentences' own labels (`labels.aggregate_sentence_labels`).
    """
    context = sentence_context(inputs, settings, labeller, query_chunk, key_chunk)
    metrics = {**header(inputs, context), **sentence_metrics(inputs, context)}
    for protocol in PROTOCOLS:
        result = protocol.run(inputs, context)
        if result is not None:
            metrics[protocol.NAME] = result
    return EvalResult(metrics=metrics, inputs=inputs, context=context)


def sentence_context(inputs: EvaluationInputs, settings: dict, labeller: Labeller | None,
                     query_chunk: int = 2048, key_chunk: int = 16384) -> Context:
    """The k list, summary k, resample counts and every method's labelled sentence retrieval."""
    ks, seed, n_boot = evaluated_ks(settings), settings["evaluation"]["seed"], settings["evaluation"]["bootstrap"]
    n = inputs.queries.embeddings.shape[0]
    log.info("%s: %d queries, bank of %d sentences, k=%s", inputs.experiment, n,
             inputs.sentence_bank.embeddings.shape[0], ks)
    retrievals = retrieve_sentences(inputs.queries, inputs.sentence_bank, ks[-1], seed, query_chunk, key_chunk)
    label_retrievals(retrievals, ks, labeller)
    counts = resample_counts(n, n_boot, stream_seed(seed, "bootstrap")) if n_boot > 0 else None
    return Context(settings=settings, ks=ks, summary_k=summary_k(settings), seed=seed, counts=counts,
                   labeller=labeller, sentence_retrieval=retrievals)


def header(inputs: EvaluationInputs, context: Context) -> dict:
    """What was evaluated and how: the first keys of metrics.json."""
    queries, evaluation, labeller = inputs.queries, context.evaluation, context.labeller
    return {
        "experiment": inputs.experiment,
        "n_queries": int(queries.embeddings.shape[0]),
        "n_query_studies": int(len(np.unique(queries.study_id))),
        "bank_size": int(inputs.sentence_bank.embeddings.shape[0]),
        "n_reports": int(queries.report_embeddings.shape[0]),
        "k": context.ks,
        "bootstrap": int(evaluation["bootstrap"]),
        "confidence": CONFIDENCE,
        "seed": int(context.seed),
        "sample": evaluation["sample"],
        "query_labels": queries.labels_from,
        "bleu": BLEU if queries.section_texts("train_text") is not None else None,
        "summary_k": int(context.summary_k),
        "report_labeller": "aggregate_sentence_labels" if labeller is None
        else f"{labeller.__module__}.{labeller.__name__}",
        "inputs": dict(inputs.paths),
    }


def sentence_metrics(inputs: EvaluationInputs, context: Context) -> dict:
    """`methods` ({method: {"k": {k: metrics}, "exact_pair": ...}}) and `f1_by_observation`."""
    queries, retrievals = inputs.queries, context.sentence_retrieval
    reports = queries.section_texts("train_text")

    def original_bleu(retrieval, k, hits):
        return [] if reports is None else [(bleu_arrays(reports, retrieval.retrieved_texts(k), hits["kept"]),
                                             bleu_statistic)]

    groups = retrieval_groups(queries.labels, retrievals, context.ks, original_bleu)
    table = interval_table(groups + exact_pair_groups(queries, context.seed), context.counts)
    methods = {}
    for method in METHODS:
        methods[method] = {"k": {str(k): table[method][str(k)] for k in context.ks}}
        if "exact_pair" in table[method]:
            methods[method]["exact_pair"] = table[method]["exact_pair"]
    per_observation = {method: {str(k): f1_by_observation(queries.labels, r.predicted[k]) for k in context.ks}
                       for method, r in retrievals.items()}
    return {"methods": methods, "f1_by_observation": per_observation}


def own_report_ranks(queries: Queries) -> np.ndarray:
    """Rank of each query's own study report among the query reports (NaN: study has no report)."""
    ranks = np.full(queries.study_id.shape[0], np.nan)
    if queries.report_embeddings.shape[0] == 0:
        return ranks
    pos = pd.Series(np.arange(queries.report_study_id.shape[0]), index=queries.report_study_id)
    pos = pos[~pos.index.duplicated()]
    target = pos.reindex(queries.study_id).to_numpy()
    ok = ~np.isnan(target)
    if ok.any():
        ranks[ok] = rank_of_targets(queries.embeddings[ok], queries.report_embeddings, target[ok].astype(np.int64))
    return ranks


def exact_pair_groups(queries: Queries, seed: int) -> list[Group]:
    """Exact-pair recall of the model and of random ranks: each query's own report among the query reports."""
    ranks = own_report_ranks(queries)
    n_reports = queries.report_embeddings.shape[0]
    if not n_reports or np.isnan(ranks).all():
        log.warning("no query report embeddings in %s: exact-pair retrieval skipped", queries.path)
        return []
    rand = random_ranks(ranks.shape[0], n_reports, stream_seed(seed, "random_ranks"))
    rand[np.isnan(ranks)] = np.nan
    return [("model", "exact_pair", exact_pair_arrays(ranks), exact_pair_statistic),
            ("random", "exact_pair", exact_pair_arrays(rand), exact_pair_statistic)]


def predictions_table(result: EvalResult, method: str = "model") -> pd.DataFrame:
    """One row per (query, rank) for `method`: ids, score, text, the 14 labels and the hits."""
    queries, bank = result.inputs.queries, result.inputs.sentence_bank
    retrieval = result.context.sentence_retrieval[method]
    idx = retrieval.index
    n, k = idx.shape
    labels = bank.labels[idx]  # (n, k, 14)
    hits = hit_matrix(queries.labels, labels)
    obs = np.asarray(OBSERVATIONS, dtype=object)
    df = pd.DataFrame(
        {
            "dicom_id": np.repeat(queries.dicom_id, k),
            "study_id": np.repeat(queries.study_id, k),
            "rank": np.tile(np.arange(1, k + 1), n),
            "sentence_id": bank.sentence_id[idx].ravel(),
            "score": retrieval.scores.ravel() if retrieval.scores is not None else np.full(n * k, np.nan, np.float32),
            "text": bank.texts[idx].ravel(),
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
