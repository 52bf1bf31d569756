"""Radiology sentences for one finding: affirmed, uncertain or negated, in typical MIMIC wording.

Each sentence names exactly one observation (negations of several may share a sentence, as in
"No pleural effusion or pneumothorax."), with the standard terms a CheXpert-style labeller knows.
"""

from __future__ import annotations

import numpy as np

from txtrayalign.synth.labels import Finding

# Words that mark a mention of each observation (the tests use them to check that the label-bearing
# section names exactly the valued observations). Phrases that CheXpert-style labellers read as other
# observations are avoided on purpose: "Kerley B lines" (a line: support device), "air bronchograms"
# (lung opacity).
KEYWORDS: dict[str, tuple[str, ...]] = {
    "No Finding": ("acute cardiopulmonary", "acute intrathoracic"),
    "Enlarged Cardiomediastinum": ("mediastin",),
    "Cardiomegaly": ("cardiomegaly", "heart", "cardiac"),
    "Lung Lesion": ("nodule", "mass"),
    "Lung Opacity": ("opacit",),
    "Edema": ("edema",),
    "Consolidation": ("consolidation",),
    "Pneumonia": ("pneumonia",),
    "Atelectasis": ("atelectasis",),
    "Pneumothorax": ("pneumothorax",),
    "Pleural Effusion": ("effusion",),
    "Pleural Other": ("pleural thickening",),
    "Fracture": ("fracture",),
    "Support Devices": ("tube", "catheter", "pacemaker", "picc", "monitoring leads"),
}
# Whole-word cues of negated and uncertain statements (as regular expressions).
NEGATION_CUES = r"\b(no|not|without|free of|resolved|normal)\b"
UNCERTAINTY_CUES = r"\b(possible|may|cannot be excluded|cannot exclude|questionable)\b"

ORDINALS = {4: "fourth", 5: "fifth", 6: "sixth", 7: "seventh", 8: "eighth", 9: "ninth"}


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def lobe_phrase(f: Finding, rng: np.random.Generator) -> str:
    """Where a parenchymal finding lies, e.g. "right lower lobe", "left base", "bibasilar"."""
    if f.side == "bilateral":
        return _pick(rng, ["bibasilar", "bilateral lower lobe"])
    if f.zone == "lower":
        return _pick(rng, [f"{f.side} lower lobe", f"{f.side} basilar", f"{f.side} base"])
    return f"{f.side} {f.zone} lobe"


def _where(loc: str) -> str:
    """"right base" -> "at the right base"; "right lower lobe" -> "in the right lower lobe"."""
    if loc.endswith("base"):
        return f"at the {loc}"
    if loc.endswith("basilar"):
        return f"in the {loc} region" if " " in loc else "at both bases"
    if loc.startswith("bilateral"):
        return "in both lower lobes"
    return f"in the {loc}"


