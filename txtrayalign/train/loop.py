"""The training loop: optimiser and schedule, AMP, EMA teacher, checkpoints and exact resume.

A step's randomness (batch order, augmentation, sampled sentences, dropout) is a function of
(seed, epoch, step), and `last.pt` holds everything else that changes (weights, optimiser,
scaler, teacher, position, history, RNG states), so a run killed at any moment and started again
with the same arguments ends where an unbroken run ends (bit-exactly on the CPU).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from txtrayalign.train import checkpoint as ckpt
from txtrayalign.train import distributed as ddp
from txtrayalign.train.data import (
    Collate,
    EpochBatchSampler,
    EvalPairs,
    TrainPairs,
    load_pairs,
    training_corpus,
)
from txtrayalign.train.model import ClipModel, apply_freezing, param_groups
from txtrayalign.train.report import Board, plot_curves, write_history
from txtrayalign.train.step import forward_backward
from txtrayalign.train.tokenizer import get_tokenizer
from txtrayalign.train.validation import chance_recall, validate
from txtrayalign.utils import atomic_path, code_fingerprint, progress

log = logging.getLogger(__name__)


@dataclass
class Inputs:
    images_index: Path
    split: Path
    out_dir: Path
    sentences: Path | None = None
    sections: Path | None = None


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """None = fp32. auto: bf16 on CUDA, fp32 on the CPU."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("train.precision fp16 needs CUDA; use fp32 or bf16 on the CPU")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to zero at `total`."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress_ = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress_)))


def step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    return ((seed * 1_000_003 + epoch) * 1_000_003 + step) * 101 + rank


def build_optimizer(model: ClipModel, cfg: dict) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    if not groups:
        raise ValueError("every parameter is frozen: nothing to train")
    if cfg["train"]["optimizer"] == "sgd":
        return torch.optim.SGD(groups, momentum=0.9)
    on_cuda = all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, betas=(0.9, 0.98), eps=1e-6, fused=on_cuda or None)


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, decay: float) -> None:
    t_params = [p for p in teacher.parameters()]
    s_params = [p.detach() for p in student.parameters()]
    torch._foreach_lerp_(t_params, s_params, 1.0 - decay)
    for tb, sb in zip(teacher.buffers(), student.buffers(), strict=True):
        tb.copy_(sb)


def set_train_mode(model: ClipModel, cfg: dict) -> None:
    """Training mode, except frozen encoders (no BatchNorm statistic updates, no dropout)."""
    model.train()
    if cfg["train"]["freeze_image"]:
        model.image_encoder.eval()
    if cfg["train"]["freeze_text"]:
        model.text_encoder.eval()


def _save_config(cfg: dict, path: Path) -> None:
    with atomic_path(path, suffix=".yaml.tmp") as tmp:
        tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))


# Settings that do not change what a run computes: a run may resume with other values of these.
RESUME_INSENSITIVE = {("name",), ("train", "num_workers"), ("train", "checkpoint_every"), ("train", "gpus"),
                      ("train", "compile")}


def _comparable(cfg: dict) -> dict:
    out = copy.deepcopy(cfg)
    for path in RESUME_INSENSITIVE:
        node = out
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    return out


def resumable_state(last_path: Path, cfg: dict, code: str) -> dict | None:
    """The state in `last_path` if it was written by this code with these settings, else None (start over)."""
    if not last_path.is_file():
        return None
    state = ckpt.load(last_path)
    config_path = last_path.parent / "config.yaml"
    old_cfg = yaml.safe_load(config_path.read_text()) if config_path.is_file() else None
    if old_cfg is None or _comparable(old_cfg) != _comparable(cfg):
        log.warning("%s was written with other experiment settings: starting over", last_path)
        return None
    if state.get("code") != code:
        log.warning("%s was written by another version of the training code: starting over", last_path)
        return None
    return state


def restore_outputs(out: Path, state: dict) -> None:
    """A finished run's files that a workflow manager may have removed (best.pt from its hidden link)."""
    best, kept = out / "best.pt", out / BEST_LINK
    if not best.is_file() and kept.is_file():
        _link(kept, best)
    if not (out / "history.csv").is_file():
        write_history(state["history"], out / "history.csv")
    if not (out / "curves.png").is_file():
        plot_curves(state["history"], out / "curves.png")


BEST_LINK = ".best.pt"  # a hard link to best.pt that survives a workflow manager deleting best.pt


def _link(src: Path, dst: Path) -> None:
    import os
    import shutil

    tmp = dst.with_name(dst.name + ".linktmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _loader(dataset, collate, num_workers: int, pin: bool, **kw) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset, collate_fn=collate, num_workers=num_workers, pin_memory=pin,
        persistent_workers=num_workers > 0, prefetch_factor=4 if num_workers > 0 else None, **kw,
    )


