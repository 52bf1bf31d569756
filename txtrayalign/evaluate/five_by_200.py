"""CheXpert 5x200: five competition observations, 200 frontal images each (GLoRIA's and MedCLIP's set).

The set: among the query images, those with a frontal view (PA or AP, `view` starting with either;
an unknown view is not frontal) whose study is positive (label 1) for exactly one of the five
`FIVE_CLASSES` (the other four: 0, -1 or blank). Per class, `per_class` images are drawn without
replacement by `numpy.random.Generator(PCG64([seed, class position]))` from that class's eligible
images sorted by dicom_id, so one seed gives the same ids on every run and machine. A class with fewer
eligible images than `per_class` takes all of them; the count is recorded (`n_by_class`) and a warning
names the class. The ids are written beside the results (`five_by_200.csv`: dicom_id, observation).
A user's id list (`evaluation.five_by_200.ids`: a CSV with `dicom_id` and optionally `observation`)
gives exactly that set instead: every id must be a query image; without `observation` the class comes
from the labels (an id not positive for exactly one of the five is an error).

Metrics on the set (N images, each with its study's report as its text, so N texts):
- image -> text and text -> image precision@K (GLoRIA): share of the K retrieved texts (images) of the
  query's class; the query's own partner is among the candidates. Ties: lower index first.
  Random baseline, exact: (images of the query's class) / N, averaged over the queries.
- zero-shot accuracy (MedCLIP): an image is put in the class whose positive prompt is most similar
  (argmax over the five; equal scores: the earlier class); accuracy and per-class accuracy. Random: 1/5.
95% bootstrap intervals over the N images (texts resample with their images).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from txtrayalign.constants import OBSERVATIONS
from txtrayalign.errors import InputError

from .bootstrap import point_and_interval, resample_counts
from .retrieval import topk_similarity

log = logging.getLogger(__name__)

FIVE_CLASSES = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
FIVE_KS = (1, 5, 10)
FRONTAL_VIEWS = ("PA", "AP")


def is_frontal(views: Sequence[str]) -> np.ndarray:
    """(N,) bool: the view (DICOM ViewPosition) starts with PA or AP, upper-cased; unknown is not frontal."""
    return np.array([str(v).strip().upper().startswith(FRONTAL_VIEWS) for v in views], dtype=bool)


def five_class(labels: np.ndarray) -> np.ndarray:
    """(N,) position in `FIVE_CLASSES` of the one positive class among the five, -1 for none or several."""
    lab = np.asarray(labels, dtype=np.float64)[:, [OBSERVATIONS.index(c) for c in FIVE_CLASSES]] == 1
    return np.where(lab.sum(axis=1) == 1, lab.argmax(axis=1), -1)


def draw_five_by_200(
    dicom_id: Sequence[str], labels: np.ndarray, views: Sequence[str], per_class: int = 200, seed: int = 0
) -> pd.DataFrame:
    """The seeded draw (module docstring): `dicom_id`, `observation`, sorted by class then id."""
    ids = np.asarray(dicom_id, dtype=str)
    cls = np.where(is_frontal(views), five_class(labels), -1)
    parts = []
    for c, name in enumerate(FIVE_CLASSES):
        eligible = np.sort(ids[cls == c])
        if eligible.size < per_class:
            log.warning("5x200: %s has %d eligible frontal images, fewer than %d: all taken",
                        name, eligible.size, per_class)
            chosen = eligible
        else:
            rng = np.random.default_rng([int(seed), c])
            chosen = np.sort(eligible[rng.choice(eligible.size, size=per_class, replace=False)])
        parts.append(pd.DataFrame({"dicom_id": chosen, "observation": name}))
    return pd.concat(parts, ignore_index=True)


def read_five_by_200_ids(
    path: str | Path, dicom_id: Sequence[str], labels: np.ndarray, key: str = "evaluation.five_by_200.ids"
) -> pd.DataFrame:
    """A user's id list as `dicom_id`, `observation` (module docstring); errors name the key and file."""
    try:
        table = pd.read_csv(path, dtype=str)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise InputError(f"{key}: cannot read {path}: {e}") from None
    if "dicom_id" not in table.columns:
        raise InputError(f"{key}: {path} has no dicom_id column; found {list(table.columns)}")
    table = table.assign(dicom_id=table["dicom_id"].str.strip()).drop_duplicates("dicom_id")
    position = pd.Series(np.arange(len(dicom_id)), index=np.asarray(dicom_id, dtype=str))
    unknown = table.loc[~table["dicom_id"].isin(position.index), "dicom_id"]
    if len(unknown):
        raise InputError(f"{key}: {len(unknown)} ids of {path} are not query images (first: {list(unknown[:5])})")
    if "observation" in table.columns:
        bad = table.loc[~table["observation"].isin(FIVE_CLASSES), "observation"]
        if len(bad):
            raise InputError(f"{key}: {path}: observation {bad.iloc[0]!r} is not one of {FIVE_CLASSES}")
        return table[["dicom_id", "observation"]].reset_index(drop=True)
    cls = five_class(np.asarray(labels)[position.loc[table["dicom_id"]].to_numpy()])
    if (cls < 0).any():
        first = list(table["dicom_id"][cls < 0][:5])
        raise InputError(f"{key}: {int((cls < 0).sum())} ids of {path} are not positive for exactly one of "
                         f"{FIVE_CLASSES} (first: {first}); add an observation column")
    return pd.DataFrame({"dicom_id": table["dicom_id"].to_numpy(), "observation": np.asarray(FIVE_CLASSES)[cls]})