def affirm(f: Finding, rng: np.random.Generator) -> list[str]:
    """Sentences stating a present finding as positive (value 1)."""
    o = f.observation
    if o == "Cardiomegaly":
        adv = {"mild": "mildly", "moderate": "moderately", "severe": "severely"}[f.severity]
        return [_pick(rng, [f"{_cap(f.severity)} cardiomegaly.", f"The heart is {adv} enlarged.",
                            f"Heart size is {adv} enlarged.", f"{_cap(f.severity)} enlargement of the cardiac silhouette."])]
    if o == "Enlarged Cardiomediastinum":
        return [_pick(rng, ["The mediastinum is widened.", "Widened mediastinum.",
                            "The cardiomediastinal silhouette is enlarged.", f"{_cap(f.severity)} mediastinal widening."])]
    if o == "Lung Lesion":
        where = f"{f.side} {f.zone} lobe"
        return [_pick(rng, [f"A {f.size_cm} cm {f.severity} is seen in the {where}.",
                            f"There is a {f.size_cm} cm {where} {f.severity}.",
                            f"{_cap(where)} {f.severity} measuring {f.size_cm} cm."])]
    if o == "Lung Opacity":
        loc = lobe_phrase(f, rng)
        plural = "opacities" if f.side == "bilateral" else "opacity"
        verb = "are" if f.side == "bilateral" else "is"
        return [_pick(rng, [f"Patchy {loc} {plural}.", f"There {verb} patchy {plural} {_where(loc)}.",
                            f"{_cap(loc)} airspace {plural}."])]
    if o == "Edema":
        return [_pick(rng, [f"{_cap(f.severity)} pulmonary edema.", f"There is {f.severity} interstitial pulmonary edema.",
                            f"{_cap(f.severity)} interstitial edema."])]
    if o == "Consolidation":
        loc = lobe_phrase(f, rng)
        return [_pick(rng, [f"Consolidation {_where(loc)}.", f"Dense {loc} consolidation.",
                            f"There is {loc} consolidation."])]
    if o == "Pneumonia":
        loc = lobe_phrase(f, rng)
        return [_pick(rng, [f"{_cap(loc)} pneumonia.", f"Findings are consistent with pneumonia {_where(loc)}.",
                            f"Pneumonia {_where(loc)}."])]
    if o == "Atelectasis":
        kind = f.severity
        loc = "bibasilar" if f.side == "bilateral" else f"{f.side} basilar"
        return [_pick(rng, [f"{_cap(kind)} atelectasis at the {f.side} base." if f.side != "bilateral"
                            else f"{_cap(kind)} atelectasis at both bases.",
                            f"{_cap(kind)} {loc} atelectasis." if kind == "mild" else f"{_cap(loc)} {kind} atelectasis."])]
    if o == "Pneumothorax":
        return [_pick(rng, [f"{_cap(f.severity)} {f.side} apical pneumothorax.", f"There is a {f.severity} {f.side} pneumothorax.",
                            f"{_cap(f.severity)} {f.side} pneumothorax is present."])]
    if o == "Pleural Effusion":
        if f.side == "bilateral":
            return [_pick(rng, [f"{_cap(f.severity)} bilateral pleural effusions.",
                                f"There are {f.severity} bilateral pleural effusions."])]
        return [_pick(rng, [f"{_cap(f.severity)} {f.side} pleural effusion.", f"There is a {f.severity} {f.side} pleural effusion.",
                            f"{_cap(f.severity)} {f.side} pleural effusion is present."])]
    if o == "Pleural Other":
        return [_pick(rng, [f"{_cap(f.side)} apical pleural thickening." if f.zone == "apical"
                            else f"Pleural thickening along the {f.side} lateral chest wall.",
                            f"There is {f.side} pleural thickening."])]
    if o == "Fracture":
        nth = ORDINALS[f.rib]
        return [_pick(rng, [f"Acute fracture of the {f.side} {nth} rib.", f"{_cap(f.side)} {nth} rib fracture.",
                            f"There is a fracture of the {f.side} {nth} lateral rib."])]
    if o == "Support Devices":
        return [_device_sentence(d, f, rng) for d in f.devices]
    raise ValueError(f"no phrasing for observation {o!r}")


def _device_sentence(device: str, f: Finding, rng: np.random.Generator) -> str:
    if device == "endotracheal tube":
        cm = round(float(rng.uniform(2.5, 6.0)), 1)
        return _pick(rng, [f"Endotracheal tube terminates {cm} cm above the carina.",
                           f"The endotracheal tube tip is {cm} cm above the carina."])
    if device == "nasogastric tube":
        return _pick(rng, ["Nasogastric tube extends into the stomach.",
                           "A nasogastric tube courses below the diaphragm into the stomach."])
    if device == "central venous catheter":
        return _pick(rng, [f"{_cap(f.side)} internal jugular central venous catheter tip is in the mid SVC.",
                           f"A {f.side} internal jugular catheter terminates in the lower SVC."])
    if device == "picc":
        return _pick(rng, [f"{_cap(f.side)} PICC line tip is in the mid SVC.", f"A {f.side} PICC terminates in the lower SVC."])
    if device == "pacemaker":
        return _pick(rng, ["Left-sided pacemaker with leads in the right atrium and right ventricle.",
                           "A dual lead pacemaker is in place."])
    if device == "monitoring leads":
        return "External monitoring leads overlie the chest."
    raise ValueError(f"no phrasing for device {device!r}")


