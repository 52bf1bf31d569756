"""Write the table of `config/examples/byo-table.yaml`: real chest radiographs with plain notes.

The images are the real files of the project workspace's `../shared/testdata/` (three PNGs, four
DICOMs: NIH ChestX-ray14, IU X-ray, CR and DX samples), referenced by absolute path, never copied.
The notes are plain text without section headers, written for this example (the NIH and IU ones
follow their published labels and report; the DICOM ones are illustrative). A handful of images is
too few to train on, so each one is listed `--copies` times as separate studies and patients:
copies 0 .. n-3 train, n-2 validate, n-1 test. A table of your own needs none of this: one row per
image with its path and its report (see config/README.md, `table.columns`).

    python config/examples/make_byo_table.py [--testdata ../shared/testdata] [--out results/byo-table/data]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

NOTES = {
    "images/nih_00000001_000.png": "The heart is enlarged. No focal consolidation. No pleural effusion "
                                   "or pneumothorax.",
    "images/nih_00027426_000.png": "Normal heart size. The lungs are clear. No pleural effusion.",
    "images/iu_CXR3_IM-1384-1001.png": "No displaced rib fracture, pneumothorax or pleural effusion. "
                                       "Well-expanded clear lungs. Normal mediastinal contour.",
    "dicom/dx_mono2_chest_8bit.dcm": "Frontal chest radiograph. Lungs are clear. Heart size is normal.",
    "dicom/cr_mono2_chest_jpeg_baseline.dcm": "Portable chest. Possible small right apical pneumothorax. "
                                              "No consolidation.",
    "dicom/cr_mono1_chest_no_preamble.dcm": "Low lung volumes. Mild bibasilar atelectasis. No effusion.",
    "dicom/cr_mono1_chest_jpeg2000.dcm": "Stable mild cardiomegaly. Small left pleural effusion. "
                                         "No pulmonary edema.",
}
DEFAULT_TESTDATA = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"


def rows(testdata: Path, copies: int) -> list[dict]:
    """One row per (image, copy): image path, image id, plain note, split."""
    split_of = ["train"] * (copies - 2) + ["validate", "test"]
    out = []
    for copy, split in enumerate(split_of):
        for rel, note in NOTES.items():
            out.append({"image": str((testdata / rel).resolve()), "image_id": f"{Path(rel).stem}-{copy}",
                        "report_text": note, "split": split})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--testdata", type=Path, default=DEFAULT_TESTDATA, help="the shared test files [%(default)s]")
    parser.add_argument("--out", type=Path, default=Path("results/byo-table/data"),
                        help="the dataset root to write pairs.csv in [%(default)s]")
    parser.add_argument("--copies", type=int, default=8, help="rows per image (at least 3) [%(default)s]")
    args = parser.parse_args(argv)
    missing = [rel for rel in NOTES if not (args.testdata / rel).is_file()]
    if missing or args.copies < 3:
        print(f"make_byo_table: error: {'--copies must be at least 3' if args.copies < 3 else ''}"
              f"{f'not in {args.testdata}: {missing}' if missing else ''}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    table = rows(args.testdata, args.copies)
    with (args.out / "pairs.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    print(f"{args.out / 'pairs.csv'}: {len(table)} rows ({len(NOTES)} images x {args.copies} copies)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
