"""Exact top-k retrieval by chunked matrix products, with memory bounded for any bank size.

`topk_similarity(queries, keys, k)` returns, for every query row, the `k` key rows with the largest
inner product (cosine similarity for L2-normalised embeddings), best first. The same function serves
image->text, text->image and image->image retrieval: any two embedding sets of the same width.

Memory: only one (query_chunk, key_chunk) float32 block of scores plus the running (query_chunk, k)
best-so-far exist at a time, whatever the bank size.

Ties are broken deterministically: among equal scores the lower key index wins, both for which keys
are kept and for their order. `torch.topk` alone does not promise that, so after each block's top-k
the rows where the k-th score is shared with a key left out (seen from a top-(k+1)) are redone: keep
the scores above the k-th and the lowest columns equal to it (rare for real embeddings, frequent for
small integer scores such as the label oracle's).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from txtrayalign.utils import progress

log = logging.getLogger(__name__)


def _as_float32(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
    return t.to(torch.float32)


def _order_by_score_then_index(
    scores: torch.Tensor, index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by score descending, equal scores by index ascending."""
    by_index = torch.argsort(index, dim=1, stable=True)
    scores = torch.gather(scores, 1, by_index)
    index = torch.gather(index, 1, by_index)
    by_score = torch.argsort(scores, dim=1, descending=True, stable=True)
    return torch.gather(scores, 1, by_score), torch.gather(index, 1, by_score)


def _block_topk(block: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of each row of `block` with ties resolved towards the lower column index."""
    width = block.shape[1]
    values, index = torch.topk(block, min(k + 1, width), dim=1, largest=True, sorted=True)
    if width > k:
        # A row is ambiguous when the best left-out score equals the k-th kept one: torch.topk may
        # have kept a higher column than a stable order keeps. Those rows are redone below.
        ambiguous = torch.nonzero(values[:, k] == values[:, k - 1]).flatten()
        values, index = values[:, :k].contiguous(), index[:, :k].contiguous()
        if ambiguous.numel():
            # Keep every score above the k-th, then the lowest columns among those equal to it:
            # linear passes over the rows, no sort.
            sub = block[ambiguous]
            kth = values[ambiguous, k - 1 :]
            greater = sub > kth
            equal = sub == kth
            need = k - greater.sum(dim=1, keepdim=True)
            take = greater | (equal & (torch.cumsum(equal, dim=1, dtype=torch.int32) <= need))
            cols = torch.nonzero(take, as_tuple=True)[1].view(-1, k)  # row-major: ascending columns
            values[ambiguous] = torch.gather(sub, 1, cols)
            index[ambiguous] = cols
    return _order_by_score_then_index(values, index)


def topk_similarity(
    queries: np.ndarray | torch.Tensor,
    keys: np.ndarray | torch.Tensor,
    k: int,
    query_chunk: int = 4096,
    key_chunk: int = 16384,
    show_progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The `k` best keys for every query by inner product, exact, computed block by block.

    Args:
        queries: (N, D) embeddings (any float dtype; each block is computed in float32).
        keys: (M, D) embeddings of the same width.
        k: how many keys per query; 1 <= k <= M.
        query_chunk, key_chunk: block sizes (memory is O(query_chunk * key_chunk)).
        show_progress: show a progress bar over query blocks.

    Returns:
        scores (N, k) float32 and indices (N, k) int64 into `keys`, best first; equal scores are
        ordered (and cut at k) by the lower key index.
    """
    q_all = torch.as_tensor(queries)
    k_all = torch.as_tensor(keys)
    if q_all.ndim != 2 or k_all.ndim != 2:
        raise ValueError(f"queries and keys must be 2-D, got {tuple(q_all.shape)} and {tuple(k_all.shape)}")
    if q_all.shape[1] != k_all.shape[1]:
        raise ValueError(f"embedding widths differ: queries {q_all.shape[1]}, keys {k_all.shape[1]}")
    n, m = q_all.shape[0], k_all.shape[0]
    if not 1 <= k <= m:
        raise ValueError(f"k={k} must be between 1 and the number of keys ({m})")
    if query_chunk < 1 or key_chunk < 1:
        raise ValueError("chunk sizes must be positive")
    out_scores = np.empty((n, k), dtype=np.float32)
    out_index = np.empty((n, k), dtype=np.int64)
    starts = range(0, n, query_chunk)
    if show_progress:
        starts = progress(starts, desc="retrieve", total=len(starts), unit="block")
    for qs in starts:
        q = _as_float32(q_all[qs : qs + query_chunk])
        best_scores: torch.Tensor | None = None
        best_index: torch.Tensor | None = None
        for ks in range(0, m, key_chunk):
            block = q @ _as_float32(k_all[ks : ks + key_chunk]).T
            kk = min(k, block.shape[1])
            s, i = _block_topk(block, kk)
            i = i + ks
            if best_scores is None:
                best_scores, best_index = s, i
                continue
            # Earlier blocks hold lower indices and each part is already ordered (score desc, index asc),
            # so a stable descending sort of the concatenation keeps lower indices first among ties.
            cat_s = torch.cat([best_scores, s], dim=1)
            cat_i = torch.cat([best_index, i], dim=1)
            order = torch.argsort(cat_s, dim=1, descending=True, stable=True)[:, :k]
            best_scores = torch.gather(cat_s, 1, order)
            best_index = torch.gather(cat_i, 1, order)
        out_scores[qs : qs + q.shape[0]] = best_scores.numpy()
        out_index[qs : qs + q.shape[0]] = best_index.numpy()
    return out_scores, out_index


def rank_of_targets(
    queries: np.ndarray, keys: np.ndarray, target: np.ndarray, max_block_elements: int = 1 << 25
) -> np.ndarray:
    """1-based rank of key `target[i]` for query i among all keys (ties count against: rank = 1 + #better,
    + #equal with a lower index), computed over query chunks without sorting.

    Each query's own score comes from the same (chunk, M) product as the scores it is compared with,
    so the comparison is exact; memory is bounded by `max_block_elements` float32 scores per chunk.
    """
    q_all = torch.as_tensor(queries)
    k_all = _as_float32(torch.as_tensor(keys))
    target_t = torch.as_tensor(np.asarray(target, dtype=np.int64))
    ranks = np.empty(q_all.shape[0], dtype=np.int64)
    col = torch.arange(k_all.shape[0])
    chunk = max(1, min(4096, max_block_elements // max(1, k_all.shape[0])))
    for s in range(0, q_all.shape[0], chunk):
        q = _as_float32(q_all[s : s + chunk])
        scores = q @ k_all.T
        t = target_t[s : s + chunk]
        own = torch.gather(scores, 1, t[:, None])
        better = (scores > own).sum(dim=1)
        tied_before = ((scores == own) & (col[None, :] < t[:, None])).sum(dim=1)
        ranks[s : s + q.shape[0]] = (1 + better + tied_before).numpy()
    return ranks
