"""The frontal (PA/AP) view: anatomy plus one visible sign per present finding.

Radiographic convention: the patient's right is on the image left.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from txtrayalign.synth.canvas import Anatomy, Canvas, side_signs, smoothstep
from txtrayalign.synth.labels import Finding


@dataclass
class Frame:
    """Geometry of one frontal picture that the findings draw into."""

    cv: Canvas
    X: np.ndarray
    Y: np.ndarray
    W: float
    apex: float
    domes: dict[int, float]
    px: float  # one grid pixel in image fractions

    def lung_centre(self, sign: int) -> tuple[float, float, float, float]:
        """(lx, ly, ax, ay) of the lung ellipse on image side `sign`."""
        dome = self.domes[sign]
        return 0.5 + sign * self.W * 0.52, (self.apex + dome) / 2 + 0.03, self.W * 0.5, (dome - self.apex) / 2 + 0.06

    def lung_f(self, sign: int) -> np.ndarray:
        lx, ly, ax, ay = self.lung_centre(sign)
        return 1.0 - ((self.X - lx) / ax) ** 2 - ((self.Y - ly) / ay) ** 2

    def dome_curve(self, sign: int) -> np.ndarray:
        lx, _, ax, _ = self.lung_centre(sign)
        return self.domes[sign] - 0.07 * (1.0 - np.clip(((self.X - lx) / ax) ** 2, 0, 1))

    def zone_point(self, sign: int, zone: str, place: tuple[float, float]) -> tuple[float, float]:
        """A point inside a lobe zone, placed by `place` in [0,1)^2."""
        lx, _, ax, _ = self.lung_centre(sign)
        dome = self.domes[sign]
        y0, y1 = {"upper": (self.apex + 0.08, self.apex + 0.2), "middle": (0.46, 0.56),
                  "lower": (dome - 0.2, dome - 0.11)}.get(zone, (0.4, 0.55))
        x = lx + (place[0] - 0.5) * ax * (0.7 if zone != "middle" else 0.4) - (sign * 0.03 if zone == "middle" else 0)
        return float(x), float(y0 + place[1] * (y1 - y0))


def frontal(anat: Anatomy, present: Mapping[str, Finding], g: int, portable: bool) -> np.ndarray:
    cv = Canvas(anat, g)
    X, Y = cv.X, cv.Y
    W = anat.half_width
    fr = Frame(cv, X, Y, W, anat.apex, {-1: anat.dome_r, 1: anat.dome_l}, 1.0 / g)
    lw = max(0.004, 1.2 / g)  # thinnest line still visible on the grid
    d = np.abs(X - 0.5)

    # Soft tissue of the trunk and shoulders.
    body = smoothstep(0.0, 0.06, 1.0 - ((X - 0.5) / (W + 0.12)) ** 4 - ((Y - 0.95) / 0.9) ** 2)
    A = 0.55 * body

    # Heart (bulges to the patient's left = image right) and mediastinum.
    card = present.get("Cardiomegaly")
    ctr = anat.ctr + (0.0 if card is None else card.strength *
                      {"mild": 0.13, "moderate": 0.19, "severe": 0.25}.get(card.severity, 0.15))
    ctr += 0.03 if portable else 0.0  # AP magnifies the heart a little
    hw = ctr * W
    hx, hy, hh = 0.5 + 0.28 * hw, (anat.dome_r + anat.dome_l) / 2 - 0.1, 0.12
    heart = smoothstep(0.0, 0.12, 1.0 - ((X - hx) / hw) ** 2 - ((Y - hy) / hh) ** 2)
    ecm = present.get("Enlarged Cardiomediastinum")
    mw = anat.med + (0.0 if ecm is None else ecm.strength * (0.045 if ecm.severity == "moderate" else 0.035))
    upper = smoothstep(hy, hy - 0.12, Y)
    med = smoothstep(mw + 0.012, mw - 0.012, d) * upper * smoothstep(0.02, 0.08, Y)
    knob = smoothstep(0.0, 0.3, 1.0 - ((X - 0.5 - mw + 0.01) / 0.03) ** 2 - ((Y - 0.29) / 0.045) ** 2)
    central = np.maximum(np.maximum(med, heart), knob)

    # Lungs: an ellipse per side cut by its diaphragm dome, with vessels radiating from the hila.
    lung = np.zeros_like(X)
    lung_side: dict[int, np.ndarray] = {}
    f_side: dict[int, np.ndarray] = {}
    for sign in (-1, 1):
        f_side[sign] = fr.lung_f(sign)
        ls = smoothstep(0.0, 0.12, f_side[sign]) * smoothstep(0.0, 0.012, fr.dome_curve(sign) - Y)
        lung_side[sign] = ls
        lung = lung + ls
    lung *= 1.0 - central
    hxs = 0.5 + np.sign(X - 0.5) * 0.09
    theta = np.arctan2(Y - 0.45, X - hxs)
    r = np.hypot(X - hxs, Y - 0.45)
    wob = np.sin(11.0 * r + anat.vessel_phase) + 0.5 * np.sin(23.0 * r + 2 * anat.vessel_phase)
    # Branching look: the spokes bend with distance and their spacing varies around the hilum.
    bend = 2.5 * wob + 2.0 * np.sin(7.0 * theta + anat.vessel_phase) * (r / 0.2)
    vessels = (0.5 + 0.5 * np.cos(40.0 * theta + bend)) ** 6 * np.exp(-r / 0.3) * (0.6 + 0.4 * np.cos(5.0 * theta))
    vessels += 1.5 * np.exp(-((r / 0.05) ** 2))  # hilar vessels
    markings = np.ones_like(X)  # where lung markings survive (pneumothorax removes them)

    extra = np.zeros_like(X)  # findings' attenuation, added after the lungs
    bronchograms = np.zeros_like(X)

    for sign in side_signs(present["Pneumothorax"].side) if "Pneumothorax" in present else []:
        f = present["Pneumothorax"]
        fz = {"small": 0.3, "moderate": 0.45, "large": 0.62}.get(f.severity, 0.3) * (0.5 + 0.5 * f.strength)
        _, ly, _, _ = fr.lung_centre(sign)
        top = smoothstep(ly + 0.12, ly - 0.02, Y) * lung_side[sign]
        zone = smoothstep(fz, fz - 0.04, f_side[sign]) * top
        markings -= zone * min(1.0, 1.5 * f.strength)
        extra -= 0.09 * f.strength * zone
        extra += 0.16 * f.strength * np.exp(-(((f_side[sign] - fz) / 0.02) ** 2)) * top

    A = A - 0.4 * lung + 0.07 * vessels * lung * np.clip(markings, 0, 1)
    A = A + 0.24 * central

    # Trachea, spine, clavicles, ribs, stomach bubble.
    A -= 0.13 * smoothstep(0.013, 0.007, d) * smoothstep(0.36, 0.3, Y) * smoothstep(0.03, 0.07, Y)
    A += 0.08 * smoothstep(0.04, 0.028, d) * (0.8 + 0.2 * np.cos(2 * np.pi * Y / 0.045)) * body
    for sign in (-1, 1):
        cv.line(A, [(0.5 + sign * 0.05, 0.165), (0.5 + sign * 0.18, 0.125), (0.5 + sign * 0.3, 0.11)], 0.012, 0.14)
    A += _ribs(fr, present.get("Fracture"), anat.rib_phase) * body
    cv.disc(A, 0.5 + 0.13, anat.dome_l + 0.05, 0.04, 0.015, -0.12)

    # Parenchymal and pleural findings.
    for obs, amp in (("Lung Opacity", 0.22), ("Pneumonia", 0.24)):
        if obs in present:
            extra += amp * present[obs].strength * _patches(fr, present[obs], lung, seed_key=len(obs))
    if "Consolidation" in present:
        f = present["Consolidation"]
        for sign in side_signs(f.side):
            cxp, cyp = fr.zone_point(sign, f.zone or "lower", f.place)
            region = smoothstep(0.0, 0.35, 1.0 - ((X - cxp) / 0.11) ** 2 - ((Y - cyp) / 0.085) ** 2) * lung_side[sign]
            extra += 0.42 * f.strength * region
            branch = (0.5 + 0.5 * np.cos(18.0 * theta + 1.5 * wob)) ** 12
            bronchograms += 0.22 * f.strength * region * branch
    if "Edema" in present:
        f = present["Edema"]
        amp = {"mild": 0.13, "moderate": 0.19, "severe": 0.26}.get(f.severity, 0.16) * f.strength
        haze = np.exp(-(r / 0.13) ** 2)
        extra += amp * haze * lung
        for sign in (-1, 1):
            lx, _, ax, _ = fr.lung_centre(sign)
            lateral = smoothstep(0.18, 0.02, f_side[sign]) * smoothstep(0.5, 0.58, Y) * lung_side[sign]
            kerley = smoothstep(0.75, 0.95, np.cos(2 * np.pi * Y / 0.02))
            extra += 0.2 * f.strength * kerley * lateral
    if "Atelectasis" in present:
        f = present["Atelectasis"]
        for sign in side_signs(f.side):
            lx, _, ax, _ = fr.lung_centre(sign)
            yb = fr.domes[sign] - 0.075 - 0.03 * f.place[1]
            x0, x1 = lx - 0.5 * ax, lx + 0.45 * ax
            tilt = 0.015 * (f.place[0] - 0.5)
            cv.line(extra, [(x0, yb - tilt), (x1, yb + tilt)], max(lw, 0.007), 0.3 * f.strength)
    if "Lung Lesion" in present:
        f = present["Lung Lesion"]
        sign = side_signs(f.side)[0]
        x0, y0 = fr.zone_point(sign, f.zone or "upper", f.place)
        cv.disc(extra, x0, y0, 0.0125 * f.size_cm, 0.006, 0.32 * f.strength)
    if "Pleural Other" in present:
        f = present["Pleural Other"]
        sign = side_signs(f.side)[0]
        _, ly, _, _ = fr.lung_centre(sign)
        rim = smoothstep(0.12, 0.03, f_side[sign]) * smoothstep(-0.02, 0.02, f_side[sign])
        where = smoothstep(fr.apex + 0.14, fr.apex + 0.07, Y) if f.zone == "apical" else \
            smoothstep(0.3, 0.36, Y) * smoothstep(0.62, 0.56, Y)
        extra += 0.26 * f.strength * rim * where
    if "Pleural Effusion" in present:
        f = present["Pleural Effusion"]
        height = {"small": 0.06, "moderate": 0.13, "large": 0.24}.get(f.severity, 0.06) * (0.4 + 0.6 * f.strength)
        for sign in side_signs(f.side):
            lx, _, ax, _ = fr.lung_centre(sign)
            lat = np.clip((X - lx) * sign / ax, -1, 1)
            meniscus = fr.domes[sign] - 0.07 - height - 0.05 * lat
            fluid = smoothstep(meniscus, meniscus + 0.03, Y) * smoothstep(-0.05, 0.05, f_side[sign]) * \
                smoothstep(fr.domes[sign] + 0.06, fr.domes[sign] + 0.01, Y)
            extra += 0.42 * f.strength * fluid * (1.0 - central)
    A = A + extra - bronchograms
    if "Support Devices" in present:
        _devices(cv, A, present["Support Devices"], lw, hx, hy, fr.domes[1])
    return A


def _ribs(fr: Frame, fracture: Finding | None, phase0: float) -> np.ndarray:
    """Posterior ribs as one periodic family of arcs; a fracture breaks and steps one rib."""
    X, Y, W = fr.X, fr.Y, fr.W
    d = np.abs(X - 0.5)
    spacing = (max(fr.domes.values()) - fr.apex) / 9.0
    phase = (Y - fr.apex - 0.9 * (d - 0.08) ** 2) / spacing + phase0
    mask = smoothstep(0.03, 0.06, d) * smoothstep(W + 0.05, W, d) * smoothstep(fr.apex - 0.04, fr.apex, Y) * \
        smoothstep(max(fr.domes.values()) + 0.03, max(fr.domes.values()) - 0.02, Y)
    if fracture is not None:
        sign = side_signs(fracture.side)[0]
        k, xb = fracture_site(fr.W, fracture)
        near = np.exp(-(((phase - k) / 0.7) ** 2)) * (np.sign(X - 0.5) == sign)
        beyond = smoothstep(xb - 0.004, xb + 0.004, d)
        phase = phase + 0.35 * fracture.strength * near * beyond  # the step
        mask = mask * (1.0 - 0.9 * fracture.strength * near * np.exp(-(((d - xb) / 0.008) ** 2)))  # the gap
    band = (0.5 + 0.5 * np.cos(2 * np.pi * phase)) ** 6
    return 0.12 * band * mask


def fracture_site(W: float, f: Finding) -> tuple[int, float]:
    """(rib index in the periodic family, distance of the break from the midline)."""
    return f.rib - 1, 0.55 * W + 0.25 * W * f.place[0]


def _patches(fr: Frame, f: Finding, lung: np.ndarray, seed_key: int) -> np.ndarray:
    """Patchy airspace opacity: a few soft blobs with a mottled texture, inside the lungs."""
    X, Y = fr.X, fr.Y
    out = np.zeros_like(X)
    rng = np.random.default_rng([int(f.place[0] * 1e6), int(f.place[1] * 1e6), seed_key])
    sev = {"mild": 0.8, "moderate": 1.0, "severe": 1.25}.get(f.severity, 1.0)
    for sign in side_signs(f.side):
        cx, cy = fr.zone_point(sign, f.zone or "lower", f.place)
        for _ in range(4):
            bx, by = cx + rng.normal(0, 0.035), cy + rng.normal(0, 0.03)
            s = rng.uniform(0.025, 0.045) * sev
            out += np.exp(-(((X - bx) ** 2 + (Y - by) ** 2) / (2 * s * s)))
    ph = rng.uniform(0, 6.3, 2)
    mottle = 0.7 + 0.3 * np.cos(70 * X + ph[0]) * np.cos(60 * Y + ph[1])
    return np.clip(out, 0, 1.3) * mottle * np.clip(lung, 0, 1)


def _devices(cv: Canvas, A: np.ndarray, f: Finding, lw: float, hx: float, hy: float, dome: float) -> None:
    """Tubes, catheters, a pacemaker and monitoring leads: thin very bright lines, added to A."""
    w = max(lw, 0.005)
    carina = 0.36
    side = side_signs(f.side)[0]
    s = f.strength
    for device in f.devices:
        if device == "endotracheal tube":
            cv.line(A, [(0.502, 0.0), (0.5, carina - 0.06)], w, 0.7 * s)
        elif device == "nasogastric tube":
            cv.line(A, [(0.49, 0.0), (0.492, 0.4), (0.51, dome), (0.6, dome + 0.07)], w, 0.6 * s)
        elif device == "central venous catheter":
            cv.line(A, [(0.5 + side * 0.12, 0.05), (0.5 + side * 0.07, 0.18), (0.5 + side * 0.03, 0.26), (0.48, 0.34)],
                    w, 0.6 * s)
        elif device == "picc":
            cv.line(A, [(0.5 + side * 0.48, 0.3), (0.5 + side * 0.3, 0.17), (0.5 + side * 0.08, 0.2), (0.48, 0.33)],
                    w, 0.6 * s)
        elif device == "pacemaker":
            sl = cv.box(0.5 + 0.17, 0.14, 0.5 + 0.25, 0.2)
            X, Y = cv.X[sl], cv.Y[sl]
            A[sl] += 0.9 * s * smoothstep(0.036, 0.03, np.abs(X - 0.5 - 0.21)) * smoothstep(0.026, 0.02, np.abs(Y - 0.17))
            cv.line(A, [(0.5 + 0.19, 0.17), (0.5 + 0.06, 0.22), (0.49, 0.4), (hx - 0.02, hy + 0.04)], w, 0.6 * s)
        elif device == "monitoring leads":
            for ex, ey in ((0.5 - 0.25, 0.2), (0.5 + 0.25, 0.2), (0.5 + 0.22, 0.62)):
                cv.ring(A, ex, ey, 0.018, w, 0.6 * s)
            cv.line(A, [(0.5 - 0.25, 0.2), (0.38, 0.08), (0.5, 0.02)], w, 0.45 * s)
