"""Names that every stage shares: observations, table layouts, splits."""

from __future__ import annotations

# The CheXpert labeller's output order (after the `Reports` column).
OBSERVATIONS: list[str] = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
]

# The five observations the report-generation literature averages over.
TOP5_OBSERVATIONS: list[str] = [
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Pleural Effusion",
]

SPLITS: tuple[str, ...] = ("train", "validate", "test")

# MIMIC-CXR tables: file name -> columns, in order.
RECORD_LIST = "cxr-record-list.csv.gz"
STUDY_LIST = "cxr-study-list.csv.gz"
METADATA = "mimic-cxr-2.0.0-metadata.csv.gz"
SPLIT_TABLE = "mimic-cxr-2.0.0-split.csv.gz"
CHEXPERT_TABLE = "mimic-cxr-2.0.0-chexpert.csv.gz"
NEGBIO_TABLE = "mimic-cxr-2.0.0-negbio.csv.gz"

MIMIC_LABEL_COLUMNS: list[str] = sorted(OBSERVATIONS)

TABLE_COLUMNS: dict[str, list[str]] = {
    RECORD_LIST: ["subject_id", "study_id", "dicom_id", "path"],
    STUDY_LIST: ["subject_id", "study_id", "path"],
    METADATA: [
        "dicom_id",
        "subject_id",
        "study_id",
        "PerformedProcedureStepDescription",
        "ViewPosition",
        "Rows",
        "Columns",
        "StudyDate",
        "StudyTime",
        "ProcedureCodeSequence_CodeMeaning",
        "ViewCodeSequence_CodeMeaning",
        "PatientOrientationCodeSequence_CodeMeaning",
    ],
    SPLIT_TABLE: ["dicom_id", "study_id", "subject_id", "split"],
    CHEXPERT_TABLE: ["subject_id", "study_id", *MIMIC_LABEL_COLUMNS],
    NEGBIO_TABLE: ["subject_id", "study_id", *MIMIC_LABEL_COLUMNS],
}

# Identifier formats (see shared docs/datasets.md).
SUBJECT_ID_PATTERN = r"1\d{7}"
STUDY_ID_PATTERN = r"5\d{7}"
DICOM_ID_PATTERN = r"[0-9a-f]{8}(?:-[0-9a-f]{8}){4}"
GROUPS: list[str] = [f"p{n}" for n in range(10, 20)]


def group_of(subject_id: int | str) -> str:
    """The MIMIC top folder of a patient: the first two digits of the subject id, prefixed by `p`."""
    return "p" + str(subject_id)[:2]
