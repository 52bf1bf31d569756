"""Patient-level training subsets: `splits/<subset>.parquet`.

The split of every image comes from the dataset (`index/images.parquet`'s `split` column, the
official MIMIC-CXR split where the dataset has one). A subset keeps a seeded fraction of the
*training patients*; validate and test stay whole. Patients are ordered by a seeded hash and the
first share is kept, so for one seed a smaller fraction is always contained in a larger one, and
since whole patients are sampled no patient can appear in two splits.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
from pathlib import Path

import pandas as pd

from txtrayalign.constants import SPLITS
from txtrayalign.errors import InputError
from txtrayalign.utils import setup_logging, write_parquet_atomic

log = logging.getLogger(__name__)

SPLIT_COLUMNS = ["subject_id", "study_id", "dicom_id", "split"]


def patient_order(subject_ids: list[int] | pd.Series, seed: int) -> list[int]:
    """Patients sorted by a seeded hash: the first F share of this order is the F subset."""

    def key(sid: int) -> bytes:
        return hashlib.blake2b(f"{seed}:{int(sid)}".encode(), digest_size=8).digest()

    return sorted((int(s) for s in set(subject_ids)), key=lambda s: (key(s), s))


def check_patient_splits(images: pd.DataFrame, source: str = "images table") -> None:
    """An `InputError` naming the patients in more than one split (a leak), or an unknown split name."""
    unknown = sorted(set(images["split"].astype(str)) - set(SPLITS))
    if unknown:
        raise InputError(f"{source}: column 'split' has unknown values {unknown}; expected one of {list(SPLITS)}")
    per_patient = images.groupby("subject_id")["split"].agg(lambda s: sorted(set(s)))
    leaking = per_patient[per_patient.map(len) > 1]
    if len(leaking):
        examples = "; ".join(f"subject_id {s} in {', '.join(v)}" for s, v in leaking.head(3).items())
        raise InputError(f"{source}: {len(leaking)} patient(s) in more than one split ({examples}); "
                         "a patient must be in exactly one of train/validate/test")


def make_subset(images: pd.DataFrame, fraction: float, seed: int, source: str = "images table") -> pd.DataFrame:
    """Keep a seeded `fraction` of the training patients and every validate/test image."""
    if not 0.0 < fraction <= 1.0:
        raise InputError(f"--fraction must be in (0, 1], got {fraction}")
    missing = [c for c in SPLIT_COLUMNS if c not in images.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {missing}; need {SPLIT_COLUMNS}")
    images = images[SPLIT_COLUMNS].copy()
    images["split"] = images["split"].astype(str)
    check_patient_splits(images, source)

    train_patients = patient_order(images.loc[images["split"] == "train", "subject_id"], seed)
    keep_n = min(len(train_patients), max(1, math.ceil(fraction * len(train_patients)))) if train_patients else 0
    kept = set(train_patients[:keep_n])
    is_train = images["split"] == "train"
    out = images[~is_train | images["subject_id"].isin(kept)]
    out = out.sort_values(["split", "subject_id", "study_id", "dicom_id"], kind="stable").reset_index(drop=True)
    # By construction no patient is in two splits; check the output anyway (cheap).
    check_patient_splits(out, "subset")
    out["subject_id"] = out["subject_id"].astype("int64")
    out["study_id"] = out["study_id"].astype("int64")
    out["dicom_id"] = out["dicom_id"].astype(str)
    log.info(
        "subset fraction %.4g seed %d: %d of %d training patients kept; images per split: %s",
        fraction, seed, keep_n, len(train_patients), out["split"].value_counts().to_dict(),
    )
    return out


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", required=True, type=Path, help="index/images.parquet (dicom_id, subject_id, study_id, split, ...)")
    parser.add_argument("--fraction", required=True, type=float,
                        help="share of the training patients to keep, in (0, 1]; validate and test stay whole")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient order (same seed: nested subsets)")
    parser.add_argument("--out", required=True, type=Path, help="output splits/<subset>.parquet")
    parser.add_argument("--log", type=Path, default=None, help="also write the log to this file")


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log)
    if not args.images.is_file():
        raise FileNotFoundError(f"images index not found: {args.images}")
    images = pd.read_parquet(args.images)
    log.info("read %d images from %s", len(images), args.images)
    subset = make_subset(images, args.fraction, args.seed, source=str(args.images))
    write_parquet_atomic(subset, args.out)
    log.info("wrote %d rows to %s", len(subset), args.out)
    return 0
