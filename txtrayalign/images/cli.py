"""The `images`, `merge-images` and `show-image` subcommands."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from txtrayalign.errors import InputError
from txtrayalign.images.decode import WINDOWS, ImageDecodeError
from txtrayalign.images.preprocess import load_preprocessed
from txtrayalign.images.resize import RESIZE_MODES
from txtrayalign.images.shards import (
    COMPRESSIONS,
    PARQUET_TMP_SUFFIX,
    SHARD_TMP_SUFFIX,
    ShardSettings,
    SkippedShareExceeded,
    merge_shards,
    select_shard_rows,
    shard_name,
    write_shard,
)
from txtrayalign.tables import read_table
from txtrayalign.utils import atomic_path, remove_stale_temporaries, setup_logging, write_parquet_atomic

log = logging.getLogger(__name__)

INDEX_COLUMNS = ["dicom_id", "path", "group"]


def _add_preprocessing(parser: argparse.ArgumentParser, required_size: bool = True) -> None:
    parser.add_argument(
        "--size", type=int, required=required_size, help="output side S in pixels (images are S x S)"
    )
    parser.add_argument(
        "--resize-mode",
        default="center_crop",
        choices=RESIZE_MODES,
        help="center_crop: central square of the short side, resampled to S; pad: long side to S, "
        "centred on black; shortest_side: torchvision Resize(S)+CenterCrop(S) (default center_crop)",
    )
    parser.add_argument(
        "--window",
        default="bitdepth",
        choices=WINDOWS,
        help="8-bit scaling: bitdepth maps the stored bit depth's range (after rescale and the file's "
        "VOI window/LUT) to 0..255; percentile maps the image's 0.5-99.5 percentiles (default bitdepth)",
    )


def configure_shard(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, help="images.parquet written by `txtrayalign index`")
    parser.add_argument("--root", required=True, help="dataset root the index's paths are relative to")
    parser.add_argument("--shard", required=True, help="MIMIC group to write, p10 ... p19")
    parser.add_argument("--part", type=int, default=1, help="which part of the group, 1-based (default 1)")
    parser.add_argument(
        "--parts",
        type=int,
        default=1,
        help="split the group into this many contiguous ranges of its rows sorted by "
        "(subject_id, study_id, dicom_id) (default 1)",
    )
    _add_preprocessing(parser)
    parser.add_argument(
        "--compression",
        default="none",
        choices=COMPRESSIONS,
        help="HDF5 compression of the images dataset (default none)",
    )
    parser.add_argument("--workers", type=int, default=1, help="decoding processes (default 1: no pool)")
    parser.add_argument(
        "--chunksize", type=int, default=8, help="images per task sent to a worker (default 8)"
    )
    parser.add_argument(
        "--max-skipped-share",
        type=float,
        default=0.01,
        help="fail (and write no shard) when more than this share of the images cannot be decoded (default 0.01)",
    )
    parser.add_argument("--out", required=True, help="the shard to write, e.g. images/256/p10.h5")
    parser.add_argument(
        "--skipped", required=True, help="parquet of the files skipped: path, dicom_id, error_kind, message"
    )
    parser.add_argument("--log", default=None, help="also write the log to this file")


def read_image_index(path: str | Path) -> pd.DataFrame:
    """images.parquet, checked for the columns this stage needs."""
    return read_table(path, "index_images", INDEX_COLUMNS)


def run_shard(args: argparse.Namespace) -> int:
    setup_logging(args.log)
    # A killed earlier run of this shard left its (possibly GB-sized) temporaries: remove them first.
    remove_stale_temporaries(args.out, SHARD_TMP_SUFFIX)
    remove_stale_temporaries(args.skipped, PARQUET_TMP_SUFFIX)
    index = read_image_index(args.index)
    try:
        rows = select_shard_rows(index, args.shard, args.part, args.parts)
    except ValueError as exc:
        raise InputError(f"--part/--parts: {exc}") from exc
    name = shard_name(args.shard, args.part, args.parts)
    settings = ShardSettings(size=args.size, resize_mode=args.resize_mode, window=args.window)
    log.info("shard %s: %d images from %s, %s", name, len(rows), args.root, settings)
    if rows.empty:
        log.warning("shard %s has no images in %s: writing an empty shard", name, args.index)
    try:
        written, skipped = write_shard(
            rows,
            args.root,
            args.out,
            settings,
            compression=args.compression,
            workers=args.workers,
            chunksize=args.chunksize,
            max_skipped_share=args.max_skipped_share,
        )
    except SkippedShareExceeded as exc:
        log.error("shard %s not written: %s", name, exc)
        return 1
    write_parquet_atomic(skipped, args.skipped)
    counts = skipped["error_kind"].value_counts().to_dict() if len(skipped) else {}
    log.info("wrote %s: %d images, %d skipped %s", args.out, written, len(skipped), counts)
    return 0


def configure_merge(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shards", nargs="+", required=True, help="the shard .h5 files")
    parser.add_argument("--skipped", nargs="*", default=[], help="the shards' .skipped.parquet files")
    parser.add_argument("--out-index", required=True, help="index.parquet: dicom_id, shard, row")
    parser.add_argument("--out-skipped", required=True, help="skipped.parquet: every shard's skipped files")
    parser.add_argument("--log", default=None, help="also write the log to this file")


def run_merge(args: argparse.Namespace) -> int:
    setup_logging(args.log)
    try:
        index, skipped = merge_shards(args.shards, args.skipped, args.out_index, args.out_skipped)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (OSError, ValueError) as exc:  # a shard that is not one, or shards that disagree
        raise InputError(str(exc)) from exc
    log.info(
        "wrote %s: %d images in %d shards; %s: %d skipped",
        args.out_index,
        len(index),
        len(args.shards),
        args.out_skipped,
        len(skipped),
    )
    return 0


def configure_show(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a DICOM, JPEG or PNG file")
    _add_preprocessing(parser)
    parser.add_argument("--out", required=True, help="the PNG to write (exactly the model's input)")


def run_show(args: argparse.Namespace) -> int:
    from PIL import Image

    setup_logging(None)
    try:
        image = load_preprocessed(args.path, args.size, args.resize_mode, args.window)
    except ImageDecodeError as exc:
        raise InputError(f"{exc.message} ({exc.kind})") from exc
    with atomic_path(args.out, suffix=".png.tmp") as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    log.info("wrote %s (%dx%d, %s, %s)", args.out, args.size, args.size, args.resize_mode, args.window)
    return 0