def train(cfg: dict, inputs: Inputs, device: str = "auto", max_steps: int | None = None) -> dict:
    """Train one experiment into `inputs.out_dir`; returns the final summary (metrics, paths, steps)."""
    rank, world_size, dev = ddp.setup(device)
    t = cfg["train"]
    out = Path(inputs.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out / "last.pt", out / "best.pt"
    code = code_fingerprint("train")
    state = resumable_state(last_path, cfg, code) if rank == 0 or world_size == 1 else None
    if world_size > 1:  # every rank follows rank 0's decision
        box = [state is not None]
        torch.distributed.broadcast_object_list(box, src=0)
        if box[0] and state is None:
            state = ckpt.load(last_path)
    if state is not None and state.get("finished"):
        log.info("%s is a finished run: nothing to do", last_path)
        if rank == 0:
            restore_outputs(out, state)
        return dict(state["summary"])
    if state is None and rank == 0:
        for name in ("last.pt", "best.pt", BEST_LINK, "history.csv", "curves.png"):
            (out / name).unlink(missing_ok=True)
        import shutil

        for folder in ("tokenizer", "tensorboard"):
            if (out / folder).is_dir():
                shutil.rmtree(out / folder)
    ddp.barrier()

    data = load_pairs(inputs.split, inputs.images_index, inputs.sentences, inputs.sections, t["text_mode"])
    if rank == 0:
        tokenizer = get_tokenizer(cfg["text_encoder"], out, training_corpus(data))
        _save_config(cfg, out / "config.yaml")
    ddp.barrier()
    if rank != 0:
        tokenizer = get_tokenizer(cfg["text_encoder"], out)

    torch.manual_seed(t["seed"])
    model = ClipModel(cfg, tokenizer)
    apply_freezing(model, cfg)
    model.to(dev)
    if t["channels_last"]:
        model.image_encoder.to(memory_format=torch.channels_last)
    ddp.broadcast_parameters(model)
    teacher = None
    if t["distill"]["enabled"]:
        teacher = copy.deepcopy(model).requires_grad_(False).eval()
    optimizer = build_optimizer(model, cfg)
    dtype = amp_dtype(t["precision"], dev)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None

    train_table = data.splits.get("train")
    sampler_probe = EpochBatchSampler(len(train_table) if train_table is not None else 0, t["batch_size"], t["seed"],
                                      t["epochs"], rank=rank, world_size=world_size)
    steps_per_epoch = sampler_probe.steps_per_epoch
    total_steps = steps_per_epoch * t["epochs"]

    history: list[dict] = []
    start_epoch = start_step = 0
    best_val = float("inf")
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if teacher is not None and state.get("teacher"):
            teacher.load_state_dict(state["teacher"])
        start_epoch, start_step = int(state["epoch"]), int(state["step"])
        history = [dict(r) for r in state["history"]]
        best_val = float(state["best_val"])
        ckpt.set_rng_state(state["rng"])
        log.info("resuming from %s at epoch %d step %d", last_path, start_epoch, start_step)

    forward_model = torch.compile(model) if t["compile"] else model
    pin = dev.type == "cuda"
    micro = t["micro_batch_size"]  # per forward pass on each process (memory), not divided by processes
    collate = Collate(tokenizer, cfg["text_encoder"]["max_length"], pad_to_max=bool(t["compile"]))
    sampler = EpochBatchSampler(len(train_table), t["batch_size"], t["seed"], t["epochs"], start_epoch, start_step,
                                rank, world_size)
    train_ds = TrainPairs(data, train_table, t["image_size"], t["sentences_per_image"], t["seed"], t["augment"])
    train_loader = _loader(train_ds, collate, t["num_workers"], pin, batch_sampler=sampler)
    val_table = data.splits.get("validate")
    val_loader = None
    if rank == 0 and val_table is not None and len(val_table) >= 2:
        val_ds = EvalPairs(data, val_table, t["image_size"], t["sentences_per_image"])
        val_loader = _loader(val_ds, collate, min(t["num_workers"], 2), pin, batch_size=t["batch_size"],
                             shuffle=False)
        log.info("validation: %d pairs; chance %s", len(val_table), chance_recall(val_table.study_id))

    board = Board(out / "tensorboard" if rank == 0 else None)
    params = [p for p in model.parameters() if p.requires_grad]
    set_train_mode(model, cfg)
    base_lrs = [g["base_lr"] for g in optimizer.param_groups]

    def save_last(epoch: int, step: int, finished: bool = False, summary: dict | None = None) -> None:
        if rank != 0:
            return
        ckpt.save(last_path, {
            "model": ckpt.module_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": {"warmup_steps": t["warmup_steps"], "total_steps": total_steps,
                          "global_step": epoch * steps_per_epoch + step},
            "scaler": scaler.state_dict() if scaler is not None else {},
            "teacher": ckpt.module_state(teacher) if teacher is not None else {},
            "epoch": epoch, "step": step, "history": history, "best_val": best_val,
            "rng": ckpt.rng_state(), "finished": finished, "summary": summary or {}, "code": code,
        })

    def save_best(metrics: dict) -> None:
        ckpt.save(best_path, {"model": ckpt.module_state(model), "metrics": metrics})
        _link(best_path, out / BEST_LINK)

    pending: list[tuple] = []  # (row, loss tensor, acc tensor): read lazily to avoid a device sync per step

    def flush_pending() -> None:
        for row, loss_t, acc_t in pending:
            row["loss"] = ddp.mean_over_ranks(float(loss_t), dev) if world_size > 1 else float(loss_t)
            row["acc"] = float(acc_t)
            board.scalars({"train/loss": row["loss"], "train/acc": row["acc"], "train/lr": row["lr"]}, row["step"])
        pending.clear()

    stop_at = max_steps if max_steps is not None else total_steps
    bar = progress(train_loader, desc=f"train {out.name}", total=len(sampler), unit="step") if rank == 0 else train_loader
    t_last, pairs_since = time.perf_counter(), 0
    stopped_early = False
    for batch in bar:
        epoch, step = int(batch["epoch"]), int(batch["step"])
        global_step = epoch * steps_per_epoch + step
        if global_step >= stop_at:
            stopped_early = True
            break
        factor = lr_factor(global_step, t["warmup_steps"], total_steps)
        for g, base in zip(optimizer.param_groups, base_lrs, strict=True):
            g["lr"] = base * factor
        torch.manual_seed(step_seed(t["seed"], epoch, step, rank))
        batch["images"] = batch["images"].to(dev, non_blocking=True)
        batch["input_ids"] = batch["input_ids"].to(dev, non_blocking=True)
        batch["attention_mask"] = batch["attention_mask"].to(dev, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        result = forward_backward(forward_model, model, batch, micro=micro, device=dev, dtype=dtype, scaler=scaler,
                                  teacher=teacher, distill_weight=t["distill"]["weight"])
        ddp.average_gradients(params)
        if scaler is not None:
            scaler.unscale_(optimizer)
        if t["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(params, t["grad_clip"])
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if teacher is not None:
            ema_update(teacher, model, t["distill"]["ema"])

        row = {"step": global_step + 1, "epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "loss": math.nan,
               "acc": math.nan, "val_loss": math.nan, "val_recall@1": math.nan, "val_recall@5": math.nan,
               "val_recall@10": math.nan}
        history.append(row)
        pending.append((row, result.contrastive, result.acc))
        pairs_since += t["batch_size"]
        end_of_epoch = step == steps_per_epoch - 1
        if len(pending) >= 10 or end_of_epoch or (global_step + 1) % t["checkpoint_every"] == 0:
            flush_pending()
            now = time.perf_counter()
            rate = pairs_since / max(now - t_last, 1e-9)
            t_last, pairs_since = now, 0
            if rank == 0 and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['acc']:.2f}", pairs_s=f"{rate:.0f}")
                board.scalars({"train/pairs_per_s": rate}, row["step"])
        if end_of_epoch:
            if val_loader is not None:
                metrics = validate(forward_model, model, val_loader, val_table.study_id, t["batch_size"], dev, dtype)
                set_train_mode(model, cfg)
                row.update(metrics)
                board.scalars({f"val/{k}": v for k, v in metrics.items()}, row["step"])
                log.info("epoch %d: %s", epoch + 1, {k: round(v, 4) for k, v in metrics.items()})
                if rank == 0 and metrics["val_loss"] < best_val:
                    best_val = metrics["val_loss"]
                    save_best({k: float(v) for k, v in row.items()})
            save_last(epoch + 1, 0)
            if rank == 0:
                write_history(history, out / "history.csv")
        elif (global_step + 1) % t["checkpoint_every"] == 0:
            save_last(epoch, step + 1)
    flush_pending()
    if hasattr(bar, "close"):
        bar.close()

    done_steps = history[-1]["step"] if history else start_epoch * steps_per_epoch + start_step
    finished = not stopped_early and done_steps >= total_steps
    summary = {"steps": int(done_steps), "total_steps": int(total_steps), "finished": finished,
               "best_val_loss": best_val if best_val < float("inf") else None}
    last_val = [r for r in history if not math.isnan(r.get("val_loss", math.nan))]
    if last_val:
        summary.update({k: float(last_val[-1][k]) for k in ("val_loss", "val_recall@1", "val_recall@5", "val_recall@10")})
    if rank == 0:
        next_epoch, next_step = divmod(done_steps, steps_per_epoch)
        save_last(next_epoch, next_step, finished=finished, summary=summary)
        if finished and not best_path.is_file():
            save_best({"note": "no validation pairs: best.pt is the final model"})
        write_history(history, out / "history.csv")
        plot_curves(history, out / "curves.png")
    board.close()
    ddp.barrier()
    log.info("%s after %d of %d steps: %s", "finished" if finished else "stopped", done_steps, total_steps, summary)
    return summary
