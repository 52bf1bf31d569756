"""Protocol `report_retrieval`: CXR-RePaiR's report-level retrieval (`evaluation.report_retrieval`).

Every method (the model, random reports, the most frequent report, the label oracle over the report
labels) retrieves from the report bank of bank.h5 (a query's own study excluded); scored like the
sentences (`scoring`), a lone report keeping its study's labels, plus the text metrics of the
retrieved reports against the query's reference section (`text_similarity`).

metrics.json `report_retrieval`: {"section", "k", "n_bank", "methods": {method: {k: {metric: entry}}}}.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..bootstrap import entry_cell
from ..context import Context
from ..inputs import EvaluationInputs
from ..scoring import interval_table, label_retrievals, retrieval_groups, retrieve_reports_all
from . import text_similarity

log = logging.getLogger(__name__)

NAME = "report_retrieval"
COLUMNS = ("flat_hit", "precision", "recall", "f1", "micro_f1_all", "bleu4", "rouge_l")
TITLES = {"flat_hit": "flat-hit@k", "precision": "precision@k", "recall": "recall@k", "f1": "F1@k",
          "micro_f1_all": "micro F1 (14)", "bleu4": "BLEU-4", "rouge_l": "ROUGE-L"}


def run(inputs: EvaluationInputs, context: Context) -> dict | None:
    settings = context.evaluation["report_retrieval"]
    if not settings["enabled"]:
        return None
    bank = inputs.report_bank
    if bank is None:
        log.warning("%s holds no report bank (embedded with --report-section none): report-level retrieval "
                    "skipped", inputs.paths.get("bank"))
        return None
    ks = sorted(set(int(k) for k in settings["k"]))
    retrievals = retrieve_reports_all(inputs.queries, bank, ks[-1], context.seed)
    label_retrievals(retrievals, ks, context.labeller, single_report=True)
    table = interval_table(retrieval_groups(inputs.queries.labels, retrievals, ks), context.counts)
    refs = text_similarity.references(inputs, context.evaluation)
    if refs is not None:
        for method, retrieval in retrievals.items():
            for k in ks:
                table[method][str(k)].update(text_similarity.score_texts(retrieval.joined(k), refs, context))
    log.info("report-level retrieval: %d %s reports, k=%s", bank.embeddings.shape[0], bank.section, ks)
    return {"section": bank.section, "k": ks, "n_bank": int(bank.embeddings.shape[0]),
            "methods": {method: table[method] for method in retrievals}}


def summary_section(runs: Sequence[tuple[str, dict | None]], k: int) -> str:
    out = ["## Report-level retrieval\n"]
    reports = [(name, result) for name, result in runs if result]
    if not reports:
        out.append("Not evaluated (evaluation.report_retrieval.enabled false, or no report bank).\n")
        return "\n".join(out)
    out.append(
        f"CXR-RePaiR: the top report(s) from a bank of whole {reports[0][1]['section']} sections of the bank "
        "splits (a query's own study excluded); hit metrics on the retrieved reports' labels, micro F1 of their "
        "labels (positive = 1), text metrics against the query's reference section.\n"
    )
    header = ["experiment", "method", "k", *[TITLES[c] for c in COLUMNS]]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * len(COLUMNS)) + "|"]
    for name, result in reports:
        for method, by_k in result["methods"].items():
            for rk, values in by_k.items():
                cells = [entry_cell(values.get(c)) for c in COLUMNS]
                lines.append("| " + " | ".join([name, method, rk, *cells]) + " |")
    out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def summary_columns(result: dict | None, method: str, k: int) -> dict:
    return {}
