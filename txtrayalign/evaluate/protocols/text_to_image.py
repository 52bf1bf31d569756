"""Protocol `text_to_image`: reports, sentences and class prompts as queries over the query images
(`evaluation.text_to_image`; ConVIRT / GLoRIA / MGCA, `txtrayalign.evaluate.text_to_image`).

Images are labelled by their study's labels (the query labels); a report by its study's, a sentence by
its own sentence labels, a prompt by its observation. metrics.json `text_to_image`: {"settings",
"report", "sentence", "prompt"}: per kind {"n_queries", "kept", "model", "random"} (+ "exact_pair" for
reports and sentences, + "by_observation" for prompts).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from txtrayalign.tables import read_table

from ..bootstrap import entry_cell
from ..context import Context
from ..inputs import EvaluationInputs
from ..text_to_image import text_to_image_evaluation

log = logging.getLogger(__name__)

NAME = "text_to_image"
KINDS = {"report": "report", "sentence": "sentence", "prompt": "class prompt"}


def report_labels(study_id: np.ndarray, labels: np.ndarray, report_study_id: np.ndarray) -> np.ndarray:
    """Each report's labels: those of its study's query images (all rows of one study are equal)."""
    table = pd.DataFrame(labels, index=np.asarray(study_id)).groupby(level=0).first()
    return table.reindex(np.asarray(report_study_id)).to_numpy(np.float64)


def sentence_study_ids(path: str | None, sentence_id: np.ndarray) -> np.ndarray:
    """Each bank sentence's study id from text/sentences.parquet (-1 where unknown: no exact pair)."""
    if path is None:
        return np.full(sentence_id.shape[0], -1, np.int64)
    table = read_table(path, "sentences", ["sentence_id", "study_id"]).drop_duplicates("sentence_id")
    return table.set_index("sentence_id")["study_id"].reindex(sentence_id).fillna(-1).to_numpy(np.int64)


def run(inputs: EvaluationInputs, context: Context) -> dict | None:
    settings = context.evaluation["text_to_image"]
    if not settings["enabled"]:
        return None
    q, bank, kinds = inputs.queries, inputs.sentence_bank, set(settings["queries"])
    args: dict = {}
    if "report" in kinds and q.report_embeddings.shape[0]:
        args.update(report_embeddings=q.report_embeddings.astype(np.float32), report_study_id=q.report_study_id,
                    report_labels=report_labels(q.study_id, q.labels, q.report_study_id))
    if "sentence" in kinds:
        args.update(sentence_embeddings=bank.embeddings, sentence_id=bank.sentence_id, sentence_labels=bank.labels,
                    sentence_study_id=sentence_study_ids(inputs.paths.get("sentences"), bank.sentence_id))
    if "prompt" in kinds and inputs.prompts is not None:
        args["prompt_embeddings"] = np.asarray(inputs.prompts.embeddings, np.float32)[:, 0]
    n_boot = context.counts.shape[0] if context.counts is not None else 0
    result = text_to_image_evaluation(q.embeddings.astype(np.float32), q.study_id, q.labels,
                                      ks=sorted(set(settings["k"])), max_sentences=settings["max_sentences"],
                                      n_boot=n_boot, seed=context.seed, **args)
    result["settings"]["labels"] = q.labels_from
    return result


def summary_section(runs: Sequence[tuple[str, dict | None]], k: int) -> str:
    out = ["## Text-to-image retrieval\n"]
    done = [(name, result) for name, result in runs if result and set(result) & set(KINDS)]
    if not done:
        out.append("Not evaluated (evaluation.text_to_image.enabled false).\n")
        return "\n".join(out)
    ks = done[0][1]["settings"]["ks"]
    out.append(
        "Texts retrieve query images. Label-conditioned precision@K (ConVIRT, GLoRIA, MGCA): share of the K "
        "images positive for one of the query's positive observations (queries without one left out); "
        "exact-pair R@K: one of the query's own study's images within the top K (reports; sentences of query "
        "studies). Value [95% bootstrap interval over queries]; random: the exact expectation.\n"
    )
    header = ["experiment", "query", "method", *[f"P@{x}" for x in ks], *[f"pair R@{x}" for x in ks], "queries (kept)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (2 * len(ks) + 1)) + "|"]
    for name, result in done:
        for kind, label in KINDS.items():
            part = result.get(kind)
            if not part:
                continue
            for method in ("model", "random"):
                pair = part.get("exact_pair", {}).get(method, {})
                cells = [entry_cell(part[method].get(f"precision@{x}")) for x in ks]
                cells += [entry_cell(pair.get(f"recall@{x}")) for x in ks]
                kept = f"{part['n_queries']} ({part.get('kept', part['n_queries'])})"
                lines.append("| " + " | ".join([name, label, method, *cells, kept]) + " |")
    out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def summary_columns(result: dict | None, method: str, k: int) -> dict:
    """`text_to_image_<kind>_precision@K` of the model and random rows."""
    out: dict = {}
    if not result or method not in ("model", "random"):
        return out
    for kind in KINDS:
        for metric, entry in result.get(kind, {}).get(method, {}).items():
            if metric.startswith("precision@"):
                out[f"text_to_image_{kind}_{metric}"] = entry.get("value")
    return out


def figures(result: dict | None, out_dir: Path, experiment: str) -> list[Path]:
    return []
