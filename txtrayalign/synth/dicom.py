"""Write a synthetic radiograph as a DICOM file with realistic tags.

Variety as in real archives: CR and DX SOP classes, MONOCHROME1 (stored inverted) and MONOCHROME2,
12 to 16 bits stored in 16 allocated, rescale slope/intercept, a VOI LUT window on some files, and
RLE Lossless compression on some (the rest Explicit VR Little Endian).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
P_MONOCHROME1 = 0.3
P_COMPRESSED = 0.25
P_WINDOW = 0.5


@dataclass(frozen=True)
class DicomStyle:
    """How one file stores its pixels."""

    modality: str  # "CR" or "DX"
    photometric: str  # "MONOCHROME1" or "MONOCHROME2"
    bits_stored: int
    slope: float
    intercept: float
    window: bool
    compressed: bool

    @classmethod
    def draw(cls, rng: np.random.Generator) -> DicomStyle:
        slope, intercept = [(1.0, 0.0), (1.0, -1024.0), (0.5, 0.0)][int(rng.choice(3, p=[0.7, 0.15, 0.15]))]
        return cls(
            modality="CR" if rng.random() < 0.4 else "DX",
            photometric="MONOCHROME1" if rng.random() < P_MONOCHROME1 else "MONOCHROME2",
            bits_stored=int(rng.choice([12, 14, 15, 16], p=[0.45, 0.25, 0.1, 0.2])),
            slope=slope, intercept=intercept,
            window=bool(rng.random() < P_WINDOW),
            compressed=bool(rng.random() < P_COMPRESSED),
        )


def stored_pixels(img: np.ndarray, style: DicomStyle) -> np.ndarray:
    """The stored values for an image in [0, 1] (bright = dense): MONOCHROME1 inverts them."""
    top = (1 << style.bits_stored) - 1
    v = np.round(np.clip(img, 0, 1) * top).astype(np.uint16)
    return (top - v).astype(np.uint16) if style.photometric == "MONOCHROME1" else v


def _uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def write_dicom(path: Path, img: np.ndarray, style: DicomStyle, *, subject_id: int, study_id: int,
                dicom_id: str, view: str, study_date: int, study_time: float, instance: int,
                description: str) -> None:
    """Write `img` (float in [0, 1]) to `path` as a DICOM file."""
    rows, cols = img.shape
    sop_class = CR_STORAGE if style.modality == "CR" else DX_STORAGE
    sop_instance = _uid("image", dicom_id)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.StudyInstanceUID = _uid("study", study_id)
    ds.SeriesInstanceUID = _uid("series", study_id, view, instance)
    ds.Modality = style.modality
    ds.PatientID = str(subject_id)
    ds.PatientName = "___"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyID = str(study_id)
    ds.AccessionNumber = ""
    ds.StudyDate = f"{study_date:08d}"
    ds.StudyTime = f"{study_time:013.6f}".rstrip("0").rstrip(".") if study_time else "000000"
    ds.StudyDescription = description
    ds.PerformedProcedureStepDescription = description
    ds.SeriesNumber = instance
    ds.InstanceNumber = 1
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = view
    ds.PatientOrientation = ["P", "L"] if view.startswith("LAT") or view == "LL" else ["L", "F"]
    spacing = f"{0.139 * 2500 / rows:.4f}"
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = style.photometric
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = 16
    ds.BitsStored = style.bits_stored
    ds.HighBit = style.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleSlope = f"{style.slope:g}"
    ds.RescaleIntercept = f"{style.intercept:g}"
    ds.RescaleType = "US"
    if style.window:
        top = (1 << style.bits_stored) - 1
        ds.WindowCenter = f"{(top / 2) * style.slope + style.intercept:.1f}"
        ds.WindowWidth = f"{top * 0.9 * style.slope:.1f}"
        ds.VOILUTFunction = "LINEAR"
    ds.PixelData = stored_pixels(img, style).tobytes()
    if style.compressed:
        ds.compress(RLELossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)


def decode(path: Path) -> np.ndarray:
    """Read a file written by `write_dicom` back to an image in [0, 1] (bright = dense)."""
    ds = pydicom.dcmread(path)
    v = ds.pixel_array.astype(np.float32)
    top = float((1 << int(ds.BitsStored)) - 1)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        v = top - v
    return v / top
