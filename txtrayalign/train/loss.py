"""Symmetric InfoNCE (CLIP) with features gathered across ranks, and EMA-teacher self-distillation.

Under data parallelism each rank holds `n` local rows of the global batch. Features are gathered
*with gradients* (`gather_with_grad`: all_gather forward, sum-reduce + slice backward), and each
rank computes the loss of its own rows against all columns (`local_loss`). The mean over ranks
of the local losses is the full-matrix loss, and averaging the ranks' parameter gradients gives
exactly the full-batch gradient, with memory linear in the local batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.world = world()
        parts = [torch.empty_like(x) for _ in range(ctx.world)]
        dist.all_gather(parts, x.contiguous())
        ctx.n = x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's `x` (equal shapes) along dim 0; gradients flow back to their owners."""
    if world()[1] == 1:
        return x
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    rank, size = world()
    if size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def local_logits(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, gather: bool = True):
    """Local rows of image->text and text->image logits against the gathered global batch, and labels."""
    if not gather:
        return scale * img @ txt.T, scale * txt @ img.T, torch.arange(img.shape[0], device=img.device)
    rank, _ = world()
    all_img, all_txt = gather_with_grad(img), gather_with_grad(txt)
    logits_i = scale * img @ all_txt.T
    logits_t = scale * txt @ all_img.T
    labels = torch.arange(img.shape[0], device=img.device) + rank * img.shape[0]
    return logits_i, logits_t, labels


def clip_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE of the local rows; returns (loss, in-batch image->text accuracy of the local rows)."""
    loss, _, acc = objective(img, txt, scale)
    return loss, acc


def objective(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor,
              teacher: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
              distill_weight: float = 0.0, gather: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total loss, contrastive loss, accuracy) of the local rows.

    With a teacher (its image features, text features and scale), the total adds `distill_weight`
    times KL(teacher || student) of the similarity distributions, both directions.
    """
    logits_i, logits_t, labels = local_logits(img, txt, scale, gather)
    contrastive = 0.5 * (F.cross_entropy(logits_i, labels) + F.cross_entropy(logits_t, labels))
    acc = (logits_i.argmax(dim=1) == labels).float().mean().detach()
    total = contrastive
    if teacher is not None and distill_weight > 0:
        t_img, t_txt, t_scale = teacher
        all_t_img, all_t_txt = (gather_no_grad(t_img), gather_no_grad(t_txt)) if gather else (t_img, t_txt)
        p_i = F.softmax(t_scale * t_img @ all_t_txt.T, dim=1)
        p_t = F.softmax(t_scale * t_txt @ all_t_img.T, dim=1)
        kl_i = F.kl_div(F.log_softmax(logits_i, dim=1), p_i, reduction="batchmean")
        kl_t = F.kl_div(F.log_softmax(logits_t, dim=1), p_t, reduction="batchmean")
        total = contrastive + distill_weight * 0.5 * (kl_i + kl_t)
    return total, contrastive.detach(), acc
