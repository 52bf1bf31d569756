"""Text-to-image retrieval: reports, sentences or class prompts as queries over the query images.

Three query kinds, each retrieving among all query images:

- `report`: each query study's report (the report bank of exact-pair retrieval, `train_text`);
  its classes are its study's labels.
- `sentence`: sentences of the sentence bank (at most `max_sentences`, drawn with the seed from the
  id-sorted bank); its classes are the sentence's own labels.
- `prompt`: one positive class prompt per observation (the zero-shot prompts' positive half); its
  class is that observation.

Label-conditioned precision@K (ConVIRT, GLoRIA, MGCA): the share of the K retrieved images that are
positive (label 1) for at least one of the query's classes, its positive (1) observations; uncertain
and blank are not positive, neither in the query nor in the image. A query without any positive
observation is left out (`kept` counts those kept). Ties between images: lower image index first
(`retrieval.topk_similarity`). Random baseline, exact: a uniform draw of K images has expected
precision (relevant images) / (all images), whatever K, averaged over the kept queries.

Exact-pair recall of report and sentence queries (their partners: the images of their study) is
`exact_pair.partner_ranks`; sentences of studies without query images are `missing` there.
Report and sentence queries get 95% bootstrap intervals over the queries; the 14 prompts do not (too
few queries): their precision is listed per observation, and their mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from txtrayalign.constants import OBSERVATIONS

from .bootstrap import point_and_interval, resample_counts
from .exact_pair import direction_result, partner_counts, partner_ranks
from .retrieval import topk_similarity

TEXT_TO_IMAGE_KS = (1, 5, 10)


def positive(labels: np.ndarray) -> np.ndarray:
    """(N, 14) bool: label == 1 (uncertain -1, negative 0 and blank NaN are not positive)."""
    return np.asarray(labels, dtype=np.float64) == 1


def relevance(query_classes: np.ndarray, image_classes: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(Q, K) bool: retrieved image index[q, j] is positive for at least one class of query q."""
    q = np.asarray(query_classes, dtype=bool)
    img = np.asarray(image_classes, dtype=bool)
    return (img[np.asarray(index)] & q[:, None, :]).any(axis=2)