def class_precision_arrays(query_class: np.ndarray, candidate_class: np.ndarray, index: np.ndarray,
                           ks: Sequence[int], prefix: str) -> dict[str, np.ndarray]:
    """Per-query precision@K: share of the top K candidates whose class equals the query's."""
    same = np.asarray(candidate_class)[index] == np.asarray(query_class)[:, None]
    return {f"{prefix}precision@{k}": same[:, :k].mean(axis=1) for k in ks}


def mean_statistic(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Means over queries: every sum divided by the summed `n`."""
    n = sums["n"]
    with np.errstate(divide="ignore", invalid="ignore"):
        return {name: np.where(n > 0, v / np.where(n > 0, n, 1.0), np.nan) for name, v in sums.items() if name != "n"}


def five_by_200_evaluation(
    image_embeddings: np.ndarray,
    text_embeddings: np.ndarray,
    classes: Sequence[str],
    prompt_embeddings: np.ndarray,
    ks: Sequence[int] = FIVE_KS,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """metrics.json's `five_by_200` for the drawn set.

    Args:
        image_embeddings: (N, D) the set's images; text_embeddings: (N, D) each image's report.
        classes: (N,) each image's class, one of `FIVE_CLASSES`.
        prompt_embeddings: (5, D) the positive prompt of each class in `FIVE_CLASSES` order.
        n_boot, seed: bootstrap resamples of the images (stream (seed, 21)).
    """
    cls = np.array([FIVE_CLASSES.index(c) for c in classes], dtype=np.int64)
    n = cls.size
    if n == 0:
        raise InputError("evaluation.five_by_200: the set is empty: no eligible image among the queries")
    k_max = min(max(ks), n)
    ks = [k for k in ks if k <= k_max]
    _, i2t = topk_similarity(image_embeddings, text_embeddings, k_max)
    _, t2i = topk_similarity(text_embeddings, image_embeddings, k_max)
    prompt_scores = np.asarray(image_embeddings, dtype=np.float32) @ np.asarray(prompt_embeddings, dtype=np.float32).T
    predicted = prompt_scores.argmax(axis=1)
    arrays = {
        "n": np.ones(n),
        **class_precision_arrays(cls, cls, i2t, ks, "image_to_text_"),
        **class_precision_arrays(cls, cls, t2i, ks, "text_to_image_"),
        "zeroshot_accuracy": (predicted == cls).astype(np.float64),
    }
    counts = resample_counts(n, n_boot, [int(seed), 21]) if n_boot else None
    model = point_and_interval(arrays, mean_statistic, counts)
    share = np.bincount(cls, minlength=len(FIVE_CLASSES))[cls] / n
    random = {name: {"value": float(share.mean()), "ci_low": None, "ci_high": None} for name in model if "precision" in name}
    random["zeroshot_accuracy"] = {"value": 1.0 / len(FIVE_CLASSES), "ci_low": None, "ci_high": None}
    by_class = {}
    for c, name in enumerate(FIVE_CLASSES):
        mine = cls == c
        by_class[name] = {"n": int(mine.sum()),
                          "zeroshot_accuracy": float((predicted[mine] == c).mean()) if mine.any() else None}
    return {"n": int(n), "n_by_class": {k: v["n"] for k, v in by_class.items()},
            "settings": {"ks": [int(k) for k in ks], "classes": list(FIVE_CLASSES)},
            "model": model, "random": random, "by_class": by_class}
