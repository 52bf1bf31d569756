"""One optimisation step's forward and backward: direct, or micro-batched with cached embeddings.

The cached-embedding step (GradCache, Gao et al. 2021) lets the contrastive batch exceed what fits
in memory: (1) embed the whole batch without gradients, micro-batch by micro-batch, keeping each
micro-batch's RNG state; (2) compute the loss on the cached embeddings and its gradient with
respect to them; (3) re-embed each micro-batch with gradients under the same RNG state and
backpropagate the cached embedding gradients. Parameter gradients equal the full-batch ones for
layers without dependence between samples (GroupNorm, LayerNorm, eval-mode BatchNorm); train-mode
BatchNorm normalises per micro-batch, as in any micro-batched training, and its running
statistics are updated once (by the second pass).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from txtrayalign.train.loss import objective


@dataclass
class StepResult:
    """Detached 0-d tensors (no device sync until read)."""

    loss: torch.Tensor
    contrastive: torch.Tensor
    acc: torch.Tensor


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _rng_capture(device: torch.device):
    cpu = torch.get_rng_state()
    gpu = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return cpu, gpu


def _rng_restore(state, device: torch.device) -> None:
    cpu, gpu = state
    torch.set_rng_state(cpu)
    if gpu is not None:
        torch.cuda.set_rng_state(gpu, device)


def _running_stats(model: nn.Module) -> list[torch.Tensor]:
    """BatchNorm running statistics: the cached pass must not update them a second time."""
    return [b for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]


def _chunks(n: int, size: int | None) -> list[slice]:
    size = n if not size else size
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


@torch.no_grad()
def teacher_features(teacher: nn.Module, batch: dict, micro: int | None, device, dtype):
    outs_i, outs_t = [], []
    with autocast(device, dtype):
        for c in _chunks(batch["images"].shape[0], micro):
            zi, zt = teacher(batch["images"][c], batch["input_ids"][c], batch["attention_mask"][c])
            outs_i.append(zi)
            outs_t.append(zt)
    return torch.cat(outs_i), torch.cat(outs_t), teacher.scale().float()


def forward_backward(model: nn.Module, scale_owner: nn.Module, batch: dict, *, micro: int | None,
                     device: torch.device, dtype: torch.dtype | None, scaler=None,
                     teacher: nn.Module | None = None, distill_weight: float = 0.0) -> StepResult:
    """Accumulate this step's gradients into the parameters' .grad (the caller zeroes them before).

    `model(images, input_ids, attention_mask) -> (image_emb, text_emb)`; `scale_owner.scale()` is
    the clamped exp(logit_scale). With `micro` set below the local batch size, the GradCache path runs.
    """
    n = batch["images"].shape[0]
    t_feats = teacher_features(teacher, batch, micro, device, dtype) if teacher is not None and distill_weight > 0 else None

    if not micro or micro >= n:
        with autocast(device, dtype):
            img, txt = model(batch["images"], batch["input_ids"], batch["attention_mask"])
        loss, contrastive, acc = objective(img, txt, scale_owner.scale().float(), t_feats, distill_weight)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        return StepResult(loss.detach(), contrastive, acc)

    chunks = _chunks(n, micro)
    states, cached_i, cached_t = [], [], []
    stats = _running_stats(model)
    saved_stats = [b.clone() for b in stats]
    with torch.no_grad(), autocast(device, dtype):
        for c in chunks:
            states.append(_rng_capture(device))
            zi, zt = model(batch["images"][c], batch["input_ids"][c], batch["attention_mask"][c])
            cached_i.append(zi)
            cached_t.append(zt)
        for b, saved in zip(stats, saved_stats, strict=True):
            b.copy_(saved)
    img = torch.cat(cached_i).requires_grad_(True)
    txt = torch.cat(cached_t).requires_grad_(True)
    loss, contrastive, acc = objective(img, txt, scale_owner.scale().float(), t_feats, distill_weight)
    (scaler.scale(loss) if scaler is not None else loss).backward()  # grads w.r.t. embeddings (+ logit scale)
    after = _rng_capture(device)
    for c, state in zip(chunks, states, strict=True):
        _rng_restore(state, device)
        with autocast(device, dtype):
            zi, zt = model(batch["images"][c], batch["input_ids"][c], batch["attention_mask"][c])
        surrogate = (zi * img.grad[c]).sum() + (zt * txt.grad[c]).sum()
        surrogate.backward()
    _rng_restore(after, device)
    return StepResult(loss.detach(), contrastive, acc)