def precision_arrays(relevant: np.ndarray, kept: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-query precision@K (0 for queries not kept) and `kept`, for `point_and_interval`."""
    kept = np.asarray(kept, dtype=bool)
    out = {"kept": kept.astype(np.float64)}
    for k in ks:
        out[f"precision@{k}"] = np.where(kept, relevant[:, :k].mean(axis=1), 0.0)
    return out


def precision_statistic(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    kept = sums["kept"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {n: np.where(kept > 0, v / np.where(kept > 0, kept, 1.0), np.nan) for n, v in sums.items() if n != "kept"}
    out["kept"] = kept.astype(np.float64)
    return out


def random_precision(query_classes: np.ndarray, image_classes: np.ndarray, ks: Sequence[int]) -> dict:
    """Expected precision@K of K images drawn uniformly: mean over kept queries of relevant / all images."""
    q = np.asarray(query_classes, dtype=bool)
    img = np.asarray(image_classes, dtype=np.float64)
    kept = q.any(axis=1)
    share = ((img @ q.T.astype(np.float64)) > 0).mean(axis=0)  # (Q,) share of relevant images
    value = float(share[kept].mean()) if kept.any() else None
    return {f"precision@{k}": {"value": value, "ci_low": None, "ci_high": None} for k in ks}


def label_precision(
    query_embeddings: np.ndarray,
    query_classes: np.ndarray,
    image_embeddings: np.ndarray,
    image_classes: np.ndarray,
    ks: Sequence[int] = TEXT_TO_IMAGE_KS,
    counts: np.ndarray | None = None,
) -> dict:
    """Label-conditioned precision@K of the model (intervals from `counts` over queries) and of random."""
    k_max = min(max(ks), np.shape(image_embeddings)[0])
    ks = [k for k in ks if k <= k_max]
    _, index = topk_similarity(query_embeddings, image_embeddings, k_max)
    q = np.asarray(query_classes, dtype=bool)
    kept = q.any(axis=1)
    arrays = precision_arrays(relevance(q, image_classes, index), kept, ks)
    return {
        "n_queries": int(q.shape[0]),
        "kept": int(kept.sum()),
        "model": point_and_interval(arrays, precision_statistic, counts),
        "random": random_precision(q, image_classes, ks),
        "index": index,
    }


def prompt_precision(
    prompt_embeddings: np.ndarray, image_embeddings: np.ndarray, image_classes: np.ndarray,
    ks: Sequence[int] = TEXT_TO_IMAGE_KS,
) -> dict:
    """Precision@K of each observation's positive prompt (14, D) and their mean over observations with
    at least one positive image; the random baseline beside."""
    classes = np.eye(len(OBSERVATIONS), dtype=bool)
    img = np.asarray(image_classes, dtype=bool)
    _, index = topk_similarity(prompt_embeddings, image_embeddings, min(max(ks), img.shape[0]))
    relevant = relevance(classes, img, index)
    has_positive = img.any(axis=0)
    per_obs = {}
    for j, name in enumerate(OBSERVATIONS):
        per_obs[name] = {
            "n_positive_images": int(img[:, j].sum()),
            **{f"precision@{k}": float(relevant[j, :k].mean()) if has_positive[j] else None
               for k in ks if k <= relevant.shape[1]},
        }
    ks_done = [k for k in ks if k <= relevant.shape[1]]
    mean = {f"precision@{k}": float(relevant[has_positive, :k].mean()) if has_positive.any() else None for k in ks_done}
    random = {f"precision@{k}": float(img[:, has_positive].mean(axis=0).mean()) if has_positive.any() else None
              for k in ks_done}
    return {"n_queries": len(OBSERVATIONS), "by_observation": per_obs,
            "model": {n: {"value": v, "ci_low": None, "ci_high": None} for n, v in mean.items()},
            "random": {n: {"value": v, "ci_low": None, "ci_high": None} for n, v in random.items()}}


def sample_rows(ids: np.ndarray, limit: int | None, seed: int | Sequence[int]) -> np.ndarray:
    """Row positions of at most `limit` ids, drawn with `seed` from the id-sorted list (all when None)."""
    ids = np.asarray(ids)
    order = np.argsort(ids, kind="stable")
    if limit is None or limit >= ids.size:
        return order
    chosen = np.random.default_rng(seed).choice(ids.size, size=limit, replace=False)
    return np.sort(order[chosen])


def text_query_result(
    text_embeddings: np.ndarray,
    text_labels: np.ndarray,
    text_study_id: np.ndarray,
    image_embeddings: np.ndarray,
    image_study_id: np.ndarray,
    image_labels: np.ndarray,
    ks: Sequence[int],
    counts: np.ndarray | None,
) -> dict:
    """One text query kind (reports or sentences): label-conditioned precision and exact-pair recall."""
    result = label_precision(text_embeddings, positive(text_labels), image_embeddings, positive(image_labels), ks, counts)
    result.pop("index")
    ranks = partner_ranks(text_embeddings, image_embeddings, text_study_id, image_study_id)
    result["exact_pair"] = direction_result(
        ranks, partner_counts(text_study_id, image_study_id), len(image_study_id), counts, ks
    )
    return result


def text_to_image_evaluation(
    image_embeddings: np.ndarray,
    image_study_id: np.ndarray,
    image_labels: np.ndarray,
    report_embeddings: np.ndarray | None = None,
    report_study_id: np.ndarray | None = None,
    report_labels: np.ndarray | None = None,
    sentence_embeddings: np.ndarray | None = None,
    sentence_id: np.ndarray | None = None,
    sentence_study_id: np.ndarray | None = None,
    sentence_labels: np.ndarray | None = None,
    prompt_embeddings: np.ndarray | None = None,
    ks: Sequence[int] = TEXT_TO_IMAGE_KS,
    max_sentences: int | None = 5000,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """metrics.json's `text_to_image`: one entry per query kind given (`report`, `sentence`, `prompt`).

    `prompt_embeddings`: (14, D), the positive prompt of each observation in `OBSERVATIONS` order.
    Bootstrap: `n_boot` resamples of each kind's queries, streams (seed, 11) and (seed, 12).
    """
    out: dict = {"settings": {"ks": [int(k) for k in ks], "positive": "label 1", "max_sentences": max_sentences}}
    img_args = (image_embeddings, image_study_id, image_labels)

    def counts_for(n: int, stream: int):
        return resample_counts(n, n_boot, [int(seed), stream]) if n_boot and n else None

    if report_embeddings is not None and len(report_embeddings):
        out["report"] = text_query_result(report_embeddings, report_labels, report_study_id, *img_args, ks,
                                          counts_for(len(report_embeddings), 11))
    if sentence_embeddings is not None and len(sentence_embeddings):
        rows = sample_rows(sentence_id, max_sentences, [int(seed), 13])
        out["sentence"] = text_query_result(
            np.asarray(sentence_embeddings)[rows], np.asarray(sentence_labels)[rows],
            np.asarray(sentence_study_id)[rows], *img_args, ks, counts_for(rows.size, 12),
        )
        out["sentence"]["n_bank"] = int(len(sentence_embeddings))
    if prompt_embeddings is not None:
        out["prompt"] = prompt_precision(prompt_embeddings, image_embeddings, positive(image_labels), ks)
    return out
