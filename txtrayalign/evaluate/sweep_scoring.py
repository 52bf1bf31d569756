"""A sweep point's validation score: the evaluation's headline scoring on its validation queries.

`score_points` runs, for each point, exactly what `txtrayalign evaluate` runs (`inputs.load_inputs`
then `evaluation.evaluate`) with the settings the workflow gives it (`rule_args.headline_settings`:
every protocol switched off, so only the sentence-level retrieval metrics: flat-hit, precision,
recall and F1 at every k with bootstrap intervals, for the model and the baselines), on the point's
validation queries (`embeddings/<exp>/queries.validate.h5`) against its own sentence bank. All points
of a sweep are scored in one process, one job instead of one per point: loading and scoring a point
takes a fraction of a second, starting a process several seconds.

The headline metrics count hits of the retrieved sentences' own labels, so the report labeller (which
only the report-generation metrics use) is left out (`labeller=None`).
"""

from __future__ import annotations

from txtrayalign.utils import progress


def score_points(points: list[dict], queries: list[str], banks: list[str], shared: dict, settings: dict) -> dict:
    """experiment -> (its validation metrics, the queries file): `queries[i]`, `banks[i]` are
    `points[i]`'s; `shared`: the other `load_inputs` paths (labels, sentences, sections)."""
    from .evaluation import evaluate
    from .inputs import load_inputs

    if not (len(points) == len(queries) == len(banks)):
        from . import EvaluationInputError

        raise EvaluationInputError(
            f"{len(points)} sweep points but {len(queries)} validation query files and {len(banks)} banks")
    out = {}
    for point, query_path, bank_path in progress(list(zip(points, queries, banks, strict=True)), "scoring sweep points", unit="point"):
        paths = {**shared, "queries": query_path, "bank": bank_path}
        inputs = load_inputs(paths, settings["evaluation"], settings["labels"], experiment=point["experiment"])
        out[point["experiment"]] = (evaluate(inputs, settings, labeller=None).metrics, query_path)
    return out
