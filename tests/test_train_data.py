"""Pairs from the HDF5 shards: joins and drops, augmentation on uint8, seeded sampling, batched tokenisation."""

from __future__ import annotations

import logging
import multiprocessing

import numpy as np
import pandas as pd
import pytest

from txtrayalign.train.data import (
    Collate,
    EpochBatchSampler,
    EvalPairs,
    TrainPairs,
    augment,
    centre_resize,
    load_pairs,
)
from txtrayalign.train.tokenizer import train_wordpiece
from txtrayalign.train.toydata import write_toy_dataset

AUG = {"crop_scale": [0.8, 1.0], "rotation": 5.0, "brightness": 0.1, "contrast": 0.1}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("toy"), studies=30, image_size=40, seed=2)


def test_augment_returns_uint8_of_the_asked_size_and_is_seeded():
    img = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    a = augment(img, 32, np.random.default_rng([1, 2, 3]), (0.8, 1.0), 5, 0.1, 0.1)
    b = augment(img, 32, np.random.default_rng([1, 2, 3]), (0.8, 1.0), 5, 0.1, 0.1)
    c = augment(img, 32, np.random.default_rng([1, 2, 4]), (0.8, 1.0), 5, 0.1, 0.1)
    assert a.dtype == np.uint8 and a.shape == (32, 32)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # no crop, no rotation, no jitter: a plain resize of the whole image
    flat = np.full((64, 64), 77, np.uint8)
    assert np.all(augment(flat, 32, np.random.default_rng(0), (1.0, 1.0), 0, 0, 0)[2:-2, 2:-2] == 77)
    assert centre_resize(img, 32).shape == (32, 32)
    assert centre_resize(img, 64) is img


def test_pairs_drop_images_without_pixels_or_text(toy, tmp_path, caplog):
    split = pd.read_parquet(toy["split"])
    extra = split.iloc[[0]].assign(dicom_id="ffffffff-ffffffff-ffffffff-ffffffff-ffffffff")  # not in the shards
    no_text = split.iloc[[1]].assign(study_id=59999999)  # a study without sentences
    no_text_dicom = no_text["dicom_id"].iloc[0]
    index = pd.read_parquet(toy["images_index"])
    split2 = pd.concat([split[split.dicom_id != no_text_dicom], no_text, extra])
    split2.to_parquet(tmp_path / "split2.parquet")
    with caplog.at_level(logging.WARNING):
        data = load_pairs(tmp_path / "split2.parquet", toy["images_index"], toy["sentences"], None, "sentences")
    assert "dropped 1 image(s) missing from the shard index" in caplog.text
    assert "and 1 whose study has no text" in caplog.text
    kept = set(np.concatenate([t.dicom_id for t in data.splits.values()]))
    assert kept == set(index.dicom_id) - {no_text_dicom}
    with pytest.raises(ValueError, match="missing column"):
        bad = tmp_path / "bad.parquet"
        split.drop(columns=["split"]).to_parquet(bad)
        load_pairs(bad, toy["images_index"], toy["sentences"], None, "sentences")


def test_datasets_sample_sentences_per_epoch_and_survive_pickling(toy):
    data = load_pairs(toy["split"], toy["images_index"], toy["sentences"], None, "sentences")
    ds = TrainPairs(data, data.splits["train"], 32, 2, seed=0, augment_cfg=AUG)
    # read the first sample in a spawned process, as a DataLoader worker gets the dataset: it must
    # travel without open file handles
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        img, text, epoch, step = pool.apply(ds.__getitem__, ((0, 3, 5),))
    assert img.shape == (32, 32) and img.dtype == np.uint8 and (epoch, step) == (0, 3)
    sentences = data.texts[data.splits["train"].text_idx[5]]
    picked = text.split(". ")
    assert len(picked) == 2 and all(p.rstrip(".") + "." in sentences for p in picked)
    again = ds[(0, 7, 5)]
    assert np.array_equal(again[0], img) and again[1] == text  # same (seed, epoch, index): same sample
    texts = {ds[(e, 0, 5)][1] for e in range(8)}
    assert len(texts) > 1  # reshuffled across epochs
    val = EvalPairs(data, data.splits["validate"], 32, 2)
    v1, v2 = val[0], val[0]
    assert np.array_equal(v1[0], v2[0]) and v1[1] == " ".join(data.texts[data.splits["validate"].text_idx[0]][:2])


def test_sampler_resumes_exactly_and_splits_ranks():
    full = list(EpochBatchSampler(50, 8, seed=3, epochs=3))
    assert len(full) == 3 * 6
    resumed = list(EpochBatchSampler(50, 8, seed=3, epochs=3, start_epoch=1, start_step=2))
    assert resumed == full[6 + 2:]
    ranks = [list(EpochBatchSampler(50, 8, seed=3, epochs=3, rank=r, world_size=2)) for r in range(2)]
    for step in range(len(full)):
        assert ranks[0][step] + ranks[1][step] == full[step]
    epoch0 = {i for b in full[:6] for (_, _, i) in b}
    assert len(epoch0) == 48  # no repeats inside an epoch
    with pytest.raises(ValueError, match="fewer than one batch"):
        EpochBatchSampler(5, 8, seed=0, epochs=1)


def test_collate_tokenises_the_batch():
    tok = train_wordpiece(["small nodule left lung", "large effusion right"], 60)
    batch = Collate(tok, max_length=6)([(np.zeros((4, 4), np.uint8), "small nodule", 0, 1),
                                        (np.ones((4, 4), np.uint8), "large effusion right lung lung lung", 0, 1)])
    assert batch["images"].shape == (2, 4, 4) and batch["input_ids"].shape == (2, 6)
    assert batch["attention_mask"][0].tolist() == [1, 1, 1, 1, 0, 0]
    assert batch["step"] == 1
