"""Protocol `text_similarity`: every method's top-`summary_k` sentences joined, against the query's
reference section (`evaluation.text_metrics`): BLEU-1..4, ROUGE-L, BERTScore (`textmetrics.text_metrics`).

metrics.json `text_similarity`: {"k", "reference_section", "methods": {method: {metric: entry}}}.
`references` and `score_texts` are shared with report-level retrieval (`report_retrieval`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .. import is_none
from ..bootstrap import interval_columns
from ..context import Context
from ..inputs import EvaluationInputs
from ..report_retrieval import reference_texts
from ..textmetrics import TextCache, text_metrics, to_markdown

log = logging.getLogger(__name__)

NAME = "text_similarity"
CSV_COLUMNS = ("bleu4", "rouge_l")


@dataclass
class References:
    texts: list[str]  # each query's reference section ("" where it has none)
    valid: np.ndarray  # the queries that have one
    section: str
    bertscore_model: str | None
    cache: TextCache  # tokens and n-grams of each distinct text, shared by every call


def references(inputs: EvaluationInputs, evaluation: Mapping) -> References | None:
    """The queries' reference texts of `evaluation.text_metrics`; None when switched off or unavailable."""
    settings = evaluation["text_metrics"]
    section = settings["reference_section"]
    if not settings["enabled"] or is_none(section):
        return None
    if inputs.queries.sections is None:
        log.warning("no sections table given: text similarity metrics skipped")
        return None
    texts, valid = reference_texts(inputs.queries.sections, inputs.queries.study_id, section,
                                   inputs.paths.get("sections", "text/sections.parquet"))
    return References(texts, valid, section, settings["bertscore_model"], TextCache())


def score_texts(hypotheses: Sequence[str], refs: References, context: Context) -> dict:
    """The text metrics of one retrieved text per query against the references, with intervals."""
    return text_metrics(hypotheses, refs.texts, refs.valid, counts=context.counts, n_boot=0,
                        bertscore_model=refs.bertscore_model, cache=refs.cache)


def run(inputs: EvaluationInputs, context: Context) -> dict | None:
    refs = references(inputs, context.evaluation)
    if refs is None:
        return None
    k = context.summary_k
    log.info("text metrics of the top-%d sentences against the %s section", k, refs.section)
    methods = {method: score_texts(r.joined(k), refs, context) for method, r in context.sentence_retrieval.items()}
    return {"k": k, "reference_section": refs.section, "methods": methods}


def summary_section(runs: Sequence[tuple[str, dict | None]], k: int) -> str:
    out = [f"## Text similarity at k={k}\n"]
    texts = [(name, result) for name, result in runs if result and result["k"] == k]
    if not texts:
        out.append(f"Not computed at k={k} (no reference section, or evaluated at another summary k).\n")
        return "\n".join(out)
    out.append(
        f"The top-{k} retrieved sentences joined, against the query study's {texts[0][1]['reference_section']} "
        "section: corpus BLEU-1..4 (NLTK, smoothing method 1), mean ROUGE-L F (rouge-score), BERTScore F1 "
        "when its model is local.\n"
    )
    for name, result in texts:
        out.append(f"**{name}**\n")
        out.append(to_markdown(result["methods"]))
    return "\n".join(out)


def summary_columns(result: dict | None, method: str, k: int) -> dict:
    entries = result["methods"].get(method, {}) if result and result["k"] == k else {}
    return {key: value for column in CSV_COLUMNS for key, value in interval_columns(column, entries.get(column)).items()}
