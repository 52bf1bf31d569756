from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from txtrayalign.cli import main
from txtrayalign.splits import make_subset


def images_table(n_patients: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        subject = 10000000 + p
        split = rng.choice(["train", "validate", "test"], p=[0.8, 0.1, 0.1])
        for s in range(rng.integers(1, 4)):
            study = 50000000 + p * 10 + s
            for d in range(rng.integers(1, 3)):
                rows.append({"dicom_id": f"{p:08x}-{s:08x}-{d:08x}-00000000-00000000", "subject_id": subject,
                             "study_id": study, "path": "x", "view": "PA", "split": split, "group": "p10",
                             "format": "jpg"})
    return pd.DataFrame(rows)


def test_subsets_are_nested_and_leak_free():
    images = images_table()
    small = make_subset(images, 0.1, seed=3)
    large = make_subset(images, 0.5, seed=3)
    full = make_subset(images, 1.0, seed=3)
    train_small = set(small.loc[small.split == "train", "subject_id"])
    train_large = set(large.loc[large.split == "train", "subject_id"])
    all_train = set(images.loc[images.split == "train", "subject_id"])
    assert train_small < train_large <= all_train
    assert len(full) == len(images)
    assert abs(len(train_small) - round(0.1 * len(all_train))) <= 1
    for sub in (small, large):
        # validate and test stay whole
        for split in ("validate", "test"):
            assert set(sub.loc[sub.split == split, "dicom_id"]) == set(images.loc[images.split == split, "dicom_id"])
        # a kept patient keeps all of their images, in one split
        assert sub.groupby("subject_id")["split"].nunique().max() == 1
        kept = images[images.subject_id.isin(train_small)]
        assert set(kept.dicom_id) <= set(sub.dicom_id)
    other_seed = make_subset(images, 0.1, seed=4)
    assert set(other_seed.loc[other_seed.split == "train", "subject_id"]) != train_small


def test_patient_in_two_splits_is_an_error():
    images = images_table(20)
    first = images.index[0]
    bad = images.copy()
    extra = bad.loc[[first]].copy()
    extra["split"] = "test" if extra["split"].iloc[0] != "test" else "train"
    extra["dicom_id"] = "ffffffff-ffffffff-ffffffff-ffffffff-ffffffff"
    bad = pd.concat([bad, extra])
    with pytest.raises(ValueError, match="more than one split"):
        make_subset(bad, 0.5, seed=0)


def test_cli_writes_columns(tmp_path):
    images = images_table(30)
    src = tmp_path / "images.parquet"
    images.to_parquet(src)
    out = tmp_path / "splits" / "s.parquet"
    assert main(["split", "--images", str(src), "--fraction", "0.5", "--seed", "1", "--out", str(out)]) == 0
    df = pd.read_parquet(out)
    assert list(df.columns) == ["subject_id", "study_id", "dicom_id", "split"]
    assert df["subject_id"].dtype == np.int64
    with pytest.raises(ValueError, match="fraction"):
        make_subset(images, 0.0, seed=0)
