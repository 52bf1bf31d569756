"""The lateral view: simpler than the frontal one, but the main findings show on it too."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from txtrayalign.synth.canvas import Anatomy, Canvas, smoothstep
from txtrayalign.synth.labels import Finding


def lateral(anat: Anatomy, present: Mapping[str, Finding], g: int) -> np.ndarray:
    """A simpler lateral view: patient facing the image left, spine on the right."""
    cv = Canvas(anat, g)
    X, Y = cv.X, cv.Y
    lw = max(0.004, 1.2 / g)
    dome = (anat.dome_r + anat.dome_l) / 2
    body = smoothstep(0.0, 0.08, 1.0 - ((X - 0.5) / 0.42) ** 2 - ((Y - 0.7) / 0.72) ** 2)
    A = 0.6 * body
    lf = 1.0 - ((X - 0.5) / 0.3) ** 2 - ((Y - 0.45) / 0.33) ** 2
    dome_curve = dome - 0.08 * (1.0 - np.clip(((X - 0.52) / 0.3) ** 2, 0, 1))
    lung = smoothstep(0.0, 0.12, lf) * smoothstep(0.0, 0.012, dome_curve - Y)
    card = present.get("Cardiomegaly")
    hw = 0.12 + (0.0 if card is None else 0.06 * card.strength)
    heart = smoothstep(0.0, 0.15, 1.0 - ((X - 0.36 - 0.3 * (hw - 0.12)) / hw) ** 2 - ((Y - dome + 0.1) / 0.13) ** 2)
    ecm = present.get("Enlarged Cardiomediastinum")
    mw = 0.05 + (0.0 if ecm is None else 0.04 * ecm.strength)
    med = smoothstep(mw + 0.015, mw - 0.015, np.abs(X - 0.5)) * smoothstep(0.45, 0.38, Y) * smoothstep(0.15, 0.22, Y)
    lung *= 1.0 - heart
    A = A - 0.38 * lung + 0.3 * heart + 0.12 * med
    # Spine (vertebral bodies) posteriorly, sternum anteriorly.
    A += 0.2 * smoothstep(0.06, 0.045, np.abs(X - 0.8)) * (0.75 + 0.25 * np.cos(2 * np.pi * Y / 0.05)) * body
    cv.line(A, [(0.16, 0.2), (0.19, 0.62)], 0.012, 0.15)
    extra = np.zeros_like(X)
    for obs, amp in (("Lung Opacity", 0.2), ("Pneumonia", 0.22), ("Consolidation", 0.35)):
        if obs in present:
            f = present[obs]
            y0 = 0.3 if f.zone == "upper" else dome - 0.15
            extra += amp * f.strength * np.exp(-(((X - 0.55 - 0.1 * f.place[0]) / 0.07) ** 2 + ((Y - y0) / 0.06) ** 2)) * lung
    if "Edema" in present:
        extra += 0.15 * present["Edema"].strength * np.exp(-(((X - 0.52) / 0.15) ** 2 + ((Y - 0.45) / 0.12) ** 2)) * lung
    if "Pleural Effusion" in present:
        f = present["Pleural Effusion"]
        height = {"small": 0.05, "moderate": 0.1, "large": 0.18}.get(f.severity, 0.05) * (0.4 + 0.6 * f.strength)
        meniscus = dome - height - 0.1 * np.clip((X - 0.55) / 0.25, 0, 1)
        extra += 0.4 * f.strength * smoothstep(meniscus, meniscus + 0.03, Y) * smoothstep(0.4, 0.7, X) * \
            smoothstep(dome + 0.05, dome, Y) * smoothstep(-0.15, 0.05, lf)
    if "Atelectasis" in present:
        cv.line(extra, [(0.45, dome - 0.09), (0.65, dome - 0.07)], max(lw, 0.007), 0.28 * present["Atelectasis"].strength)
    if "Lung Lesion" in present:
        f = present["Lung Lesion"]
        y0 = 0.28 if f.zone == "upper" else 0.45 if f.zone == "middle" else dome - 0.15
        cv.disc(extra, 0.45 + 0.2 * f.place[0], y0, 0.0125 * f.size_cm, 0.006, 0.3 * f.strength)
    if "Pneumothorax" in present:
        f = present["Pneumothorax"]
        extra -= 0.08 * f.strength * smoothstep(0.35, 0.25, Y) * smoothstep(0.0, 0.1, lf)
    if "Support Devices" in present:
        w = max(lw, 0.005)
        for device in present["Support Devices"].devices:
            if device in ("endotracheal tube", "nasogastric tube"):
                x0 = 0.42 if device == "endotracheal tube" else 0.55
                y1 = 0.35 if device == "endotracheal tube" else dome + 0.05
                cv.line(extra, [(x0 - 0.05, 0.0), (x0, y1)], w, 0.6)
            elif device == "pacemaker":
                cv.disc(extra, 0.2, 0.18, 0.024, 0.004, 0.9)
                cv.line(extra, [(0.2, 0.18), (0.35, 0.4), (0.38, dome - 0.1)], w, 0.5)
            elif device in ("central venous catheter", "picc"):
                cv.line(extra, [(0.45, 0.05), (0.48, 0.2), (0.45, 0.34)], w, 0.5)
    return A + extra
