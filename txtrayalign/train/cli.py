"""`txtrayalign train`: one experiment's contrastive training (DDP under torchrun)."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from txtrayalign.utils import setup_logging

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment-json", required=True,
                        help="the experiment's settings as a JSON string or the path of a JSON file "
                             "(the experiment keys of txtrayalign/config.schema.yaml: gpus, image_encoder, text_encoder, "
                             "embed_dim, train, ...; unknown keys are an error naming them)")
    parser.add_argument("--images-index", required=True, type=Path, help="images/<size>/index.parquet")
    parser.add_argument("--sentences", type=Path, default=None, help="text/sentences.parquet (text_mode sentences)")
    parser.add_argument("--sections", type=Path, default=None, help="text/sections.parquet (text_mode section)")
    parser.add_argument("--split", required=True, type=Path, help="splits/<subset>.parquet")
    parser.add_argument("--out-dir", required=True, type=Path, help="models/<exp>: checkpoints, history, curves")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (auto: CUDA when available)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop after this many optimiser steps in all (the run resumes later from last.pt)")
    parser.add_argument("--log", type=Path, default=None, help="also write the log to this file")


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from txtrayalign.train import train
    from txtrayalign.train.config import resolve
    from txtrayalign.train.loop import Inputs

    cfg = resolve(args.experiment_json)
    log.info("experiment settings: %s", json.dumps(cfg))
    if cfg["gpus"] > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        log.warning("gpus=%d but this is a single process: launch with `torchrun --nproc_per_node %d "
                    "-m txtrayalign train ...` to use them", cfg["gpus"], cfg["gpus"])
    for p in (args.images_index, args.split, args.sentences, args.sections):
        if p is not None and not Path(p).is_file():
            raise FileNotFoundError(f"input not found: {p}")
    inputs = Inputs(images_index=args.images_index, split=args.split, out_dir=args.out_dir,
                    sentences=args.sentences, sections=args.sections)
    try:
        train(cfg, inputs, device=args.device, max_steps=args.max_steps)
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0
