"""Report-level retrieval (CXR-RePaiR): a bank of whole report sections beside the sentence bank.

- `report_bank(sections, section, study_ids)`: one row per study of the bank splits whose `section`
  (a column of `text/sections.parquet`: `impression` by default, or `findings`, `label_text`,
  `train_text`, ...) is not empty; with `dedupe`, one row per exact text (lowest study_id kept) and
  `text_count`, how many studies share it.
- `retrieve_reports(queries, bank_embeddings, k)`: the top-k bank reports per query image, by the
  exact chunked search of `retrieval.topk_similarity`; with study ids given, a query's own study is
  never retrieved (it can only be in the bank when the bank splits include the query split).
- `retrieved_texts(bank, index)`: the text of each query's top-1 report (or its top-k joined), and
  `joined_sentences(texts, index, k)`: the top-k retrieved sentences as one report, as CXR-RePaiR
  composes a report from sentences — both ready for the text metrics and for labelling.
- `reference_texts(sections, study_ids, section)`: each query's own section, the reference of the
  text metrics, with a mask of the studies that have one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from txtrayalign.evaluate import EvaluationInputError
from txtrayalign.evaluate.retrieval import topk_similarity

log = logging.getLogger(__name__)

DEFAULT_SECTION = "impression"


def _section_column(sections: pd.DataFrame, section: str, where: str) -> pd.Series:
    if section not in sections.columns:
        candidates = [c for c in sections.columns if c not in ("subject_id", "study_id")]
        raise EvaluationInputError(f"{where}: no section column {section!r}; found {candidates}")
    return sections[section]


def _has_text(values: pd.Series) -> pd.Series:
    return values.notna() & (values.astype(str).str.strip() != "")


def report_bank(
    sections: pd.DataFrame,
    section: str = DEFAULT_SECTION,
    study_ids: Sequence[int] | None = None,
    dedupe: bool = True,
    where: str = "text/sections.parquet",
) -> pd.DataFrame:
    """The report bank: `study_id`, `text`, `text_count`, ordered by study_id.

    Args:
        sections: the sections table (`study_id` and one column per section).
        section: which column is a report of the bank.
        study_ids: the studies of the bank splits (None: every study of `sections`).
        dedupe: keep one row per exact text (the lowest study_id); retrieval of a text is unchanged since
            identical texts have identical embeddings and ties go to the lower index.
        where: the file name used in error messages.
    """
    if "study_id" not in sections.columns:
        raise EvaluationInputError(f"{where}: missing column 'study_id'; found {list(sections.columns)}")
    texts = _section_column(sections, section, where)
    df = pd.DataFrame({"study_id": sections["study_id"].to_numpy(), "text": texts.to_numpy()})
    if study_ids is not None:
        df = df.loc[df["study_id"].isin(set(study_ids))]
    df = df.drop_duplicates("study_id").sort_values("study_id", kind="stable")
    keep = _has_text(df["text"])
    if (~keep).any():
        log.info("report bank: %d of %d studies have no %s text: left out", int((~keep).sum()), len(df), section)
    df = df.loc[keep].assign(text=lambda d: d["text"].astype(str))
    df["text_count"] = df.groupby("text", sort=False)["study_id"].transform("size").to_numpy()
    if dedupe:
        df = df.drop_duplicates("text", keep="first")
    df = df.reset_index(drop=True)
    if df.empty:
        raise EvaluationInputError(f"{where}: empty report bank: no study of the bank splits has {section!r} text")
    log.info("report bank: %d %s reports (%d studies)", len(df), section, int(df["text_count"].sum()))
    return df


def retrieve_reports(
    queries: np.ndarray,
    bank_embeddings: np.ndarray,
    k: int = 1,
    query_study_ids: Sequence[int] | None = None,
    bank_study_ids: Sequence[int] | None = None,
    **chunks,
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, index) (N, k) of the best bank reports per query image, best first.

    With `query_study_ids` and `bank_study_ids`, a query's own study is skipped (one extra candidate is
    retrieved where the two sets overlap). `chunks`: `query_chunk` / `key_chunk` of `topk_similarity`.
    """
    m = np.shape(bank_embeddings)[0]
    if not 1 <= k <= m:
        raise EvaluationInputError(f"report retrieval: k={k} must be between 1 and the bank size ({m})")
    if query_study_ids is None or bank_study_ids is None:
        return topk_similarity(queries, bank_embeddings, k, **chunks)
    q_ids = np.asarray(query_study_ids)
    b_ids = np.asarray(bank_study_ids)
    if not np.isin(q_ids, b_ids).any():
        return topk_similarity(queries, bank_embeddings, k, **chunks)
    if k + 1 > m:
        raise EvaluationInputError(f"report retrieval: k={k} needs {k + 1} reports when the bank holds the queries'")
    scores, index = topk_similarity(queries, bank_embeddings, k + 1, **chunks)
    own = b_ids[index] == q_ids[:, None]
    # drop the own study where it was retrieved, else the last (k+1-th) candidate
    drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones_like(own)
    keep[np.arange(len(drop)), drop] = False
    return scores[keep].reshape(-1, k), index[keep].reshape(-1, k)


def retrieved_texts(bank: pd.DataFrame, index: np.ndarray, k: int = 1, sep: str = " ") -> list[str]:
    """Text of each query's retrieved report(s): the top-1 report, or the top-k joined by `sep`."""
    texts = bank["text"].to_numpy()
    return [sep.join(texts[row[:k]]) for row in np.asarray(index)]


def joined_sentences(sentences: Sequence[str], index: np.ndarray, k: int, sep: str = " ") -> list[str]:
    """The top-k retrieved sentences of each query as one report (CXR-RePaiR's composed report)."""
    index = np.asarray(index)
    if k > index.shape[1]:
        raise EvaluationInputError(f"joined_sentences: k={k} but only {index.shape[1]} sentences were retrieved")
    texts = np.asarray(sentences, dtype=object)
    return [sep.join(texts[row[:k]]) for row in index]


def reference_texts(
    sections: pd.DataFrame, study_ids: Sequence[int], section: str = DEFAULT_SECTION,
    where: str = "text/sections.parquet",
) -> tuple[list[str], np.ndarray]:
    """Each query study's own `section` text ("" where missing) and a boolean mask of those that have one."""
    column = _section_column(sections, section, where)
    by_study = pd.Series(column.to_numpy(), index=sections["study_id"].to_numpy())
    by_study = by_study[~by_study.index.duplicated()]
    texts = by_study.reindex(list(study_ids))
    has = _has_text(texts).to_numpy()
    return [str(t) if h else "" for t, h in zip(texts.to_numpy(), has, strict=True)], has
