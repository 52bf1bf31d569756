"""Decode one radiograph file (DICOM, JPEG, PNG) into an 8-bit greyscale array, bone bright.

DICOM: read with pydicom (``force=True``, so files without preamble or file meta work too; the
transfer syntax is then inferred from how pydicom parsed the data set). Compressed transfer syntaxes
go through pydicom's decoders (the pylibjpeg plugins); uncompressed 8/16-bit pixel data is read
straight from the bytes with numpy. Every stored value is then mapped to 8 bits through one lookup
table that bakes in, in order:

1. the BitsStored mask (and sign extension for signed data),
2. the modality transform (RescaleSlope/Intercept or a Modality LUT),
3. the VOI transform when the file has one (VOI LUT sequence, else WindowCenter/Width, including
   the SIGMOID function), via ``pydicom.pixels.apply_voi_lut``,
4. the scale to 0..255: ``window="bitdepth"`` maps the full output range the stored bit depth
   allows (after rescale/VOI, as DICOM defines it) onto 0..255, so the scale never depends on
   the image's own maximum; ``window="percentile"`` maps the image's 0.5-99.5 percentiles instead,
5. inversion for MONOCHROME1, so bone is always bright.

JPEG/PNG: Pillow; RGB, palette and alpha images become greyscale, 16-bit images are scaled from
their full 16-bit range (or percentiles). A JPEG that is at least twice the size of ``min_side``
in both dimensions is decoded in draft mode (DCT-domain downscaling by 1/2, 1/4 or 1/8, never
below ``min_side``), which is several times faster than a full decode.

Failures raise :class:`ImageDecodeError` with one of :data:`ERROR_KINDS`.
"""

from __future__ import annotations

import logging
import os
import struct
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ERROR_KINDS: tuple[str, ...] = (
    "zero_bytes",
    "truncated",
    "no_pixel_data",
    "unsupported_syntax",
    "not_an_image",
    "missing_file",
    "decode_error",
)
WINDOWS: tuple[str, ...] = ("bitdepth", "percentile")
PERCENTILES: tuple[float, float] = (0.5, 99.5)

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}


class ImageDecodeError(Exception):
    """A file that cannot be turned into an image; `kind` is one of ERROR_KINDS."""

    def __init__(self, kind: str, message: str) -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown error kind {kind!r}; expected one of {ERROR_KINDS}")
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


def decode_image(
    path: str | os.PathLike, window: str = "bitdepth", min_side: int | None = None
) -> np.ndarray:
    """Decode `path` into a 2-D uint8 array (rows, columns), bone bright.

    `min_side`: the caller will downscale to about this size; JPEGs may then be decoded at a reduced
    scale (never below `min_side` in either dimension). `None` always decodes at full resolution.
    """
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {WINDOWS}, got {window!r}")
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(132)
    except FileNotFoundError as exc:
        raise ImageDecodeError("missing_file", f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise ImageDecodeError("not_an_image", f"{path}: is a directory") from exc
    if size == 0:
        raise ImageDecodeError("zero_bytes", f"{path}: file is empty (0 bytes)")

    if head.startswith(_JPEG_MAGIC) or head.startswith(_PNG_MAGIC):
        return _decode_pillow(path, window, min_side)
    if head[128:132] == b"DICM" or path.suffix.lower() in _DICOM_SUFFIXES:
        return _decode_dicom(path, window)
    # Unknown suffix and no magic: Pillow knows many formats; a DICOM without preamble is the other option.
    try:
        return _decode_pillow(path, window, min_side)
    except ImageDecodeError as exc:
        if exc.kind != "not_an_image":
            raise
    return _decode_dicom(path, window)


# ---------------------------------------------------------------------------------------------- Pillow


def _decode_pillow(path: Path, window: str, min_side: int | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.format == "JPEG" and min_side and min(im.size) >= 2 * min_side:
                im.draft("L", (min_side, min_side))
            im.load()
            return _pillow_to_grey(im, window)
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not_an_image", f"{path}: not an image Pillow can read") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        text = str(exc)
        kind = "truncated" if ("truncated" in text or "broken" in text or "EOF" in text) else "decode_error"
        raise ImageDecodeError(kind, f"{path}: {text}") from exc


def _pillow_to_grey(im, window: str) -> np.ndarray:
    if im.mode == "L":
        arr = np.asarray(im)
        return _percentile_scale(arr.astype(np.float32)) if window == "percentile" else arr.copy()
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im).astype(np.float32)
        if window == "percentile":
            return _percentile_scale(arr)
        return _range_scale(arr, 0.0, 65535.0)
    if im.mode == "F":
        return _percentile_scale(np.asarray(im, dtype=np.float32))
    grey = np.asarray(im.convert("L"))
    return _percentile_scale(grey.astype(np.float32)) if window == "percentile" else grey.copy()


# ----------------------------------------------------------------------------------------------- DICOM


def _decode_dicom(path: Path, window: str) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path, force=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, KeyError, struct.error) as exc:
        kind = "truncated" if _looks_truncated(exc) else "not_an_image"
        raise ImageDecodeError(kind, f"{path}: not readable as DICOM ({type(exc).__name__}: {exc})") from exc
    eof = [str(w.message) for w in caught if "end of file" in str(w.message).lower()]
    if eof:
        raise ImageDecodeError("truncated", f"{path}: file ends early ({eof[0]})")
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        if _looks_like_dicom(ds):
            raise ImageDecodeError("no_pixel_data", f"{path}: DICOM file has no PixelData element")
        raise ImageDecodeError("not_an_image", f"{path}: neither a DICOM file nor an image Pillow can read")
    for tag in ("Rows", "Columns", "BitsAllocated"):
        if tag not in ds:
            raise ImageDecodeError("decode_error", f"{path}: DICOM pixel data without the {tag} element")
    _ensure_transfer_syntax(ds)
    stored = _stored_values(ds, path)
    try:
        return _to_uint8(stored, ds, window)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        raise ImageDecodeError("decode_error", f"{path}: cannot map pixel values ({exc})") from exc


