"""A sweep point's validation score: the evaluation's headline scoring on its validation queries.

`score_points` runs, for each point, exactly what `txtrayalign evaluate` runs (`inputs.load_inputs`
then `evaluation.evaluate`) with the settings the workflow gives it (`rule_args.headline_settings`:
every protocol switched off, so only the sentence-level retrieval metrics: flat-hit, precision,
recall and F1 at every k with bootstrap intervals, for the model and the baselines), on the point's
validation queries (`embeddings/<exp>/queries.validate.h5`) against its own sentence bank. All points
of a sweep are scored in one process: one job instead of one per point, each of which would start
Python and import the evaluation again.

The bank is the one the point's test evaluation uses (the bank splits, train and validate by
default), less what only the validation queries' own reports wrote (`bank_without_query_studies`): a
test query never finds its own report's sentences in the bank, so a validation query must not either,
or the score rewards recognising a seen report rather than retrieval.

The headline metrics count hits of the retrieved sentences' own labels, so the report labeller (which
only the report-generation metrics use) is left out (`labeller=None`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from txtrayalign.tables import read_table
from txtrayalign.utils import progress

from .inputs import SentenceBank


def bank_without_query_studies(bank: SentenceBank, sentences: pd.DataFrame, query_study_id: np.ndarray,
                               bank_splits: Sequence[str]) -> SentenceBank:
    """`bank` with only the texts some other study of the bank splits wrote (the query studies' own
    sentences out), each text's count (the most-frequent baseline) over those studies' sentences."""
    rows = sentences.loc[~sentences["study_id"].isin(np.asarray(query_study_id))
                         & sentences["split"].isin(list(bank_splits)), "sentence"]
    counts = rows.value_counts()
    keep = pd.Index(counts.index).get_indexer(pd.Index(bank.texts)) >= 0
    return replace(bank, embeddings=bank.embeddings[keep], sentence_id=bank.sentence_id[keep],
                   texts=bank.texts[keep], labels=bank.labels[keep],
                   text_count=counts.reindex(bank.texts[keep]).to_numpy(np.int64))


def score_points(points: list[dict], queries: list[str], banks: list[str], shared: dict, settings: dict) -> dict:
    """experiment -> (its validation metrics, the queries file): `queries[i]`, `banks[i]` are
    `points[i]`'s; `shared`: the other `load_inputs` paths (labels, sentences, sections)."""
    from .evaluation import evaluate
    from .inputs import load_inputs

    if not (len(points) == len(queries) == len(banks)):
        from . import EvaluationInputError

        raise EvaluationInputError(
            f"{len(points)} sweep points but {len(queries)} validation query files and {len(banks)} banks")
    sentences = read_table(shared["sentences"], "sentences", ["study_id", "split", "sentence"])
    bank_splits = settings["evaluation"]["bank_splits"]
    out = {}
    for point, query_path, bank_path in progress(list(zip(points, queries, banks, strict=True)), "scoring sweep points", unit="point"):
        paths = {**shared, "queries": query_path, "bank": bank_path}
        inputs = load_inputs(paths, settings["evaluation"], settings["labels"], experiment=point["experiment"])
        bank = bank_without_query_studies(inputs.sentence_bank, sentences, inputs.queries.study_id, bank_splits)
        inputs = replace(inputs, sentence_bank=bank)
        out[point["experiment"]] = (evaluate(inputs, settings, labeller=None).metrics, query_path)
    return out
