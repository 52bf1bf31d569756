"""The synthetic twin's MIMIC-IV `hosp/patients.csv.gz` and `hosp/admissions.csv.gz`, and a planted disparity.

Marginals roughly as MIMIC-CXR's patients in MIMIC-IV (Glocker et al. 2023, table 1): 52% women, age at
the first study about N(62, 17) within 18-91 (MIMIC-IV caps at 91), race White 62%, Black 18%,
Hispanic/Latino 6%, Asian 4%, Other 4%, unknown or declined 6%, with about 2% of patients recording a
second, different race at one admission (the "conflicting" ones); insurance Medicare mostly from 65 on,
Medicaid more often for the young, else Other. Each patient has 1-3 admissions.

`anchor_year` is the year of the patient's first study minus 0-2 years and `anchor_age` the age then,
so `anchor_age + (study year - anchor_year)` (the study's age) follows the patient's studies.

Planting a disparity (`synthetic.disparity`): every study of the patients in one group (`sex=F`,
`race=Black`, `insurance=Medicaid`, `age=80+`) is rendered with its findings drawn fainter
(`strength × scale`); the reports, and so the labels, are unchanged. A model then sees less of those
patients' findings, which the subgroup evaluation should flag for that group and no other.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from txtrayalign.synth.labels import Finding
from txtrayalign.synth.plan import StudyPlan
from txtrayalign.synth.tables import write_csv_gz

FOLDER = "mimic-iv/hosp"  # under the synthetic root: the MIMIC-IV layout's hosp/ folder
TABLES = (f"{FOLDER}/patients.csv.gz", f"{FOLDER}/admissions.csv.gz")
PATIENT_COLUMNS = ["subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"]
ADMISSION_COLUMNS = ["subject_id", "hadm_id", "admittime", "dischtime", "deathtime", "admission_type",
                     "admit_provider_id", "admission_location", "discharge_location", "insurance", "language",
                     "marital_status", "race", "edregtime", "edouttime", "hospital_expire_flag"]
RACES = {  # MIMIC-IV v2 values -> share
    "WHITE": 0.55, "WHITE - OTHER EUROPEAN": 0.05, "WHITE - RUSSIAN": 0.02, "BLACK/AFRICAN AMERICAN": 0.15,
    "BLACK/CAPE VERDEAN": 0.03, "HISPANIC/LATINO - PUERTO RICAN": 0.03, "HISPANIC OR LATINO": 0.03,
    "ASIAN": 0.02, "ASIAN - CHINESE": 0.02, "OTHER": 0.03, "AMERICAN INDIAN/ALASKA NATIVE": 0.01,
    "UNKNOWN": 0.04, "UNABLE TO OBTAIN": 0.01, "PATIENT DECLINED TO ANSWER": 0.01,
}
P_CONFLICTING = 0.02
YEAR_GROUPS = ("2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019")
ADMISSION_TYPES = ("EW EMER.", "URGENT", "ELECTIVE", "OBSERVATION ADMIT", "DIRECT EMER.")
DISPARITY_ATTRIBUTES = ("sex", "age", "race", "insurance")


@dataclass(frozen=True)
class FaintFinding(Finding):
    """A finding drawn at `scale` of its usual strength (the planted disparity)."""

    scale: float = 1.0

    @property
    def strength(self) -> float:
        return super().strength * self.scale


def fainter(findings: dict[str, Finding], scale: float) -> dict[str, Finding]:
    return {o: FaintFinding(**{k: getattr(f, k) for k in f.__dataclass_fields__}, scale=scale)
            for o, f in findings.items()}


@dataclass(frozen=True)
class Person:
    subject_id: int
    gender: str
    anchor_age: int
    anchor_year: int
    race: str
    insurance: str


def _insurance(age: int, u: float) -> str:
    medicare = 0.8 if age >= 65 else 0.1
    medicaid = 0.05 if age >= 65 else 0.3 if age < 40 else 0.2
    return "Medicare" if u < medicare else "Medicaid" if u < medicare + medicaid else "Other"


def draw_people(plans: list[StudyPlan], seed: int) -> list[Person]:
    """One person per patient of `plans`, deterministic in `seed` (its own stream)."""
    rng = np.random.default_rng([seed, 41])
    first: dict[int, int] = {}
    for p in plans:
        first.setdefault(p.subject_id, p.study_date // 10000)
    races, shares = list(RACES), np.array(list(RACES.values()))
    people = []
    for subject, year in sorted(first.items()):
        age = int(np.clip(round(rng.normal(62, 17)), 18, 91))
        back = int(rng.integers(0, 3))
        race = races[int(rng.choice(len(races), p=shares / shares.sum()))]
        people.append(Person(subject, "F" if rng.random() < 0.52 else "M", max(age - back, 18), year - back, race,
                             _insurance(age, float(rng.random()))))
    return people


def age_at(person: Person, year: int) -> int:
    return person.anchor_age + (year - person.anchor_year)


def group_of_study(person: Person, year: int, attribute: str) -> str | None:
    """The study's group on `attribute` as the evaluation names it (sex M/F, age bin, grouped race, insurance)."""
    from txtrayalign.demographics import race_group

    if attribute == "sex":
        return person.gender
    if attribute == "race":
        return race_group(person.race)
    if attribute == "insurance":
        return person.insurance
    age = age_at(person, year)
    return "80+" if age >= 80 else f"{20 * (age // 20)}-{20 * (age // 20 + 1)}"


