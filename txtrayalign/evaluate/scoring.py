"""Retrieval by every method over one bank, and its scoring: the same code for sentences and reports.

- `Retrieval`: one method's top-k rows of one bank, their labels and texts, the report-generation
  labels of its top-k text per k (`predicted`), and the model's similarities.
- `retrieve_sentences(queries, bank, max_k, seed)` / `retrieve_reports_all(queries, bank, max_k, seed)`:
  the model and the baselines (random, most frequent, label oracle) over the sentence or report bank.
- `label_retrievals(retrievals, ks, labeller, single_report)`: fills `predicted` — the labeller on the
  joined top-k text, else the combined labels of the retrieved rows (`aggregate_sentence_labels`); with
  `single_report`, a lone retrieved report keeps its own study labels.
- `retrieval_groups(truth, retrievals, ks)`: the per-query arrays of the hit and report-generation
  metrics of every (method, k); `interval_table(groups, counts)`: all their values and bootstrap
  intervals in one matrix product, as {method: {key: {metric: entry}}}.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import EvaluationInputError
from .baselines import most_frequent, oracle_retrieval, random_retrieval
from .bootstrap import point_and_interval_many
from .context import stream_seed
from .inputs import Queries, ReportBank, SentenceBank
from .labels import Labeller, aggregate_sentence_labels, labels_by_text
from .metrics import hit_arrays, hit_statistic, report_generation_arrays, report_generation_statistic
from .report_retrieval import retrieve_reports
from .retrieval import topk_similarity

log = logging.getLogger(__name__)

METHODS = ("model", "random", "most_frequent", "oracle")
# (method, key, per-query arrays, statistic): one bootstrap group; key is str(k) or a metric family name
Group = tuple[str, str, dict[str, np.ndarray], Callable]


@dataclass
class Retrieval:
    """One method's retrieval over one bank: query i retrieved bank rows index[i] (best first)."""

    index: np.ndarray  # (N, max_k)
    bank_labels: np.ndarray  # (M, 14)
    bank_texts: np.ndarray  # (M,)
    scores: np.ndarray | None = None  # the model's similarities (N, max_k); None for a baseline
    predicted: dict[int, np.ndarray] = field(default_factory=dict)  # k -> (N, 14) labels of the top-k text

    def retrieved_labels(self, k: int) -> np.ndarray:
        """(N, k, 14) labels of the top-k rows."""
        return self.bank_labels[self.index[:, :k]]

    def retrieved_texts(self, k: int) -> np.ndarray:
        """(N, k) texts of the top-k rows."""
        return self.bank_texts[self.index[:, :k]]

    def joined(self, k: int) -> list[str]:
        """The top-k texts of each query as one report (CXR-RePaiR's composed report)."""
        if k > self.index.shape[1]:
            raise EvaluationInputError(f"k={k} but only {self.index.shape[1]} rows were retrieved")
        return [" ".join(row) for row in self.retrieved_texts(k)]


def _methods(queries: Queries, bank_labels: np.ndarray, texts: np.ndarray, text_count: np.ndarray,
             model: tuple[np.ndarray, np.ndarray], random_stream: str, seed: int) -> dict[str, Retrieval]:
    scores, index = model
    n, m, max_k = index.shape[0], bank_labels.shape[0], index.shape[1]
    rows = {
        "random": random_retrieval(n, m, max_k, stream_seed(seed, random_stream)),
        "most_frequent": np.broadcast_to(most_frequent(text_count, max_k), (n, max_k)).copy(),
        "oracle": oracle_retrieval(queries.labels, bank_labels, max_k)[0],
    }
    out = {"model": Retrieval(index, bank_labels, texts, scores)}
    out.update({method: Retrieval(idx, bank_labels, texts) for method, idx in rows.items()})
    return out


def retrieve_sentences(queries: Queries, bank: SentenceBank, max_k: int, seed: int,
                       query_chunk: int = 2048, key_chunk: int = 16384) -> dict[str, Retrieval]:
    """Every method's top-`max_k` sentences of the sentence bank."""
    if max_k > bank.embeddings.shape[0]:
        raise EvaluationInputError(
            f"k={max_k} is larger than the sentence bank of {bank.path} ({bank.embeddings.shape[0]} sentences)")
    model = topk_similarity(queries.embeddings, bank.embeddings, max_k, query_chunk, key_chunk, show_progress=True)
    return _methods(queries, bank.labels, bank.texts, bank.text_count, model, "random", seed)


def retrieve_reports_all(queries: Queries, bank: ReportBank, max_k: int, seed: int) -> dict[str, Retrieval]:
    """Every method's top-`max_k` reports of the report bank (a query's own study never retrieved)."""
    model = retrieve_reports(queries.embeddings, bank.embeddings, max_k, queries.study_id, bank.study_id)
    return _methods(queries, bank.labels, bank.texts, bank.text_count, model, "random_reports", seed)


def label_retrievals(retrievals: dict[str, Retrieval], ks: Sequence[int], labeller: Labeller | None,
                     single_report: bool = False) -> None:
    """Fill each retrieval's `predicted[k]` for every k (see the module docstring)."""
    def own(k: int) -> bool:
        return single_report and k == 1

    text_labels: dict[str, np.ndarray] = {}
    if labeller is not None:
        texts = [t for r in retrievals.values() for k in ks if not own(k) for t in r.joined(k)]
        if texts:
            log.info("labelling %d distinct retrieved texts", len(set(texts)))
        text_labels = labels_by_text(texts, labeller)
    for r in retrievals.values():
        for k in ks:
            if own(k):
                r.predicted[k] = r.retrieved_labels(1)[:, 0]
            elif labeller is None:
                r.predicted[k] = aggregate_sentence_labels(r.retrieved_labels(k))
            else:
                r.predicted[k] = np.stack([text_labels[t] for t in r.joined(k)])


def retrieval_groups(truth: np.ndarray, retrievals: dict[str, Retrieval], ks: Sequence[int],
                     more: Callable[[Retrieval, int, dict], list[tuple[dict, Callable]]] | None = None) -> list[Group]:
    """The hit and report-generation groups of every (method, k), then `more(retrieval, k, hits)`'s."""
    groups: list[Group] = []
    for method, r in retrievals.items():
        for k in ks:
            hits = hit_arrays(truth, r.retrieved_labels(k))
            groups.append((method, str(k), hits, hit_statistic))
            groups.append((method, str(k), report_generation_arrays(truth, r.predicted[k]),
                           report_generation_statistic))
            for arrays, statistic in (more(r, k, hits) if more is not None else []):
                groups.append((method, str(k), arrays, statistic))
    return groups


def interval_table(groups: Sequence[Group], counts: np.ndarray | None) -> dict[str, dict[str, dict]]:
    """{method: {key: {metric: {"value", "ci_low", "ci_high"}}}} of every group, one matrix product."""
    out: dict[str, dict[str, dict]] = {}
    results = point_and_interval_many([(arrays, statistic) for _, _, arrays, statistic in groups], counts)
    for (method, key, _, _), result in zip(groups, results, strict=True):
        out.setdefault(method, {}).setdefault(key, {}).update(result)
    return out
