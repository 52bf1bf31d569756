"""Render synthetic chest radiographs with vectorised numpy.

The picture is built as an attenuation map A (bright = dense) on a small internal grid (at most
`MAX_GRID` pixels square), mapped through an exposure curve and upsampled to the output size.
Anatomy (position, size, exposure, noise) comes from the study seed alone, and each finding adds its
own sign on top, so rendering a study with and without one finding changes only that sign.

Frontal views follow radiographic convention: the patient's right is on the image left.
Coordinates are fractions of the image: x to the right, y downwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from txtrayalign.synth.labels import Finding

MAX_GRID = 192
F32 = np.float32


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """0 below e0, 1 above e1 (or the reverse when e1 < e0), smooth in between."""
    t = (x - e0) * F32(1.0 / (e1 - e0))
    np.clip(t, 0.0, 1.0, out=t)
    return t * t * (3.0 - 2.0 * t)


@lru_cache(maxsize=8)
def _base_grid(g: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(g, dtype=F32) + 0.5) / g
    return np.meshgrid(c, c)  # X, Y


@dataclass(frozen=True)
class Anatomy:
    """The patient and the exposure: everything random that is not a finding."""

    dx: float
    dy: float
    scale: float
    rot: float
    half_width: float  # thorax half-width W
    apex: float
    dome_r: float  # image-left dome (patient's right), higher
    dome_l: float
    ctr: float  # normal cardiothoracic ratio
    med: float  # mediastinal half-width
    gain: float
    gamma: float
    level: float
    noise: float
    rib_phase: float
    vessel_phase: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Anatomy:
        dome_r = float(rng.uniform(0.66, 0.72))
        return cls(
            dx=float(rng.normal(0, 0.015)), dy=float(rng.normal(0, 0.015)), scale=float(rng.uniform(0.93, 1.05)),
            rot=float(np.deg2rad(rng.normal(0, 1.5))), half_width=float(rng.uniform(0.33, 0.37)),
            apex=float(rng.uniform(0.13, 0.17)), dome_r=dome_r, dome_l=dome_r + float(rng.uniform(0.01, 0.035)),
            ctr=float(rng.uniform(0.40, 0.47)), med=float(rng.uniform(0.05, 0.06)),
            gain=float(rng.uniform(1.8, 2.6)), gamma=float(rng.uniform(0.8, 1.25)), level=float(rng.uniform(-0.05, 0.05)),
            noise=float(rng.uniform(0.008, 0.02)), rib_phase=float(rng.uniform(-0.15, 0.15)),
            vessel_phase=float(rng.uniform(0, 2 * np.pi)),
        )


def _coords(anat: Anatomy, g: int) -> tuple[np.ndarray, np.ndarray]:
    X, Y = _base_grid(g)
    c, s = np.cos(anat.rot), np.sin(anat.rot)
    u, v = X - 0.5 - anat.dx, Y - 0.5 - anat.dy
    return (0.5 + (u * c + v * s) / anat.scale).astype(F32), (0.5 + (-u * s + v * c) / anat.scale).astype(F32)


def _segment_distance(X: np.ndarray, Y: np.ndarray, points: Sequence[tuple[float, float]]) -> np.ndarray:
    """Distance from every pixel to a polyline."""
    d = np.full(X.shape, np.inf, dtype=F32)
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=False):
        vx, vy = x1 - x0, y1 - y0
        t = np.clip(((X - x0) * vx + (Y - y0) * vy) / max(vx * vx + vy * vy, 1e-9), 0, 1)
        np.minimum(d, np.hypot(X - x0 - t * vx, Y - y0 - t * vy), out=d)
    return d


class _Canvas:
    """Grid coordinates of one picture and a way to draw small shapes only where they are."""

    def __init__(self, anat: Anatomy, g: int):
        self.anat, self.g = anat, g
        self.X, self.Y = _coords(anat, g)

    def box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[slice, slice]:
        """Pixel rows and columns that cover a rectangle given in the anatomy's coordinates."""
        a = self.anat
        c, s = np.cos(a.rot), np.sin(a.rot)
        xs = np.array([x0, x1, x0, x1]) - 0.5
        ys = np.array([y0, y0, y1, y1]) - 0.5
        px = (0.5 + a.dx + a.scale * (c * xs - s * ys)) * self.g
        py = (0.5 + a.dy + a.scale * (s * xs + c * ys)) * self.g
        r0, r1 = max(int(np.floor(py.min())) - 2, 0), min(int(np.ceil(py.max())) + 2, self.g)
        c0, c1 = max(int(np.floor(px.min())) - 2, 0), min(int(np.ceil(px.max())) + 2, self.g)
        return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))

    def line(self, out: np.ndarray, points: Sequence[tuple[float, float]], width: float, amp: float) -> None:
        """Add a soft polyline of half-width `width` and height `amp` to `out`."""
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        m = 3 * width
        sl = self.box(min(xs) - m, min(ys) - m, max(xs) + m, max(ys) + m)
        d = _segment_distance(self.X[sl], self.Y[sl], points)
        out[sl] += amp * np.exp(-((d / width) ** 2))

    def disc(self, out: np.ndarray, x0: float, y0: float, r: float, soft: float, amp: float) -> None:
        m = r + 2 * soft
        sl = self.box(x0 - m, y0 - m, x0 + m, y0 + m)
        out[sl] += amp * smoothstep(r + soft, r - soft, np.hypot(self.X[sl] - x0, self.Y[sl] - y0))

    def ring(self, out: np.ndarray, x0: float, y0: float, r: float, width: float, amp: float) -> None:
        m = r + 3 * width
        sl = self.box(x0 - m, y0 - m, x0 + m, y0 + m)
        ring = np.abs(np.hypot(self.X[sl] - x0, self.Y[sl] - y0) - r)
        out[sl] += amp * np.exp(-((ring / width) ** 2))