def planted_subjects(plans: list[StudyPlan], people: list[Person], disparity: str | None) -> frozenset[int]:
    """Studies (by study_id) whose findings are drawn fainter: those of group `attribute=value`."""
    if not disparity:
        return frozenset()
    attribute, _, value = disparity.partition("=")
    if attribute not in DISPARITY_ATTRIBUTES or not value:
        raise ValueError(f"disparity must be ATTRIBUTE=GROUP with ATTRIBUTE one of {DISPARITY_ATTRIBUTES}, "
                         f"got {disparity!r}")
    by_subject = {p.subject_id: p for p in people}
    return frozenset(p.study_id for p in plans
                     if group_of_study(by_subject[p.subject_id], p.study_date // 10000, attribute) == value)


def _stamp(day: dt.date, hours: float) -> str:
    t = dt.datetime.combine(day, dt.time()) + dt.timedelta(hours=hours)
    return t.strftime("%Y-%m-%d %H:%M:%S")


def write_tables(root: Path, plans: list[StudyPlan], people: list[Person], seed: int) -> list[Path]:
    """`<root>/mimic-iv/hosp/patients.csv.gz` and `admissions.csv.gz` in MIMIC-IV v2's columns."""
    rng = np.random.default_rng([seed, 42])
    dates: dict[int, list[int]] = {}
    for p in plans:
        dates.setdefault(p.subject_id, []).append(p.study_date)
    patients, admissions = [], []
    hadm = 20_000_000 + int(rng.integers(0, 1_000_000))
    races = list(RACES)
    for person in people:
        died = rng.random() < 0.15
        last = dt.datetime.strptime(str(max(dates[person.subject_id])), "%Y%m%d").date()
        patients.append({"subject_id": person.subject_id, "gender": person.gender, "anchor_age": person.anchor_age,
                         "anchor_year": person.anchor_year, "anchor_year_group": YEAR_GROUPS[int(rng.integers(0, 4))],
                         "dod": (last + dt.timedelta(days=int(rng.integers(1, 900)))).isoformat() if died else None})
        n = min(int(rng.integers(1, 4)), len(dates[person.subject_id]))
        other = races[int(rng.integers(0, len(races)))] if rng.random() < P_CONFLICTING else None
        for j, date in enumerate(sorted(dates[person.subject_id])[:n]):
            day = dt.datetime.strptime(str(date), "%Y%m%d").date()
            stay = float(rng.uniform(20, 240))
            hadm += int(rng.integers(1, 50))
            admissions.append({
                "subject_id": person.subject_id, "hadm_id": hadm, "admittime": _stamp(day, -2.0),
                "dischtime": _stamp(day, stay), "deathtime": None,
                "admission_type": ADMISSION_TYPES[int(rng.integers(0, len(ADMISSION_TYPES)))],
                "admit_provider_id": f"P{int(rng.integers(10000, 99999))}", "admission_location": "EMERGENCY ROOM",
                "discharge_location": "HOME", "insurance": person.insurance, "language": "ENGLISH",
                "marital_status": ("MARRIED", "SINGLE", "WIDOWED", "DIVORCED")[int(rng.integers(0, 4))],
                "race": other if (other is not None and j == n - 1) else person.race,
                "edregtime": _stamp(day, -4.0), "edouttime": _stamp(day, -2.0), "hospital_expire_flag": 0,
            })
    folder = root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    return [write_csv_gz(folder / "patients.csv.gz", PATIENT_COLUMNS, patients),
            write_csv_gz(folder / "admissions.csv.gz", ADMISSION_COLUMNS, admissions)]
