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

import numpy as np
from PIL import Image

from txtrayalign.synth.canvas import F32, Anatomy
from txtrayalign.synth.frontal import frontal
from txtrayalign.synth.labels import Finding
from txtrayalign.synth.lateral import lateral

MAX_GRID = 192


def render(findings: Mapping[str, Finding], view: str, size: int, seed: Sequence[int],
           grid: int | None = None) -> np.ndarray:
    """A float32 (size, size) image in [0, 1] of one view of a study with these findings."""
    g = min(size, MAX_GRID) if grid is None else grid
    rng = np.random.default_rng([*seed, 101])
    anat = Anatomy.draw(rng)
    present = {o: f for o, f in findings.items() if f.present}
    if view.upper() in ("LATERAL", "LL"):
        A = lateral(anat, present, g)
    else:
        A = frontal(anat, present, g, portable=view.upper() == "AP")
    img = 1.0 - np.exp(-anat.gain * np.maximum(A, 0))
    img = np.clip(img / (1.0 - np.exp(-anat.gain * 1.1)) + anat.level, 0, 1) ** anat.gamma
    img = img + anat.noise * np.random.default_rng([*seed, 202]).standard_normal(img.shape, dtype=F32)
    img = np.clip(img, 0, 1).astype(F32)
    if g != size:
        img = np.asarray(Image.fromarray(img, mode="F").resize((size, size), Image.BILINEAR), dtype=F32)
        img = np.clip(img, 0, 1)
    return img


def to_uint8(img: np.ndarray) -> np.ndarray:
    """An image in [0, 1] as uint8, rounded to nearest."""
    out = img * F32(255.0)
    out += F32(0.5)
    return out.astype(np.uint8)
