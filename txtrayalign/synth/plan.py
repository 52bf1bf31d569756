"""The dataset's skeleton: patients, studies, identifiers, dates and patient-level splits.

Drawn once in the main process from the seed, so identifiers never depend on the worker count.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from txtrayalign.constants import group_of

MAX_IMAGES_PER_STUDY = 3
STUDIES_PER_PATIENT = [1, 2, 3, 4, 5]
STUDIES_PER_PATIENT_P = [0.45, 0.22, 0.14, 0.1, 0.09]


@dataclass(frozen=True)
class StudyPlan:
    """One study's identity; its content is drawn later from (seed, index)."""

    index: int
    subject_id: int
    study_id: int
    dicom_ids: tuple[str, ...]  # MAX_IMAGES_PER_STUDY candidates; the study uses the first few
    split: str
    study_date: int  # YYYYMMDD, shifted into the future
    study_time: float  # hhmmss.fff as MIMIC's float (no leading zero)

    @property
    def group(self) -> str:
        return group_of(self.subject_id)

    @property
    def study_dir(self) -> str:
        """Relative folder of the study's images, e.g. files/p10/p10000032/s50414267."""
        return f"files/{self.group}/p{self.subject_id}/s{self.study_id}"

    @property
    def report_path(self) -> str:
        return self.study_dir + ".txt"


def dicom_id(words: np.ndarray) -> str:
    """Five 32-bit words as a MIMIC dicom_id: 5 groups of 8 lowercase hex digits."""
    return "-".join(f"{int(w):08x}" for w in words)


def _unique_ids(rng: np.random.Generator, n: int, base: int) -> list[int]:
    """n distinct 8-digit ids base..base+9,999,999 in random order."""
    picked = rng.choice(10_000_000, size=n, replace=False)
    return [base + int(v) for v in picked]


def _split_patients(n_patients: int, n_studies: int, rng: np.random.Generator) -> list[str]:
    """About 80/10/10 by patient, with at least a few patients in validate and test when N >= 30."""
    order = rng.permutation(n_patients)
    floor = 3 if n_studies >= 30 else 1 if n_patients >= 3 else 0
    n_val = max(int(round(0.1 * n_patients)), floor)
    n_test = max(int(round(0.1 * n_patients)), floor)
    if n_val + n_test >= n_patients:  # tiny datasets: keep at least one training patient
        n_val = n_test = max((n_patients - 1) // 2, 0)
    split = ["train"] * n_patients
    for i in order[:n_val]:
        split[i] = "validate"
    for i in order[n_val:n_val + n_test]:
        split[i] = "test"
    return split


def _study_time(rng: np.random.Generator) -> float:
    seconds = float(rng.uniform(0, 86400))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return round(int(h) * 10000 + int(m) * 100 + s, 3)


def plan_dataset(studies: int, seed: int) -> list[StudyPlan]:
    """The studies of the dataset, sorted by patient and date."""
    if studies < 1:
        raise ValueError(f"studies must be at least 1, got {studies}")
    rng = np.random.default_rng([seed, 1])
    counts: list[int] = []
    while sum(counts) < studies:
        counts.append(min(int(rng.choice(STUDIES_PER_PATIENT, p=STUDIES_PER_PATIENT_P)), studies - sum(counts)))
    subjects = sorted(_unique_ids(rng, len(counts), 10_000_000))
    study_ids = _unique_ids(rng, studies, 50_000_000)
    splits = _split_patients(len(counts), studies, rng)
    words = rng.integers(0, 2**32, size=(studies, MAX_IMAGES_PER_STUDY, 5), dtype=np.uint64)
    seen: set[str] = set()
    plans: list[StudyPlan] = []
    k = 0
    for p, (subject, n) in enumerate(zip(subjects, counts, strict=False)):
        day = dt.date(2110, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365 * 90)))
        for _ in range(n):
            ids = tuple(dicom_id(w) for w in words[k])
            if seen.intersection(ids) or len(set(ids)) < len(ids):  # pragma: no cover - 2^-160
                raise RuntimeError("dicom_id collision; choose another seed")
            seen.update(ids)
            plans.append(StudyPlan(k, subject, study_ids[k], ids, splits[p], int(day.strftime("%Y%m%d")),
                                   _study_time(rng)))
            day += dt.timedelta(days=int(rng.integers(1, 400)))
            k += 1
    return plans
