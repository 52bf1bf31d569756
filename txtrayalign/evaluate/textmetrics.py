"""Text metrics of retrieved text against the query's own report: the original's BLEU, BLEU-1..4, ROUGE-L, BERTScore.

Two families, on well-kept libraries (NLTK, rouge-score, bert-score). The n-grams are NLTK's; what is
written here is the vectorised arithmetic over them that NLTK does per sentence (clipping, brevity
penalty, smoothing), so that a bootstrap resample is a weighted sum, tested equal to NLTK's values:

1. The original research code's BLEU (`original_bleu`, `bleu_arrays`, `bleu_statistic`), per k, over
   the retrieved sentences against the query's whole report (`train_text`):
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

2. The report-generation literature's metrics (`text_metrics`: `corpus_bleu_arrays`,
   `corpus_bleu_statistic`, `rouge_l`, `bertscore_f1`), at the summary k and for report-level retrieval,
   against the query's own reference section (impression by default):

   - Tokens (BLEU): lower-cased, nltk's `wordpunct_tokenize` (regular expressions, no downloaded data),
     punctuation-only tokens dropped, as the captioning evaluation (pycocoevalcap's PTB tokenizer) does.
   - BLEU-n: corpus BLEU (Papineni et al.), the number the report-generation literature reports. The n-gram
     matches are counted by nltk (`modified_precision`, `closest_ref_length`); corpus BLEU is a function of
     their sums over queries (clipped matches and n-gram totals per order, hypothesis and reference
     lengths), so each bootstrap resample is a weighted sum (`bootstrap.point_and_interval`) and the value
     on all queries equals `nltk.translate.bleu_score.corpus_bleu` with `SmoothingFunction().method1`
     (a zero match count becomes 0.1; tested).
   - ROUGE-L: the mean over queries of `rouge_score`'s ROUGE-L F-measure (its own tokenizer, no stemming;
     the longest common subsequence from rapidfuzz, the same value, tested).
   - BERTScore: the mean F1 of `bert_score.score` when the package is installed and its model is a local
     folder (`model=`; config `evaluation.text_metrics.bertscore_model`), else reported absent with the reason.

   Queries without a reference (`valid` False) are left out of every metric. Intervals: percentile
   bootstrap over queries with the resample counts shared with the other metrics.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from txtrayalign.evaluate.bootstrap import interval_cell, point_and_interval, resample_counts

log = logging.getLogger(__name__)


# --- the original research code's BLEU ------------------------------------------------------------

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
    """The original's BLEU per query for the bootstrap: `retrieved_texts` (N, k) of sentences, `kept` (N,) 0/1.

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


# --- BLEU-1..4, ROUGE-L, BERTScore --------------------------------------------------------------

MAX_N = 4
SMOOTHING_EPSILON = 0.1  # nltk SmoothingFunction().method1's default
_WORDS = None  # regex.compile(r"\w+"), compiled on first use


def tokenize(text: str) -> list[str]:
    r"""Lower-cased word tokens of `text`: nltk's `wordpunct_tokenize` with punctuation-only tokens dropped.

    wordpunct splits on `\w+|[^\w\s]+` (with the `regex` module); its punctuation runs hold no word
    character, so what is left is exactly the `\w+` runs, found here with the same `regex` module
    directly (nltk's wrapper around it costs 3x; the same tokens, tested, Unicode included)."""
    global _WORDS
    if _WORDS is None:
        import regex

        _WORDS = regex.compile(r"\w+")
    return _WORDS.findall(str(text).lower())


class TextCache:
    """Tokens and n-gram counts of each distinct text, computed once and shared by every `text_metrics` call
    of one evaluation (the references are the same for every method; retrieved texts repeat)."""

    def __init__(self) -> None:
        self.bleu: dict[str, list[str]] = {}
        self.rouge: dict[str, list[str]] = {}
        self.ngrams: dict[tuple[str, int], np.ndarray] = {}
        self.vocab: dict[tuple[str, ...], int] = {}  # n-gram -> id
        self._rouge_tokenizer = None

    def bleu_tokens(self, text: str) -> list[str]:
        if text not in self.bleu:
            self.bleu[text] = tokenize(text)
        return self.bleu[text]

    def ngram_ids(self, text: str, n: int) -> np.ndarray:
        """Ids of nltk's n-grams (`nltk.util.ngrams`) of the text's BLEU tokens, one per occurrence."""
        key = (text, n)
        if key not in self.ngrams:
            from nltk.util import ngrams

            vocab = self.vocab
            self.ngrams[key] = np.fromiter(
                (vocab.setdefault(g, len(vocab)) for g in ngrams(self.bleu_tokens(text), n)), dtype=np.int64
            )
        return self.ngrams[key]

    def rouge_tokens(self, text: str) -> list[str]:
        """rouge-score's own tokens (its default tokenizer, no stemming)."""
        if text not in self.rouge:
            if self._rouge_tokenizer is None:
                from rouge_score import tokenizers

                self._rouge_tokenizer = tokenizers.DefaultTokenizer(use_stemmer=False)
            self.rouge[text] = self._rouge_tokenizer.tokenize(text)
        return self.rouge[text]


