"""Image preprocessing: decode radiographs (DICOM/JPEG/PNG), resize them, store them in HDF5 shards.

- `decode`: file -> 2-D uint8, bone bright (`decode_image`, `ImageDecodeError`, `ERROR_KINDS`)
- `resize`: 2-D uint8 -> (S, S) uint8 (`resize_square`, `RESIZE_MODES`)
- `preprocess`: both in one call (`load_preprocessed`), the only path the pipeline uses
- `shards`: write a shard, merge shards, read them back (`ShardReader`)
- `cli`: the `images`, `merge-images` and `show-image` subcommands
"""

from txtrayalign.images.decode import ERROR_KINDS, WINDOWS, ImageDecodeError, decode_image
from txtrayalign.images.preprocess import load_preprocessed
from txtrayalign.images.resize import RESIZE_MODES, resize_square

__all__ = [
    "ERROR_KINDS",
    "RESIZE_MODES",
    "WINDOWS",
    "ImageDecodeError",
    "decode_image",
    "load_preprocessed",
    "resize_square",
]
