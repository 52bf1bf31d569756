"""`txtrayalign synth`: write the built-in synthetic dataset."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from txtrayalign.synth.generate import generate
from txtrayalign.utils import setup_logging

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="dataset root to write (files/ and the tables)")
    parser.add_argument("--studies", type=int, required=True, help="number of studies (one report each)")
    parser.add_argument("--seed", type=int, required=True, help="random seed; the same seed gives the same dataset")
    parser.add_argument("--format", dest="fmt", choices=["jpg", "dicom", "both"], default="jpg",
                        help="image files to write: MIMIC-CXR-JPG .jpg, MIMIC-CXR .dcm, or both (default: jpg)")
    parser.add_argument("--layout", choices=["mimic", "openi"], default="mimic",
                        help="mimic: MIMIC-CXR(-JPG) files/ and tables; openi: the IU X-ray distribution "
                             "(ecgen-radiology/*.xml, NLMCXR_png/*.png, indiana_projections.csv) (default: mimic)")
    parser.add_argument("--image-size", type=int, default=512, help="image width and height in pixels (default: 512)")
    parser.add_argument("--faults", action="store_true",
                        help="also break a few files of each kind on purpose and list them in faults.csv")
    parser.add_argument("--workers", type=int, default=1, help="processes to render with (default: 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace data in --out that this generator did not write (its own earlier output is always replaced)")
    parser.add_argument("--disparity", default=None, metavar="ATTRIBUTE=GROUP",
                        help="plant a disparity: draw this group's findings fainter (e.g. sex=F, race=Black, age=80+)")
    parser.add_argument("--disparity-scale", type=float, default=0.35,
                        help="strength of the planted group's findings, as a share of the usual (default: 0.35)")
    parser.add_argument("--log", type=Path, default=None, help="also write the log to this file")


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log)
    try:
        summary = generate(args.out, studies=args.studies, seed=args.seed, fmt=args.fmt, image_size=args.image_size,
                           faults=args.faults, workers=args.workers, overwrite=args.overwrite,
                           layout=args.layout, disparity=args.disparity, disparity_scale=args.disparity_scale)
    except (ValueError, FileExistsError) as err:
        log.error("%s", err)
        return 2
    print(f"{summary['studies']} studies, {summary['images']} images in {summary['seconds']:.1f} s: "
          f"{summary['studies_per_second']:.1f} studies/s")
    print(json.dumps(summary))
    return 0
