"""Labels of query studies and of retrieved text.

- `study_label_rows(table, study_ids)`: each study's 14 labels from a study label table (blank if absent).
- `sentence_max_labels(sentence_labels, sentences)`: study labels as the original research code built them.
- `aggregate_sentence_labels(retrieved)`: the labels of joined sentences from their own labels (no text pass).
- `labels_by_text(texts, labeller)`: each distinct text labelled once by a labeller of texts.
- `default_labeller()`: the project's CheXpert labeller of texts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from txtrayalign.constants import OBSERVATIONS

from . import EvaluationInputError

Labeller = Callable[[list[str]], np.ndarray]


def study_label_rows(table: pd.DataFrame, study_id: np.ndarray) -> np.ndarray:
    """(N, 14) labels of each study from a study table; studies absent from it are all blank."""
    return (
        table.drop_duplicates("study_id")
        .set_index("study_id")
        .reindex(study_id)[list(OBSERVATIONS)]
        .to_numpy(np.float32)
    )


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
    """The project's CheXpert labeller of texts (`txtrayalign.chexpert.label_texts`)."""
    from txtrayalign.chexpert import label_texts

    return label_texts


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