def _count_matrix(rows: list[np.ndarray], width: int):
    """(N, width) sparse counts: row q counts the ids of rows[q]."""
    from scipy.sparse import csr_matrix

    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([r.size for r in rows], out=indptr[1:])
    ids = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    m = csr_matrix((np.ones(ids.size), ids, indptr), shape=(len(rows), width))
    m.sum_duplicates()
    return m


def corpus_bleu_arrays(
    hypotheses: Sequence[str], references: Sequence[str], max_n: int = MAX_N, cache: TextCache | None = None
) -> dict[str, np.ndarray]:
    """Per-query BLEU counts (N,): `match_n`, `total_n` for n = 1..max_n, `hyp_len`, `ref_len`.

    As nltk's `modified_precision` with one reference: `match_n` = the hypothesis' n-gram counts clipped by
    the reference's, `total_n` = max(1, number of hypothesis n-grams). The n-grams are nltk's
    (`nltk.util.ngrams`), listed once per distinct text (`cache`); the clipping is the element-wise
    minimum of two sparse count matrices (scipy), all queries at once. Equal to nltk's values (tested)."""
    cache = cache or TextCache()
    n = len(hypotheses)
    out: dict[str, np.ndarray] = {}
    for i in range(1, max_n + 1):
        h_rows = [cache.ngram_ids(h, i) for h in hypotheses]
        r_rows = [cache.ngram_ids(r, i) for r in references]
        width = len(cache.vocab)
        h, r = _count_matrix(h_rows, width), _count_matrix(r_rows, width)
        out[f"match_{i}"] = np.asarray(h.minimum(r).sum(axis=1), dtype=np.float64).reshape(n)
        out[f"total_{i}"] = np.maximum(1.0, np.fromiter((x.size for x in h_rows), dtype=np.float64, count=n))
    out["hyp_len"] = np.fromiter((len(cache.bleu_tokens(h)) for h in hypotheses), dtype=np.float64, count=n)
    # one reference: nltk's closest reference length is its length
    out["ref_len"] = np.fromiter((len(cache.bleu_tokens(r)) for r in references), dtype=np.float64, count=n)
    return out


def corpus_bleu_statistic(sums: dict[str, np.ndarray], max_n: int = MAX_N) -> dict[str, np.ndarray]:
    """Corpus BLEU-1..max_n from summed counts (leading axis: resamples), as nltk's corpus_bleu + method1."""
    hyp, ref = sums["hyp_len"], sums["ref_len"]
    with np.errstate(divide="ignore", invalid="ignore"):
        bp = np.where(hyp > ref, 1.0, np.where(hyp > 0, np.exp(1.0 - ref / np.where(hyp > 0, hyp, 1.0)), 0.0))
        logp = []
        for i in range(1, max_n + 1):
            m, t = sums[f"match_{i}"], sums[f"total_{i}"]
            logp.append(np.log(np.where(m > 0, m, SMOOTHING_EPSILON) / t))
    out = {}
    for n in range(1, max_n + 1):
        with np.errstate(invalid="ignore", over="ignore"):  # a resample without a reference: NaN, left out
            value = bp * np.exp(np.mean(logp[:n], axis=0))
        out[f"bleu{n}"] = np.where(sums["match_1"] > 0, value, 0.0)  # no unigram match: BLEU 0 (nltk)
    return out


def rouge_l(hypotheses: Sequence[str], references: Sequence[str], cache: TextCache | None = None) -> np.ndarray:
    """(N,) ROUGE-L F-measure of each hypothesis against its reference, as rouge-score computes it.

    Tokens: rouge-score's own tokenizer (no stemming). The longest common subsequence of the two token
    lists comes from rapidfuzz's `LCSseq` (C++; rouge-score's own table is pure Python, 8x slower);
    P = LCS / hypothesis tokens, R = LCS / reference tokens, F = 2PR / (P + R), 0 when either text has no
    token — rouge-score's `RougeScorer(["rougeL"]).score(reference, hypothesis).fmeasure` (tested)."""
    from rapidfuzz.distance import LCSseq

    cache = cache or TextCache()
    out = np.zeros(len(hypotheses))
    for q, (hyp, ref) in enumerate(zip(hypotheses, references, strict=True)):
        h, r = cache.rouge_tokens(hyp), cache.rouge_tokens(ref)
        if not h or not r:
            continue
        lcs = LCSseq.similarity(h, r)
        p, rec = lcs / len(h), lcs / len(r)
        out[q] = 2 * p * rec / (p + rec) if p + rec > 0 else 0.0
    return out


def bertscore_model_problem(model: str | Path | None) -> str | None:
    """Why BERTScore cannot run (None when it can): package missing, no model folder given or not there."""
    if not model:
        return "no local BERTScore model folder given (evaluation.text_metrics.bertscore_model)"
    if not Path(model).is_dir():
        return f"BERTScore model folder not found: {model}"
    import importlib.util

    if importlib.util.find_spec("bert_score") is None:
        return "package bert-score not installed (pip install 'txtrayalign[bertscore]')"
    return None