def _looks_truncated(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, EOFError) or any(
        s in text
        for s in ("truncat", "end of file", "unexpected end", "eof", "shorter than", "doesn't match")
    )


def _looks_like_dicom(ds) -> bool:
    return (
        bool(getattr(ds, "preamble", None))
        or any(
            t in ds for t in ("SOPClassUID", "SOPInstanceUID", "Modality", "StudyInstanceUID", "PatientID")
        )
        or bool(getattr(ds, "file_meta", None))
    )


def _ensure_transfer_syntax(ds) -> None:
    """Files without file meta: set the transfer syntax pydicom's parse implies (Implicit VR LE by default)."""
    from pydicom import uid
    from pydicom.dataset import FileMetaDataset

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit is None:
        implicit = True
    if little is None:
        little = True
    if implicit:
        meta.TransferSyntaxUID = uid.ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian


def _stored_values(ds, path: Path) -> np.ndarray:
    """The first frame's stored values, 2-D (or 3-D for colour), before any transform."""
    ts = ds.file_meta.TransferSyntaxUID
    fast = _uncompressed_fast(ds, ts, path)
    if fast is not None:
        return fast
    try:
        arr = ds.pixel_array
    except NotImplementedError as exc:
        raise ImageDecodeError(
            "unsupported_syntax", f"{path}: transfer syntax {ts.name} ({ts}): {exc}"
        ) from exc
    except RuntimeError as exc:
        text = str(exc)
        if "plugin" in text or "decoder" in text.lower() or "Unable to decode" in text:
            kind = "unsupported_syntax"
        else:
            kind = "truncated" if _looks_truncated(exc) else "decode_error"
        raise ImageDecodeError(kind, f"{path}: transfer syntax {ts.name}: {text}") from exc
    except (ValueError, EOFError, OSError, TypeError, KeyError, AttributeError, IndexError) as exc:
        kind = "truncated" if _looks_truncated(exc) else "decode_error"
        raise ImageDecodeError(
            kind, f"{path}: transfer syntax {ts.name}: {type(exc).__name__}: {exc}"
        ) from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames > 1:
        arr = arr[0]
    if samples > 1 and arr.ndim == 3:
        arr = _rgb_to_grey(arr)
    return arr


