"""Drawing primitives shared by the views: the jittered coordinate grid, soft shapes, lines.

Coordinates are fractions of the image (x to the right, y downwards) in the patient's frame; the
grid maps them through the study's small shift, rotation and scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

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


def coords(anat: Anatomy, g: int) -> tuple[np.ndarray, np.ndarray]:
    X, Y = _base_grid(g)
    c, s = np.cos(anat.rot), np.sin(anat.rot)
    u, v = X - 0.5 - anat.dx, Y - 0.5 - anat.dy
    return (0.5 + (u * c + v * s) / anat.scale).astype(F32), (0.5 + (-u * s + v * c) / anat.scale).astype(F32)


def segment_distance(X: np.ndarray, Y: np.ndarray, points: Sequence[tuple[float, float]]) -> np.ndarray:
    """Distance from every pixel to a polyline."""
    d = np.full(X.shape, np.inf, dtype=F32)
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=False):
        vx, vy = x1 - x0, y1 - y0
        t = np.clip(((X - x0) * vx + (Y - y0) * vy) / max(vx * vx + vy * vy, 1e-9), 0, 1)
        np.minimum(d, np.hypot(X - x0 - t * vx, Y - y0 - t * vy), out=d)
    return d


class Canvas:
    """Grid coordinates of one picture and a way to draw small shapes only where they are."""

    def __init__(self, anat: Anatomy, g: int):
        self.anat, self.g = anat, g
        self.X, self.Y = coords(anat, g)

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
        d = segment_distance(self.X[sl], self.Y[sl], points)
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


def side_signs(side: str) -> list[int]:
    """Image-side sign: the patient's right is on the image left (-1)."""
    return {"right": [-1], "left": [1], "bilateral": [-1, 1]}.get(side, [-1])
