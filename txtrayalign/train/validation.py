"""Validation: contrastive loss over the validation pairs and image->text retrieval recall@K among them."""

from __future__ import annotations

import numpy as np
import torch

from txtrayalign.train.loss import objective
from txtrayalign.train.step import autocast

RECALL_KS = (1, 5, 10)


@torch.no_grad()
def embed_pairs(model, loader, device: torch.device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    imgs, txts = [], []
    with autocast(device, dtype):
        for batch in loader:
            zi, zt = model(batch["images"], batch["input_ids"], batch["attention_mask"])
            imgs.append(zi.float())
            txts.append(zt.float())
    return torch.cat(imgs), torch.cat(txts)


def recall_at_k(img: torch.Tensor, txt: torch.Tensor, groups: np.ndarray, ks=RECALL_KS,
                chunk: int = 1024) -> dict[str, float]:
    """Image->text recall@K: a hit when any of the top K texts belongs to the image's study (`groups`).

    Exact ties with texts of other studies are broken at random in expectation (a collapsed model,
    whose scores all tie, scores chance rather than a perfect recall).
    """
    g = torch.as_tensor(np.array(groups, dtype=np.int64), device=img.device)
    hits = {k: 0.0 for k in ks}
    for start in range(0, img.shape[0], chunk):
        sims = img[start:start + chunk] @ txt.T
        correct = g[start:start + chunk, None] == g[None, :]
        best_correct = sims.masked_fill(~correct, float("-inf")).max(dim=1).values
        wrong = sims.masked_fill(correct, float("-inf"))
        greater = (wrong > best_correct[:, None]).sum(dim=1).double()
        ties = (wrong == best_correct[:, None]).sum(dim=1).double()
        for k in ks:
            hits[k] += float(((k - greater) / (ties + 1)).clamp(0, 1).sum())
    return {f"val_recall@{k}": hits[k] / img.shape[0] for k in ks}


def chance_recall(groups: np.ndarray, ks=RECALL_KS) -> dict[str, float]:
    """Expected recall@K of a random ranking (texts of the same study count as correct)."""
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    n = len(groups)
    per_image = counts[inverse]
    out = {}
    for k in ks:
        # P(at least one of c correct among k drawn from n without replacement)
        p = np.array([1.0 - np.prod([(n - c - j) / (n - j) for j in range(min(k, n - c))]) if c < n else 1.0
                      for c in per_image])
        out[f"chance@{k}"] = float(p.mean())
    return out


@torch.no_grad()
def validate(model, scale_owner, loader, groups: np.ndarray, batch_size: int, device: torch.device, dtype) -> dict:
    """val_loss (mean symmetric InfoNCE over consecutive batches of `batch_size`) and val_recall@1/5/10."""
    was_training = model.training
    model.eval()
    img, txt = embed_pairs(model, loader, device, dtype)
    model.train(was_training)
    scale = scale_owner.scale().float()
    losses = []
    for start in range(0, img.shape[0] - 1, batch_size):
        stop = min(img.shape[0], start + batch_size)
        if stop - start < 2:
            break
        loss, _, _ = objective(img[start:stop], txt[start:stop], scale, gather=False)
        losses.append(float(loss))
    out = {"val_loss": float(np.mean(losses)) if losses else float("nan")}
    out.update(recall_at_k(img, txt, groups))
    return out