def _uncompressed_fast(ds, ts, path: Path) -> np.ndarray | None:
    """Native little/big-endian 8/16-bit single-sample pixel data, read with numpy without copying."""
    if ts.is_compressed or ts.is_deflated or "PixelData" not in ds:
        return None
    bits_alloc = int(ds.BitsAllocated)
    if bits_alloc not in (8, 16) or int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        return None
    rows, cols = int(ds.Rows), int(ds.Columns)
    nbytes = bits_alloc // 8
    raw = ds.PixelData
    if not isinstance(raw, bytes | bytearray):
        return None
    expected = rows * cols * nbytes
    if len(raw) < expected:
        raise ImageDecodeError(
            "truncated",
            f"{path}: pixel data holds {len(raw)} bytes, {rows}x{cols}x{nbytes} = {expected} expected",
        )
    kind = "i" if int(ds.get("PixelRepresentation", 0) or 0) == 1 else "u"
    endian = "<" if ts.is_little_endian else ">"
    dtype = np.dtype(f"{endian}{kind}{nbytes}")
    arr = np.frombuffer(raw, dtype=dtype, count=rows * cols).reshape(rows, cols)
    if not dtype.isnative:
        arr = arr.astype(dtype.newbyteorder("="))
    return arr


def _rgb_to_grey(arr: np.ndarray) -> np.ndarray:
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.rint(arr.astype(np.float32) @ weights).astype(arr.dtype)


def _to_uint8(stored: np.ndarray, ds, window: str) -> np.ndarray:
    invert = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper() == "MONOCHROME1"
    if stored.dtype.kind in "ui" and stored.dtype.itemsize <= 2:
        # One lookup table over every value the dtype can hold: one gather per pixel.
        unsigned = stored.view(np.uint8 if stored.dtype.itemsize == 1 else np.uint16)
        domain = np.arange(2 ** (8 * stored.dtype.itemsize), dtype=np.int64)
        if stored.dtype.kind == "i":
            domain = domain.astype(unsigned.dtype).view(stored.dtype).astype(np.int64)
        values, lo, hi = _value_transform(_mask_bits(domain, ds), ds)
        if window == "percentile":
            lo, hi = _percentiles(values[unsigned[::4, ::4]])
        lut = _range_scale(values, lo, hi)
        if invert:
            lut = 255 - lut
        return lut[unsigned]
    values, lo, hi = _value_transform(stored.astype(np.float64), ds)
    if window == "percentile":
        lo, hi = _percentiles(values[::4, ::4])
    out = _range_scale(values, lo, hi)
    return 255 - out if invert else out


def _mask_bits(values: np.ndarray, ds) -> np.ndarray:
    """Keep only the BitsStored low bits (sign-extended for signed data), as the standard says."""
    bits = int(ds.get("BitsStored", ds.BitsAllocated) or ds.BitsAllocated)
    if bits >= 64:
        return values
    mask = (1 << bits) - 1
    masked = values & mask
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        sign = 1 << (bits - 1)
        masked = (masked ^ sign) - sign
    return masked


def _value_transform(values: np.ndarray, ds) -> tuple[np.ndarray, float, float]:
    """Modality then VOI transform of `values`; returns (float values, range low, range high)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    bits = int(ds.get("BitsStored", ds.BitsAllocated) or ds.BitsAllocated)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    s_lo, s_hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)

    out = np.asarray(apply_modality_lut(values, ds), dtype=np.float64)
    if ds.get("ModalityLUTSequence"):
        lo, hi = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    else:
        ends = np.asarray(apply_modality_lut(np.array([s_lo, s_hi], dtype=np.float64), ds), dtype=np.float64)
        lo, hi = float(ends.min()), float(ends.max())

    has_lut = bool(ds.get("VOILUTSequence"))
    has_window = "WindowCenter" in ds and "WindowWidth" in ds and ds.WindowCenter not in (None, "")
    if has_lut or has_window:
        if np.all(out == np.rint(out)):
            out = out.astype(np.int64)  # a VOI LUT indexes by integer value
        try:
            voi = np.asarray(apply_voi_lut(out, ds), dtype=np.float64)
        except (ValueError, TypeError, IndexError, AttributeError, KeyError) as exc:
            log.debug("ignoring unusable VOI transform: %s", exc)
        else:
            if has_lut:
                lo, hi = 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
            # windowing keeps the output inside the rescaled bit-depth range computed above
            out = voi
    out = np.asarray(out, dtype=np.float64)
    return out, lo, hi


def _percentiles(sample: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(sample, PERCENTILES)
    return float(lo), float(hi)


def _percentile_scale(arr: np.ndarray) -> np.ndarray:
    lo, hi = _percentiles(arr[::2, ::2] if arr.ndim == 2 and arr.size > 4096 else arr)
    return _range_scale(arr, lo, hi)


def _range_scale(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map [lo, hi] linearly onto 0..255 (clipped, rounded); a flat range maps to 0."""
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (np.asarray(values, dtype=np.float64) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
