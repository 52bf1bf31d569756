"""Two CPU processes (gloo) with the same global batch train the same model as one process."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from txtrayalign.train.checkpoint import load
from txtrayalign.train.loop import Inputs, train
from txtrayalign.train.toydata import tiny_experiment, write_toy_dataset


def settings() -> dict:
    cfg = tiny_experiment(epochs=1, optimizer="sgd", lr_image=0.05, lr_text=0.05, lr_head=0.05, warmup_steps=0)
    cfg["text_encoder"]["dropout"] = 0.0  # dropout masks differ with the number of processes
    cfg["image_encoder"]["name"] = "compact_cnn_gn"  # BatchNorm statistics would be per process
    return cfg


def _rank_main(rank: int, world: int, port: int, toy: dict, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), TXTRAYALIGN_NO_PROGRESS="1")
    train(settings(), Inputs(toy["images_index"], toy["split"], out, toy["sentences"], toy["sections"]), device="cpu")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    toy = write_toy_dataset(tmp_path / "toy", studies=80, image_size=32, seed=1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank_main, args=(2, port, toy, str(tmp_path / "ddp")), nprocs=2, join=True)
    train(settings(), Inputs(toy["images_index"], toy["split"], tmp_path / "one", toy["sentences"], toy["sections"]),
          device="cpu")
    one, two = load(tmp_path / "one" / "last.pt"), load(tmp_path / "ddp" / "last.pt")
    assert two["finished"] and len(two["history"]) == len(one["history"]) > 1
    for a, b in zip(one["history"], two["history"], strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-3  # float sums in another order only
    assert abs(one["history"][0]["loss"] - one["history"][-1]["loss"]) > 1e-3  # it did train
    worst = max(float((v - two["model"][k]).abs().max()) for k, v in one["model"].items())
    assert worst < 1e-3, worst
    assert (tmp_path / "ddp" / "best.pt").is_file()