def _side_signs(side: str) -> list[int]:
    """Image-side sign: the patient's right is on the image left (-1)."""
    return {"right": [-1], "left": [1], "bilateral": [-1, 1]}.get(side, [-1])


@dataclass
class _Frame:
    """Geometry of one frontal picture that the findings draw into."""

    cv: _Canvas
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


def render(findings: Mapping[str, Finding], view: str, size: int, seed: Sequence[int],
           grid: int | None = None) -> np.ndarray:
    """A float32 (size, size) image in [0, 1] of one view of a study with these findings."""
    g = min(size, MAX_GRID) if grid is None else grid
    rng = np.random.default_rng([*seed, 101])
    anat = Anatomy.draw(rng)
    present = {o: f for o, f in findings.items() if f.present}
    if view.upper() in ("LATERAL", "LL"):
        A = _lateral(anat, present, g)
    else:
        A = _frontal(anat, present, g, portable=view.upper() == "AP")
    img = 1.0 - np.exp(-anat.gain * np.maximum(A, 0))
    img = np.clip(img / (1.0 - np.exp(-anat.gain * 1.1)) + anat.level, 0, 1) ** anat.gamma
    img = img + anat.noise * np.random.default_rng([*seed, 202]).standard_normal(img.shape, dtype=F32)
    img = np.clip(img, 0, 1).astype(F32)
    if g != size:
        img = np.asarray(Image.fromarray(img, mode="F").resize((size, size), Image.BILINEAR), dtype=F32)
        img = np.clip(img, 0, 1)
    return img


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.round(img * 255.0).astype(np.uint8)


