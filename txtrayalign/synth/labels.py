"""Draw the 14 CheXpert labels of a synthetic study, with the details (side, severity, place) that
both the report text and the rendered image use, so image and text tell the same story.

Prevalence and co-occurrence are MIMIC-like: a study is normal (No Finding) with probability
about 1/3; abnormal studies draw their pathologies from a correlated latent Gaussian with three
shared factors (heart failure, infection, intensive care), so cardiomegaly, edema and effusion go
together, opacity, pneumonia and consolidation go together, and support devices come with effusion,
atelectasis and edema.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from txtrayalign.constants import OBSERVATIONS

NO_FINDING = "No Finding"
SUPPORT_DEVICES = "Support Devices"
PATHOLOGIES: list[str] = [o for o in OBSERVATIONS if o not in (NO_FINDING, SUPPORT_DEVICES)]

# Target share of studies where the observation is present (positive or uncertain).
PREVALENCE: dict[str, float] = {
    "No Finding": 0.33,
    "Support Devices": 0.29,
    "Pleural Effusion": 0.24,
    "Lung Opacity": 0.22,
    "Atelectasis": 0.20,
    "Cardiomegaly": 0.19,
    "Edema": 0.12,
    "Pneumonia": 0.07,
    "Consolidation": 0.05,
    "Pneumothorax": 0.04,
    "Enlarged Cardiomediastinum": 0.03,
    "Lung Lesion": 0.03,
    "Fracture": 0.02,
    "Pleural Other": 0.01,
}

# Share of present findings that the report states as uncertain.
UNCERTAIN_SHARE: dict[str, float] = {
    "Pneumonia": 0.5, "Consolidation": 0.25, "Atelectasis": 0.2, "Edema": 0.25, "Cardiomegaly": 0.15,
    "Enlarged Cardiomediastinum": 0.3, "Lung Opacity": 0.1, "Pleural Effusion": 0.15, "Pneumothorax": 0.15,
    "Lung Lesion": 0.2, "Fracture": 0.2, "Pleural Other": 0.2, "Support Devices": 0.0,
}

# Probability that an absent observation is explicitly negated in the label-bearing section.
NEGATION_SHARE: dict[str, float] = {
    "Pneumothorax": 0.5, "Pleural Effusion": 0.45, "Consolidation": 0.3, "Edema": 0.2, "Cardiomegaly": 0.2,
    "Pneumonia": 0.12, "Enlarged Cardiomediastinum": 0.08, "Lung Opacity": 0.06, "Atelectasis": 0.03,
    "Lung Lesion": 0.02, "Fracture": 0.03, "Pleural Other": 0.01, "Support Devices": 0.0,
}

# Loadings of each observation on the latent factors (heart failure, infection, intensive care).
_LOADINGS: dict[str, tuple[float, float, float]] = {
    "Cardiomegaly": (0.65, 0.0, 0.1),
    "Edema": (0.6, 0.0, 0.35),
    "Pleural Effusion": (0.45, 0.2, 0.35),
    "Enlarged Cardiomediastinum": (0.4, 0.0, 0.2),
    "Lung Opacity": (0.1, 0.65, 0.2),
    "Pneumonia": (0.0, 0.7, 0.1),
    "Consolidation": (0.0, 0.65, 0.2),
    "Atelectasis": (0.1, 0.3, 0.45),
    "Pneumothorax": (0.0, 0.0, 0.35),
    "Lung Lesion": (0.0, 0.15, 0.0),
    "Fracture": (0.0, 0.0, 0.2),
    "Pleural Other": (0.1, 0.1, 0.0),
    "Support Devices": (0.2, 0.1, 0.75),
}
_P_ABNORMAL = 1.0 - PREVALENCE[NO_FINDING]
_P_DEVICES_IF_NORMAL = 0.12
# Conditioning on "at least one pathology" inflates marginals a little; this shrink compensates.
_SHRINK = 0.7
_SHRINK_DEVICES = 0.85

DEVICES: list[str] = ["endotracheal tube", "nasogastric tube", "central venous catheter", "picc",
                      "pacemaker", "monitoring leads"]
LOBES: list[str] = ["upper", "middle", "lower"]


@dataclass(frozen=True)
class Finding:
    """One observation as the study states it: value 1 (positive), -1 (uncertain) or 0 (negated),
    with the details the report words and the renderer draws."""

    observation: str
    value: float
    side: str = ""  # "right", "left", "bilateral" or ""
    severity: str = ""  # "small"/"moderate"/"large", "mild"/"moderate"/"severe", or ""
    zone: str = ""  # "upper", "middle", "lower", "apical", "basilar", "lateral" or ""
    size_cm: float = 0.0  # nodules and masses
    rib: int = 0  # fractures
    devices: tuple[str, ...] = ()  # support devices
    # Placement of the sign inside its zone, in [0, 1)^2, drawn once so image and text agree.
    place: tuple[float, float] = (0.5, 0.5)

    @property
    def present(self) -> bool:
        return self.value in (1.0, -1.0)

    @property
    def strength(self) -> float:
        """How strongly the image shows it: full for positive, faint for uncertain, none otherwise."""
        return 1.0 if self.value == 1.0 else 0.4 if self.value == -1.0 else 0.0


@dataclass
class StudyLabels:
    """The study's findings (present and negated ones) and its CheXpert row."""

    findings: dict[str, Finding] = field(default_factory=dict)

    def value(self, observation: str) -> float:
        if observation == NO_FINDING:
            return 1.0 if self.no_finding else math.nan
        f = self.findings.get(observation)
        return f.value if f is not None else math.nan

    @property
    def no_finding(self) -> bool:
        """CheXpert's rule: nothing but support devices is positive or uncertain."""
        return not any(f.present for o, f in self.findings.items() if o != SUPPORT_DEVICES)

    def row(self) -> dict[str, float]:
        return {o: self.value(o) for o in OBSERVATIONS}

    def present(self) -> list[Finding]:
        return [f for f in self.findings.values() if f.present]


