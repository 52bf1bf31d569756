"""Protocol `zeroshot`: zero-shot AUROC of the 14 observations from the prompt embeddings of bank.h5
against the query labels (`evaluation.zeroshot`; CheXzero's protocol, `txtrayalign.evaluate.zeroshot`).

metrics.json `zeroshot`: {"settings", "prompts", "auroc": {observation: entry}, "mean", "mean_top5"}.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..bootstrap import interval_columns
from ..context import Context
from ..inputs import EvaluationInputs
from ..zeroshot import plot_auroc, to_markdown, zeroshot_evaluation

log = logging.getLogger(__name__)

NAME = "zeroshot"
FIGURE = "zeroshot.png"


def run(inputs: EvaluationInputs, context: Context) -> dict | None:
    settings = context.evaluation["zeroshot"]
    if not settings["enabled"]:
        return None
    if inputs.prompts is None:
        log.warning("%s holds no prompt embeddings: zero-shot skipped", inputs.paths.get("bank"))
        return None
    result = zeroshot_evaluation(
        inputs.queries.embeddings.astype(np.float32), inputs.queries.labels, prompt_emb=inputs.prompts.embeddings,
        prompts=inputs.prompts.prompts, uncertain=settings["uncertain"], blank=settings["blank"],
        counts=context.counts, n_boot=0,
    )
    result["settings"]["labels"] = inputs.queries.labels_from
    return result


def summary_section(runs: Sequence[tuple[str, dict | None]], k: int) -> str:
    out = ["## Zero-shot classification\n"]
    results = {name: result for name, result in runs if result}
    if not results:
        out.append("Not evaluated (evaluation.zeroshot.enabled false, or no prompt embeddings).\n")
        return "\n".join(out)
    first = next(iter(results.values()))["settings"]
    out.append(
        "AUROC of each observation from the softmax over its positive and negative prompt (CheXzero's "
        f"protocol), against the query labels ({first.get('labels', 'report')}; uncertain: "
        f"{first.get('uncertain')}, not mentioned: {first.get('blank')}); value [95% bootstrap interval].\n"
    )
    out.append(to_markdown(results))
    return "\n".join(out)


def summary_columns(result: dict | None, method: str, k: int) -> dict:
    return interval_columns("zeroshot_mean_auroc", result["mean"] if result and method == "model" else None)


def figures(result: dict | None, out_dir: Path, experiment: str) -> list[Path]:
    """zeroshot.png: AUROC per observation, or a figure saying why it was not evaluated."""
    if result is not None:
        return [plot_auroc(result, out_dir / FIGURE, title=f"{experiment}: zero-shot AUROC")]
    from ..plots import message_figure

    return [message_figure(out_dir / FIGURE, f"{experiment}: zero-shot classification not evaluated\n"
                           "(evaluation.zeroshot.enabled false, or no prompt embeddings in bank.h5)")]