def bertscore_f1(
    hypotheses: Sequence[str],
    references: Sequence[str],
    model: str | Path,
    num_layers: int | None = None,
    batch_size: int = 64,
    device: str | None = None,
) -> np.ndarray:
    """(N,) BERTScore F1 of each hypothesis against its reference, with the model of a local folder.

    `num_layers`: the layer whose embeddings are compared; default bert-score's own choice for a model of
    the folder's name (e.g. 17 for `roberta-large`), else the model's last layer.
    """
    import json

    try:
        from bert_score import score
        from bert_score.utils import model2layers
    except ImportError as exc:  # the optional extra txtrayalign[bertscore]
        raise ImportError("package bert-score not installed (pip install 'txtrayalign[bertscore]')") from exc

    folder = Path(model)
    if num_layers is None:
        num_layers = model2layers.get(folder.name)
    if num_layers is None:
        config = folder / "config.json"
        num_layers = int(json.loads(config.read_text())["num_hidden_layers"]) if config.is_file() else None
        log.info("BERTScore: %s is not a model bert-score knows; using its last layer (%s)", folder, num_layers)
    _, _, f1 = score(
        list(hypotheses), list(references), model_type=str(folder), num_layers=num_layers,
        batch_size=batch_size, device=device, verbose=False,
    )
    return f1.double().cpu().numpy()


def _mean_statistic(names: Sequence[str]):
    def statistic(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore"):
            return {name: sums[name] / sums["valid"] for name in names}

    return statistic


def text_metrics(
    hypotheses: Sequence[str],
    references: Sequence[str],
    valid: np.ndarray | None = None,
    counts: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int | Sequence[int] = 0,
    alpha: float = 0.05,
    bertscore_model: str | Path | None = None,
    bertscore_layers: int | None = None,
    device: str | None = None,
    cache: TextCache | None = None,
) -> dict[str, dict]:
    """BLEU-1..4, ROUGE-L and (when possible) BERTScore F1 of `hypotheses` against `references`, with intervals.

    Args:
        hypotheses, references: one retrieved text and one reference text per query.
        valid: (N,) bool, the queries that have a reference (default: reference not empty).
        counts: (B, N) resample counts shared with the other metrics; None: drawn from n_boot / seed
            (n_boot=0: no intervals).
        bertscore_model: local folder of the BERTScore model; without it (or without bert-score) the
            `bertscore_f1` entry is `{"value": None, ..., "absent": reason}`.

    Returns:
        {"bleu1".."bleu4", "rouge_l", "bertscore_f1": {"value", "ci_low", "ci_high"[, "absent"]}, "n": {...}}.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    n = len(references)
    if valid is None:
        valid = np.array([bool(str(r).strip()) for r in references])
    valid = np.asarray(valid, dtype=bool)
    if counts is None and n_boot > 0 and n > 0:
        counts = resample_counts(n, n_boot, seed)
    keep = valid.astype(np.float64)
    hyps = [h if v else "" for h, v in zip(hypotheses, valid, strict=True)]
    refs = [r if v else "" for r, v in zip(references, valid, strict=True)]
    cache = cache or TextCache()
    bleu = {k: v * keep for k, v in corpus_bleu_arrays(hyps, refs, cache=cache).items()}
    result = point_and_interval(bleu, corpus_bleu_statistic, counts, alpha)
    per_query = {"valid": keep, "rouge_l": rouge_l(hyps, refs, cache) * keep}
    problem = bertscore_model_problem(bertscore_model)
    if problem is None:
        rows = np.flatnonzero(valid)
        f1 = np.zeros(n)
        if rows.size:
            f1[rows] = bertscore_f1([hyps[i] for i in rows], [refs[i] for i in rows], bertscore_model,
                                    bertscore_layers, device=device)
        per_query["bertscore_f1"] = f1
    result.update(point_and_interval(per_query, _mean_statistic([k for k in per_query if k != "valid"]), counts, alpha))
    if problem is not None:
        log.info("BERTScore absent: %s", problem)
        result["bertscore_f1"] = {"value": None, "ci_low": None, "ci_high": None, "absent": problem}
    result["n"] = {"queries": n, "with_reference": int(valid.sum())}
    return result


METRIC_NAMES = ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "bertscore_f1")


def to_markdown(results: dict[str, dict], digits: int = 3) -> str:
    """summary.md section: one row per method (model, baselines), one column per metric, `value [low, high]`."""
    lines = ["| method | " + " | ".join(METRIC_NAMES) + " |", "|---|" + "---|" * len(METRIC_NAMES)]
    absent = set()
    for method, result in results.items():
        cells = []
        for name in METRIC_NAMES:
            entry = result[name]
            if entry.get("absent"):
                cells.append("absent")
                absent.add(entry["absent"])
            else:
                cells.append(interval_cell(entry["value"], entry["ci_low"], entry["ci_high"], digits))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += [f"\nBERTScore absent: {why}" for why in sorted(absent)]
    return "\n".join(lines) + "\n"