def _frontal(anat: Anatomy, present: Mapping[str, Finding], g: int, portable: bool) -> np.ndarray:
    cv = _Canvas(anat, g)
    X, Y = cv.X, cv.Y
    W = anat.half_width
    fr = _Frame(cv, X, Y, W, anat.apex, {-1: anat.dome_r, 1: anat.dome_l}, 1.0 / g)
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
    vessels = (0.5 + 0.5 * np.cos(46.0 * theta + 2.5 * wob)) ** 6 * np.exp(-r / 0.3)
    vessels += 1.5 * np.exp(-((r / 0.05) ** 2))  # hilar vessels
    markings = np.ones_like(X)  # where lung markings survive (pneumothorax removes them)

    extra = np.zeros_like(X)  # findings' attenuation, added after the lungs
    bronchograms = np.zeros_like(X)

    for sign in _side_signs(present["Pneumothorax"].side) if "Pneumothorax" in present else []:
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
        for sign in _side_signs(f.side):
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
        for sign in _side_signs(f.side):
            lx, _, ax, _ = fr.lung_centre(sign)
            yb = fr.domes[sign] - 0.075 - 0.03 * f.place[1]
            x0, x1 = lx - 0.5 * ax, lx + 0.45 * ax
            tilt = 0.015 * (f.place[0] - 0.5)
            cv.line(extra, [(x0, yb - tilt), (x1, yb + tilt)], max(lw, 0.007), 0.3 * f.strength)
    if "Lung Lesion" in present:
        f = present["Lung Lesion"]
        sign = _side_signs(f.side)[0]
        x0, y0 = fr.zone_point(sign, f.zone or "upper", f.place)
        cv.disc(extra, x0, y0, 0.0125 * f.size_cm, 0.006, 0.32 * f.strength)
    if "Pleural Other" in present:
        f = present["Pleural Other"]
        sign = _side_signs(f.side)[0]
        _, ly, _, _ = fr.lung_centre(sign)
        rim = smoothstep(0.12, 0.03, f_side[sign]) * smoothstep(-0.02, 0.02, f_side[sign])
        where = smoothstep(fr.apex + 0.14, fr.apex + 0.07, Y) if f.zone == "apical" else \
            smoothstep(0.3, 0.36, Y) * smoothstep(0.62, 0.56, Y)
        extra += 0.26 * f.strength * rim * where
    if "Pleural Effusion" in present:
        f = present["Pleural Effusion"]
        height = {"small": 0.06, "moderate": 0.13, "large": 0.24}.get(f.severity, 0.06) * (0.4 + 0.6 * f.strength)
        for sign in _side_signs(f.side):
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


def _ribs(fr: _Frame, fracture: Finding | None, phase0: float) -> np.ndarray:
    """Posterior ribs as one periodic family of arcs; a fracture breaks and steps one rib."""
    X, Y, W = fr.X, fr.Y, fr.W
    d = np.abs(X - 0.5)
    spacing = (max(fr.domes.values()) - fr.apex) / 9.0
    phase = (Y - fr.apex - 0.9 * (d - 0.08) ** 2) / spacing + phase0
    mask = smoothstep(0.03, 0.06, d) * smoothstep(W + 0.05, W, d) * smoothstep(fr.apex - 0.04, fr.apex, Y) * \
        smoothstep(max(fr.domes.values()) + 0.03, max(fr.domes.values()) - 0.02, Y)
    if fracture is not None:
        sign = _side_signs(fracture.side)[0]
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


def _patches(fr: _Frame, f: Finding, lung: np.ndarray, seed_key: int) -> np.ndarray:
    """Patchy airspace opacity: a few soft blobs with a mottled texture, inside the lungs."""
    X, Y = fr.X, fr.Y
    out = np.zeros_like(X)
    rng = np.random.default_rng([int(f.place[0] * 1e6), int(f.place[1] * 1e6), seed_key])
    sev = {"mild": 0.8, "moderate": 1.0, "severe": 1.25}.get(f.severity, 1.0)
    for sign in _side_signs(f.side):
        cx, cy = fr.zone_point(sign, f.zone or "lower", f.place)
        for _ in range(4):
            bx, by = cx + rng.normal(0, 0.035), cy + rng.normal(0, 0.03)
            s = rng.uniform(0.025, 0.045) * sev
            out += np.exp(-(((X - bx) ** 2 + (Y - by) ** 2) / (2 * s * s)))
    ph = rng.uniform(0, 6.3, 2)
    mottle = 0.7 + 0.3 * np.cos(70 * X + ph[0]) * np.cos(60 * Y + ph[1])
    return np.clip(out, 0, 1.3) * mottle * np.clip(lung, 0, 1)


def _devices(cv: _Canvas, A: np.ndarray, f: Finding, lw: float, hx: float, hy: float, dome: float) -> None:
    """Tubes, catheters, a pacemaker and monitoring leads: thin very bright lines, added to A."""
    w = max(lw, 0.005)
    carina = 0.36
    side = _side_signs(f.side)[0]
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


def _lateral(anat: Anatomy, present: Mapping[str, Finding], g: int) -> np.ndarray:
    """A simpler lateral view: patient facing the image left, spine on the right."""
    cv = _Canvas(anat, g)
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