def _threshold(p: float) -> float:
    return NormalDist().inv_cdf(1.0 - min(max(p, 1e-6), 1 - 1e-6))


_ITEMS = PATHOLOGIES + [SUPPORT_DEVICES]
_LOAD = np.array([_LOADINGS[o] for o in _ITEMS])
_UNIQUE = np.sqrt(1.0 - (_LOAD**2).sum(axis=1))
_THRESH = np.array([_threshold(min(0.95, PREVALENCE[o] / _P_ABNORMAL * (_SHRINK if o != SUPPORT_DEVICES else 1.0)))
                    for o in _ITEMS])
# Support devices overall: 29% = P(normal) * 12% + P(abnormal) * q.
_THRESH[-1] = _threshold(_SHRINK_DEVICES * (PREVALENCE[SUPPORT_DEVICES] - PREVALENCE[NO_FINDING] * _P_DEVICES_IF_NORMAL)
                         / _P_ABNORMAL)


def _choice(rng: np.random.Generator, options: list, p: list[float]):
    return options[int(rng.choice(len(options), p=np.asarray(p) / sum(p)))]


def _details(observation: str, value: float, rng: np.random.Generator) -> Finding:
    """Side, severity and place of one finding."""
    side, severity, zone, size_cm, rib, devices = "", "", "", 0.0, 0, ()
    lr = _choice(rng, ["right", "left"], [0.55, 0.45])
    if observation == "Pleural Effusion":
        side = _choice(rng, ["bilateral", "right", "left"], [0.35, 0.33, 0.32])
        severity = _choice(rng, ["small", "moderate", "large"], [0.55, 0.3, 0.15])
        zone = "basilar"
    elif observation == "Pneumothorax":
        side, zone = lr, "apical"
        severity = _choice(rng, ["small", "moderate", "large"], [0.7, 0.2, 0.1])
    elif observation in ("Cardiomegaly", "Edema"):
        severity = _choice(rng, ["mild", "moderate", "severe"], [0.55, 0.32, 0.13])
        side = "bilateral" if observation == "Edema" else ""
    elif observation in ("Lung Opacity", "Pneumonia", "Consolidation"):
        side = _choice(rng, ["right", "left", "bilateral"], [0.45, 0.35, 0.2])
        zone = _choice(rng, LOBES, [0.2, 0.15, 0.65]) if side != "bilateral" else "lower"
        if side == "left" and zone == "middle":
            zone = "lower"  # the left lung has no middle lobe (the lingula is left to the text)
        severity = _choice(rng, ["mild", "moderate", "severe"], [0.5, 0.35, 0.15])
    elif observation == "Atelectasis":
        side = _choice(rng, ["right", "left", "bilateral"], [0.3, 0.35, 0.35])
        zone = "basilar"
        severity = _choice(rng, ["plate-like", "linear", "subsegmental", "mild"], [0.3, 0.25, 0.25, 0.2])
    elif observation == "Lung Lesion":
        side, zone = lr, _choice(rng, LOBES, [0.5, 0.15, 0.35])
        if side == "left" and zone == "middle":
            zone = "lower"
        size_cm = round(float(rng.uniform(0.8, 2.5) if rng.random() < 0.75 else rng.uniform(3.2, 5.0)), 1)
        severity = "mass" if size_cm >= 3.0 else "nodule"
    elif observation == "Pleural Other":
        side, zone = lr, _choice(rng, ["apical", "lateral"], [0.6, 0.4])
    elif observation == "Fracture":
        side, rib = lr, int(rng.integers(4, 10))
        zone = "lateral"
    elif observation == "Enlarged Cardiomediastinum":
        severity = _choice(rng, ["mild", "moderate"], [0.6, 0.4])
    elif observation == SUPPORT_DEVICES:
        k = _choice(rng, [1, 2, 3], [0.5, 0.3, 0.2])
        weights = np.array([0.3, 0.22, 0.2, 0.12, 0.1, 0.06])
        idx = rng.choice(len(DEVICES), size=k, replace=False, p=weights / weights.sum())
        devices = tuple(DEVICES[i] for i in sorted(idx))
        side = lr
    place = (float(rng.random()), float(rng.random()))
    return Finding(observation, value, side, severity, zone, size_cm, rib, devices, place)


def draw_labels(rng: np.random.Generator) -> StudyLabels:
    """The findings of one study: which are present (positive or uncertain), which are negated."""
    labels = StudyLabels()
    normal = rng.random() >= _P_ABNORMAL
    if normal:
        present = np.zeros(len(_ITEMS), bool)
        present[-1] = rng.random() < _P_DEVICES_IF_NORMAL
    else:
        for _ in range(50):
            z = _LOAD @ rng.standard_normal(3) + _UNIQUE * rng.standard_normal(len(_ITEMS))
            present = z > _THRESH
            if present[:-1].any():
                break
        else:  # pragma: no cover - vanishingly rare
            present[_ITEMS.index("Lung Opacity")] = True
    for item, is_present in zip(_ITEMS, present, strict=False):
        if is_present:
            value = -1.0 if rng.random() < UNCERTAIN_SHARE[item] else 1.0
        elif rng.random() < NEGATION_SHARE[item] * (0.6 if normal else 1.0):
            value = 0.0
        else:
            continue
        labels.findings[item] = _details(item, value, rng)
    return labels
