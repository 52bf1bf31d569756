"""Text-similarity metrics of the retrieved sentences against the query study's report.

`original_bleu` is the BLEU the original research code reports, reproduced exactly:

- reference: the query study's report text with line breaks removed (``"\\n"`` and ``"\\r"`` deleted,
  not replaced, as the original's ``.replace("\\n", "")``), then every run of characters other than
  ASCII letters and digits replaced by one space, then split on whitespace. Case is kept.
- hypothesis: the k retrieved sentences joined with ``". "`` and split on whitespace, with NO
  cleaning: the separator's full stop and the sentences' own punctuation stay attached to their words
  (``"effusion."`` is not the reference's ``"effusion"``), exactly as the original scores it.
- score: NLTK's `nltk.translate.bleu_score.sentence_bleu` with one reference, weights (0.5, 0.5)
  (BLEU-2: geometric mean of the unigram and bigram modified precisions times the brevity penalty)
  and no smoothing, so a hypothesis without a matching bigram scores 0 (NLTK's warning about it is
  silenced). No NLTK data download is needed.

The mean is taken over the queries the hit metrics keep (`metrics.hit_arrays`' ``kept``); the
per-query arrays (``bleu`` = score where kept, else 0, and ``kept``) bootstrap like every other mean.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence

import numpy as np

_NON_ALNUM = re.compile(r"[^0-9a-zA-Z]+")
BLEU_WEIGHTS = (0.5, 0.5)


def clean_reference(report: str) -> list[str]:
    """The original's reference tokens: line breaks removed, non-alphanumerics to spaces, split."""
    text = str(report).replace("\r", "").replace("\n", "")
    return _NON_ALNUM.sub(" ", text).split()


def hypothesis_tokens(sentences: Sequence[str]) -> list[str]:
    """The original's hypothesis tokens: the sentences joined with ". " and split on whitespace."""
    return ". ".join(str(s) for s in sentences).split()


def original_bleu(report: str, sentences: Sequence[str]) -> float:
    """The original's BLEU of retrieved `sentences` against the query's `report` (module docstring)."""
    from nltk.translate.bleu_score import sentence_bleu

    reference, hypothesis = clean_reference(report), hypothesis_tokens(sentences)
    if not reference or not hypothesis:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "0 counts of 2-gram overlaps": the score is 0
        return float(sentence_bleu([reference], hypothesis, weights=BLEU_WEIGHTS))


def bleu_arrays(
    reports: Sequence[str], retrieved_texts: np.ndarray, kept: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-query arrays for the bootstrap: `retrieved_texts` (N, k) of sentences, `kept` (N,) 0/1.

    Each distinct (report, sentences) pair is scored once (the most-frequent baseline retrieves the
    same sentences for every query; repeated query images share their study's report).
    """
    kept = np.asarray(kept, dtype=np.float64)
    scores = np.zeros(kept.shape[0])
    cache: dict[tuple[str, tuple[str, ...]], float] = {}
    for i in np.nonzero(kept > 0)[0]:
        key = (str(reports[i]), tuple(str(s) for s in retrieved_texts[i]))
        if key not in cache:
            cache[key] = original_bleu(*key)
        scores[i] = cache[key]
    return {"bleu": scores, "kept": kept}


def bleu_statistic(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Mean BLEU over kept queries (NaN when none is kept)."""
    kept = sums["kept"]
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"bleu": np.where(kept > 0, sums["bleu"] / np.where(kept > 0, kept, 1.0), np.nan)}
