"""Text-to-image retrieval: label-conditioned precision@K by hand, its exact random baseline, prompts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from txtrayalign.constants import OBSERVATIONS
from txtrayalign.evaluate import text_to_image

EDEMA, EFFUSION = OBSERVATIONS.index("Edema"), OBSERVATIONS.index("Pleural Effusion")


def labels(rows: list[dict[int, float]]) -> np.ndarray:
    out = np.full((len(rows), len(OBSERVATIONS)), np.nan)
    for i, row in enumerate(rows):
        for j, v in row.items():
            out[i, j] = v
    return out


# Four images along the x axis direction by score: image 0 most similar to the query [1, 0].
IMAGES = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
IMAGE_LABELS = labels([{EDEMA: 1}, {EDEMA: -1}, {EFFUSION: 1, EDEMA: 0}, {EDEMA: 1}])
IMAGE_STUDY = np.array([1, 2, 3, 4])


def test_precision_by_hand() -> None:
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    query_labels = labels([{EDEMA: 1}, {EDEMA: 1, EFFUSION: 1}, {EDEMA: -1}])  # the last: no positive
    got = text_to_image.label_precision(queries, text_to_image.positive(query_labels), IMAGES,
                                        text_to_image.positive(IMAGE_LABELS), ks=(1, 2, 3))
    # query 0 retrieves 0, 1, 2: edema positive only image 0 (image 1 uncertain) -> 1, 1/2, 1/3
    # query 1 retrieves 3, 2, 1: 3 edema, 2 effusion -> 1, 1, 2/3; query 2 has no positive: left out
    assert got["kept"] == 2
    assert got["model"]["precision@1"]["value"] == pytest.approx(1.0)
    assert got["model"]["precision@2"]["value"] == pytest.approx((1 / 2 + 1) / 2)
    assert got["model"]["precision@3"]["value"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    # random: query 0 has 2 relevant of 4, query 1 three of 4
    assert got["random"]["precision@1"]["value"] == pytest.approx((2 / 4 + 3 / 4) / 2)


def test_random_precision_is_the_mean_over_all_draws() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((6, len(OBSERVATIONS))) < 0.3
    q = rng.random((3, len(OBSERVATIONS))) < 0.2
    q[0] = False  # not kept
    q[1, 0] = True
    got = text_to_image.random_precision(q, img, ks=(2,))["precision@2"]["value"]
    kept = [i for i in range(3) if q[i].any()]
    draws = list(itertools.combinations(range(6), 2))
    want = np.mean([np.mean([(img[list(d)] & q[i]).any(axis=1).mean() for d in draws]) for i in kept])
    assert got == pytest.approx(want)


def test_prompts_per_observation() -> None:
    prompts = np.zeros((len(OBSERVATIONS), 2))
    prompts[:, 0] = 1.0  # every prompt nearest image 0
    prompts[EFFUSION] = [0.6, 0.8]  # nearest image 2
    got = text_to_image.prompt_precision(prompts, IMAGES, text_to_image.positive(IMAGE_LABELS), ks=(1, 2))
    assert got["by_observation"]["Edema"]["precision@1"] == pytest.approx(1.0)  # image 0
    assert got["by_observation"]["Edema"]["precision@2"] == pytest.approx(0.5)  # images 0, 1 (uncertain)
    assert got["by_observation"]["Pleural Effusion"]["precision@2"] == pytest.approx(0.5)  # images 2, 1 or 3
    assert got["by_observation"]["Atelectasis"]["precision@1"] is None  # no positive image
    assert got["model"]["precision@1"]["value"] == pytest.approx(1.0)  # mean over Edema, Effusion
    assert got["random"]["precision@1"]["value"] == pytest.approx((2 / 4 + 1 / 4) / 2)


def test_sample_rows_is_stable_and_sorted() -> None:
    ids = np.array([50, 10, 40, 20, 30, 60])
    rows = text_to_image.sample_rows(ids, 3, [0, 13])
    reversed_rows = text_to_image.sample_rows(ids[::-1], 3, [0, 13])
    assert sorted(ids[::-1][reversed_rows].tolist()) == sorted(ids[rows].tolist())  # input order does not matter
    assert sorted(ids[rows].tolist()) == [30, 40, 50]  # the same ids for this seed on every run and machine
    assert text_to_image.sample_rows(ids, None, 0).tolist() == [1, 3, 4, 2, 0, 5]


def test_evaluation_all_query_kinds() -> None:
    reports = np.array([[1.0, 0.0], [0.0, 1.0]])
    report_labels = labels([{EDEMA: 1}, {EDEMA: 1}])
    prompts = np.tile([1.0, 0.0], (len(OBSERVATIONS), 1))
    got = text_to_image.text_to_image_evaluation(
        IMAGES, IMAGE_STUDY, IMAGE_LABELS, reports, np.array([1, 4]), report_labels,
        sentence_embeddings=reports, sentence_id=np.array([7, 8]), sentence_study_id=np.array([1, 99]),
        sentence_labels=report_labels, prompt_embeddings=prompts, ks=(1,), n_boot=50,
    )
    assert got["report"]["exact_pair"]["model"]["recall@1"]["value"] == pytest.approx(1.0)
    assert got["report"]["model"]["precision@1"]["value"] == pytest.approx(1.0)
    assert got["report"]["model"]["precision@1"]["ci_low"] is not None
    assert got["sentence"]["exact_pair"]["missing"] == 1  # study 99 has no image
    assert set(got) == {"settings", "report", "sentence", "prompt"}
