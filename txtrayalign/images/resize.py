"""Resize a greyscale image to a square S x S uint8 array, antialiased (Pillow LANCZOS).

Resize modes (`RESIZE_MODES`), for a source of width W and height H:

- ``center_crop``: the central square of side min(W, H) (sub-pixel exact, the long side loses
  equal amounts at both ends) is resampled to S x S in one pass. Nothing is distorted; the ends
  of the long side are lost.
- ``pad``: the whole image is scaled so that its longest side is S (aspect kept, short side
  round(S * short / long)), then centred on an S x S canvas of zeros (black). Nothing is lost.
- ``shortest_side``: the torchvision ``Resize(S)`` + ``CenterCrop(S)`` recipe, pixel for pixel:
  the whole image is scaled so that its shortest side is S and its long side
  ``int(S * long / short)``, then the long side is cropped to S around the centre with torchvision's
  integer offset ``int(round((L - S) / 2))``. Same geometry as ``center_crop`` up to that rounding;
  use it to reproduce the preprocessing of models trained with torchvision transforms.

All modes upsample with the same filter when the source is smaller than S. Downsampling uses
Pillow's ``reducing_gap`` (an integer box reduction first, then LANCZOS over the last factor of 3
or more), which Pillow documents as indistinguishable from a full LANCZOS resample.
"""

from __future__ import annotations

import numpy as np

RESIZE_MODES: tuple[str, ...] = ("center_crop", "pad", "shortest_side")
_REDUCING_GAP = 3.0


SMALL_SIDE = 32  # a source side below this (and below S) is an odd image: a thumbnail, an icon, an error
LONG_RATIO = 3.0  # a source longer than this many times its width (or wider than tall) is an odd image


def odd_geometry(height: int, width: int, size: int, mode: str = "center_crop") -> str:
    """Why a (height, width) source makes a poor S x S input, in words; "" when it does not. Such an
    image is still stored (it decodes), and the shard's log names it with this reason."""
    short, long = min(height, width), max(height, width)
    notes = []
    if short < min(SMALL_SIDE, size):
        notes.append(f"{width}x{height} pixels: upsampled to {size}x{size}, it holds almost no detail")
    if long > LONG_RATIO * short:
        if mode == "pad":
            notes.append(f"aspect ratio {long / short:.1f}: the image fills {100 * short / long:.0f}% of the "
                         "padded square")
        else:
            notes.append(f"aspect ratio {long / short:.1f}: {mode} keeps only the middle "
                         f"{100 * short / long:.0f}% of its long side")
    return "; ".join(notes)


def resize_square(image: np.ndarray, size: int, mode: str = "center_crop") -> np.ndarray:
    """Return `image` (2-D uint8) resized to (size, size) uint8 by `mode` (see module docstring)."""
    from PIL import Image

    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 image, got shape {image.shape} dtype {image.dtype}")
    h, w = image.shape
    im = Image.fromarray(image)
    lanczos = Image.Resampling.LANCZOS

    if mode == "center_crop":
        side = min(w, h)
        x0, y0 = (w - side) / 2.0, (h - side) / 2.0
        out = im.resize((size, size), lanczos, box=(x0, y0, x0 + side, y0 + side), reducing_gap=_REDUCING_GAP)
        return np.asarray(out)

    if mode == "pad":
        scale = size / max(w, h)
        nw, nh = max(1, min(size, round(w * scale))), max(1, min(size, round(h * scale)))
        small = im.resize((nw, nh), lanczos, reducing_gap=_REDUCING_GAP)
        canvas = np.zeros((size, size), dtype=np.uint8)
        top, left = (size - nh) // 2, (size - nw) // 2
        canvas[top : top + nh, left : left + nw] = np.asarray(small)
        return canvas

    # shortest_side: torchvision Resize(size) then CenterCrop(size)
    if w <= h:
        nw, nh = size, int(size * h / w)
    else:
        nw, nh = int(size * w / h), size
    small = np.asarray(im.resize((nw, nh), lanczos, reducing_gap=_REDUCING_GAP))
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    return np.ascontiguousarray(small[top : top + size, left : left + size])
