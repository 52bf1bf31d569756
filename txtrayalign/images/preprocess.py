"""One file in, the model's input out: decode then resize, the single code path every caller uses."""

from __future__ import annotations

import os

import numpy as np

from txtrayalign.images.decode import decode_image
from txtrayalign.images.resize import odd_geometry, resize_square


def load_preprocessed(
    path: str | os.PathLike, size: int, resize_mode: str = "center_crop", window: str = "bitdepth"
) -> np.ndarray:
    """Decode `path` (DICOM/JPEG/PNG) and resize it to a (size, size) uint8 array, bone bright.

    Raises `ImageDecodeError` for files that cannot be decoded (see `decode.ERROR_KINDS`).
    """
    return load_preprocessed_with_note(path, size, resize_mode, window)[0]


def load_preprocessed_with_note(
    path: str | os.PathLike, size: int, resize_mode: str = "center_crop", window: str = "bitdepth"
) -> tuple[np.ndarray, str]:
    """`load_preprocessed` and what is odd about the source's geometry ("" when nothing: see
    `resize.odd_geometry`), measured on the decoded image (a JPEG's draft scale keeps its aspect)."""
    image = decode_image(path, window=window, min_side=size)
    return resize_square(image, size, resize_mode), odd_geometry(*image.shape, size, resize_mode)
