"""CheXpert 5x200: eligibility, the seeded draw (exact ids), short classes, user id lists, P@K, accuracy."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from txtrayalign.constants import OBSERVATIONS
from txtrayalign.errors import InputError
from txtrayalign.evaluate import five_by_200
from txtrayalign.evaluate.five_by_200 import FIVE_CLASSES


def one_hot(classes: list[int], extra: dict[int, dict[str, float]] | None = None) -> np.ndarray:
    """Label rows positive for FIVE_CLASSES[c] (c = -1: none), other observations blank."""
    out = np.full((len(classes), len(OBSERVATIONS)), np.nan)
    for i, c in enumerate(classes):
        if c >= 0:
            out[i, OBSERVATIONS.index(FIVE_CLASSES[c])] = 1.0
        for name, v in (extra or {}).get(i, {}).items():
            out[i, OBSERVATIONS.index(name)] = v
    return out


def test_eligibility() -> None:
    labels = one_hot([0, 1, -1, 2, 3], {1: {"Edema": 1.0}, 3: {"Edema": -1.0, "Pneumonia": 1.0}})
    # row 1: two of the five positive; row 2: none; row 3: uncertain Edema does not count, Pneumonia is not one of five
    np.testing.assert_array_equal(five_by_200.five_class(labels), [0, -1, -1, 2, 3])
    np.testing.assert_array_equal(five_by_200.is_frontal(["PA", "ap", "LATERAL", "", "AP AXIAL"]),
                                  [True, True, False, False, True])


def small_pool() -> tuple[list[str], np.ndarray, list[str]]:
    classes = [i % 5 for i in range(40)]
    ids = [f"img{i:02d}" for i in range(40)]
    views = ["PA" if i % 7 else "LL" for i in range(40)]  # every 7th image lateral: not eligible
    return ids, one_hot(classes), views


def test_draw_is_stable_for_one_seed() -> None:
    ids, labels, views = small_pool()
    drawn = five_by_200.draw_five_by_200(ids, labels, views, per_class=3, seed=7)
    assert drawn["dicom_id"].tolist() == [
        "img20", "img25", "img30", "img26", "img31", "img36", "img12", "img32", "img37",
        "img18", "img33", "img38", "img09", "img19", "img34",
    ]
    assert drawn["observation"].tolist() == [c for c in FIVE_CLASSES for _ in range(3)]
    # the same set whatever the order of the input rows
    order = np.random.default_rng(1).permutation(40)
    again = five_by_200.draw_five_by_200(np.array(ids)[order], labels[order], np.array(views)[order], 3, seed=7)
    assert again.equals(drawn)
    other = five_by_200.draw_five_by_200(ids, labels, views, per_class=3, seed=8)
    assert not other.equals(drawn)


def test_short_class_takes_all_and_warns(caplog) -> None:
    ids, labels, views = small_pool()
    with caplog.at_level(logging.WARNING):
        drawn = five_by_200.draw_five_by_200(ids, labels, views, per_class=7, seed=0)
    counts = drawn["observation"].value_counts()
    # Atelectasis: images 0, 5, ..., 35 with 0, 35 lateral -> 6 eligible, fewer than 7: all six
    assert counts["Atelectasis"] == 6
    assert sorted(drawn.loc[drawn["observation"] == "Atelectasis", "dicom_id"]) == [
        "img05", "img10", "img15", "img20", "img25", "img30"]
    assert "Atelectasis has 6 eligible frontal images, fewer than 7" in caplog.text


def test_user_ids(tmp_path: Path) -> None:
    ids, labels, _ = small_pool()
    path = tmp_path / "ids.csv"
    path.write_text("dicom_id\nimg03\nimg01\n")
    got = five_by_200.read_five_by_200_ids(path, ids, labels)
    assert got.to_dict("list") == {"dicom_id": ["img03", "img01"], "observation": [FIVE_CLASSES[3], FIVE_CLASSES[1]]}
    path.write_text("dicom_id,observation\nimg03,Edema\n")
    assert five_by_200.read_five_by_200_ids(path, ids, labels)["observation"].tolist() == ["Edema"]
    path.write_text("dicom_id\nimg03\nnope\n")
    with pytest.raises(InputError, match="evaluation.five_by_200.ids: 1 ids .* not query images"):
        five_by_200.read_five_by_200_ids(path, ids, labels)
    path.write_text("dicom_id\nimg03\n")
    with pytest.raises(InputError, match="not positive for exactly one"):
        five_by_200.read_five_by_200_ids(path, ids, one_hot([-1] * 40))
    path.write_text("id\nimg03\n")
    with pytest.raises(InputError, match="no dicom_id column"):
        five_by_200.read_five_by_200_ids(path, ids, labels)


def test_precision_and_accuracy_by_hand() -> None:
    # two classes of two images; image embeddings on the unit circle, texts equal to their images
    images = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    classes = [FIVE_CLASSES[0], FIVE_CLASSES[0], FIVE_CLASSES[1], FIVE_CLASSES[1]]
    prompts = np.zeros((5, 2))
    prompts[0] = [1.0, 0.0]
    prompts[1] = [0.6, 0.8]
    got = five_by_200.five_by_200_evaluation(images, images, classes, prompts, ks=(1, 2), n_boot=100)
    m = got["model"]
    # image 0 -> texts 0 (A), 1 (A): 1, 1. image 1 -> 1, then 3 (.96) before 0 (.8): 1, 1/2.
    # image 2 -> 2, 3: 1, 1. image 3 -> 3, then 1 (.96): 1, 1/2.
    assert m["image_to_text_precision@1"]["value"] == pytest.approx(1.0)
    assert m["image_to_text_precision@2"]["value"] == pytest.approx(3 / 4)
    assert m["text_to_image_precision@2"]["value"] == pytest.approx(3 / 4)
    # zero-shot: image 1 (.8, .6) scores .8 for class 0 and .96 for class 1: wrong; others right
    assert m["zeroshot_accuracy"]["value"] == pytest.approx(3 / 4)
    assert got["by_class"][FIVE_CLASSES[0]]["zeroshot_accuracy"] == pytest.approx(1 / 2)
    assert got["random"]["image_to_text_precision@1"]["value"] == pytest.approx(1 / 2)
    assert got["random"]["zeroshot_accuracy"]["value"] == pytest.approx(1 / 5)
    assert got["n_by_class"] == {FIVE_CLASSES[0]: 2, FIVE_CLASSES[1]: 2, **{c: 0 for c in FIVE_CLASSES[2:]}}