def hedge(f: Finding, rng: np.random.Generator) -> str:
    """A sentence stating the finding as uncertain (value -1)."""
    o = f.observation
    term = {
        "Cardiomegaly": f"{f.severity} cardiomegaly",
        "Enlarged Cardiomediastinum": "mediastinal widening",
        "Lung Lesion": f"{f.severity} in the {f.side} {f.zone} lobe",
        "Edema": f"{f.severity} pulmonary edema",
        "Pneumothorax": f"{f.severity} {f.side} apical pneumothorax",
        "Pleural Effusion": (f"{f.severity} bilateral pleural effusions" if f.side == "bilateral"
                             else f"{f.severity} {f.side} pleural effusion"),
        "Pleural Other": f"{f.side} pleural thickening",
        "Fracture": f"nondisplaced fracture of the {f.side} {ORDINALS.get(f.rib, 'sixth')} rib",
        "Atelectasis": "atelectasis at both bases" if f.side == "bilateral" else f"atelectasis at the {f.side} base",
    }.get(o)
    if term is None:  # parenchymal: opacity, consolidation, pneumonia
        noun = {"Lung Opacity": "opacity", "Consolidation": "consolidation", "Pneumonia": "pneumonia"}[o]
        term = f"{noun} {_where(lobe_phrase(f, rng))}"
    if o == "Pneumonia":
        return _pick(rng, [f"Possible {term}.", f"{_cap(term)} cannot be excluded.",
                           "Findings may represent early pneumonia.", f"Cannot exclude {term}."])
    return _pick(rng, [f"Possible {term}.", f"{_cap(term)} cannot be excluded.", f"Questionable {term}."])


NEGATED_TERMS: dict[str, list[str]] = {
    "Cardiomegaly": ["cardiomegaly"],
    "Enlarged Cardiomediastinum": ["mediastinal widening"],
    "Lung Lesion": ["pulmonary nodules", "lung nodule or mass"],
    "Lung Opacity": ["focal opacity"],
    "Edema": ["pulmonary edema"],
    "Consolidation": ["focal consolidation", "consolidation"],
    "Pneumonia": ["pneumonia"],
    "Atelectasis": ["atelectasis"],
    "Pneumothorax": ["pneumothorax"],
    "Pleural Effusion": ["pleural effusion", "pleural effusions"],
    "Pleural Other": ["pleural thickening"],
    "Fracture": ["rib fracture", "displaced rib fracture"],
}


def negate(f: Finding, rng: np.random.Generator) -> str:
    """A sentence negating one finding (value 0)."""
    o = f.observation
    special = {
        "Cardiomegaly": ["Heart size is normal.", "The heart is not enlarged.", "No cardiomegaly."],
        "Enlarged Cardiomediastinum": ["The mediastinal contours are normal.", "Normal cardiomediastinal silhouette.",
                                       "No mediastinal widening."],
        "Lung Opacity": ["No focal opacity.", "The lungs are free of focal opacities."],
        "Pleural Effusion": ["No pleural effusion.", "There is no pleural effusion.", "No evidence of pleural effusion.",
                             f"The previously seen {f.side if f.side != 'bilateral' else 'left'} pleural effusion has resolved."],
        "Edema": ["No pulmonary edema.", "There is no evidence of pulmonary edema.", "Pulmonary edema has resolved."],
    }
    if o in special:
        return _pick(rng, special[o])
    term = _pick(rng, NEGATED_TERMS[o])
    return _pick(rng, [f"No {term}.", f"There is no {term}.", f"No evidence of {term}."])


# Negations often share one sentence in real reports.
_JOINABLE = ["Consolidation", "Pleural Effusion", "Pneumothorax", "Edema"]


def negations(findings: list[Finding], rng: np.random.Generator) -> list[tuple[list[str], str]]:
    """Sentences negating `findings`: (observations, sentence) pairs, some of them joined."""
    out: list[tuple[list[str], str]] = []
    joinable = [f for f in findings if f.observation in _JOINABLE]
    rest = [f for f in findings if f.observation not in _JOINABLE]
    if len(joinable) >= 2 and rng.random() < 0.7:
        terms = {"Consolidation": "focal consolidation", "Pleural Effusion": "pleural effusion",
                 "Pneumothorax": "pneumothorax", "Edema": "pulmonary edema"}
        names = [terms[f.observation] for f in joinable]
        body = " or ".join(names) if len(names) == 2 else ", ".join(names[:-1]) + ", or " + names[-1]
        lead = _pick(rng, ["No ", "There is no "])
        out.append(([f.observation for f in joinable], f"{lead}{body}."))
    else:
        rest = findings
    for f in rest:
        out.append(([f.observation], negate(f, rng)))
    return out


NO_FINDING_SENTENCES = ["No acute cardiopulmonary process.", "No acute cardiopulmonary abnormality.",
                        "No acute intrathoracic process."]

# Sentences that name no observation, for findings sections and free-text paragraphs.
NEUTRAL_SENTENCES = ["The hilar contours are unremarkable.", "Mild degenerative changes of the thoracic spine.",
                     "The upper abdomen is unremarkable.", "The lungs are well expanded."]
