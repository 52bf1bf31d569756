"""The contrastive loss against a naive reference, gathered local loss, distillation and GradCache gradients."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from txtrayalign.train.loss import clip_loss, objective


def naive_clip_loss(img, txt, scale):
    n = img.shape[0]
    total = 0.0
    for i in range(n):  # image i against every text, and text i against every image
        li = torch.stack([scale * img[i] @ txt[j] for j in range(n)])
        lt = torch.stack([scale * txt[i] @ img[j] for j in range(n)])
        total = total - torch.log_softmax(li, 0)[i] - torch.log_softmax(lt, 0)[i]
    return total / (2 * n)


def features(n=8, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    txt = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    return img, txt


def test_loss_equals_naive_reference():
    img, txt = features()
    scale = torch.tensor(14.3, dtype=torch.float64)
    loss, acc = clip_loss(img, txt, scale)
    assert torch.allclose(loss, naive_clip_loss(img, txt, scale), atol=1e-12)
    expected_acc = ((img @ txt.T).argmax(1) == torch.arange(8)).double().mean()
    assert acc == expected_acc


def test_distillation_from_an_identical_teacher_adds_nothing():
    img, txt = features()
    scale = torch.tensor(10.0, dtype=torch.float64)
    plain, _, _ = objective(img, txt, scale)
    same, _, _ = objective(img, txt, scale, teacher=(img, txt, scale), distill_weight=0.7)
    assert torch.allclose(plain, same, atol=1e-10)
    other_img, other_txt = features(seed=1)
    different, _, _ = objective(img, txt, scale, teacher=(other_img, other_txt, scale), distill_weight=0.7)
    assert different > plain + 1e-3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gathered_worker(rank: int, world: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    img, txt = features(n=8)
    n = 8 // world
    local_img = img[rank * n:(rank + 1) * n].clone().requires_grad_(True)
    local_txt = txt[rank * n:(rank + 1) * n].clone().requires_grad_(True)
    loss, _ = clip_loss(local_img, local_txt, torch.tensor(12.0, dtype=torch.float64))
    loss.backward()
    results[rank] = (loss.detach(), local_img.grad, local_txt.grad)
    dist.destroy_process_group()


@pytest.mark.slow
def test_gathered_local_loss_equals_full_matrix_loss():
    world = 2
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_gathered_worker, args=(world, free_port(), results), nprocs=world, join=True)
    img, txt = features(n=8)
    img.requires_grad_(True)
    txt.requires_grad_(True)
    full, _ = clip_loss(img, txt, torch.tensor(12.0, dtype=torch.float64))
    full.backward()
    mean_local = sum(results[r][0] for r in range(world)) / world
    assert torch.allclose(mean_local, full.detach(), atol=1e-12)
    # each rank's gradient (summed over ranks through the gather) / world = the full-batch gradient of its rows
    grad_img = torch.cat([results[r][1] for r in range(world)]) / world
    grad_txt = torch.cat([results[r][2] for r in range(world)]) / world
    assert torch.allclose(grad_img, img.grad, atol=1e-12)
    assert torch.allclose(grad_txt, txt.grad, atol=1e-12)


def tiny_model_and_batch(n=8, dropout=0.0):
    from txtrayalign.train.data import Collate
    from txtrayalign.train.model import ClipModel
    from txtrayalign.train.tokenizer import train_wordpiece
    from txtrayalign.train.toydata import tiny_experiment

    cfg = tiny_experiment()
    cfg["image_encoder"]["name"] = "compact_cnn_gn"  # no dependence between samples: exact micro-batching
    cfg["text_encoder"]["dropout"] = dropout
    texts = [f"the {w} lesion number {i} is {'small' if i % 2 else 'large'}" for i, w in enumerate("abcdefghij"[:n])]
    tok = train_wordpiece(texts * 3, 100)
    torch.manual_seed(0)
    model = ClipModel(cfg, tok)
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 32, 32), dtype=torch.uint8, generator=g)
    batch = Collate(tok, 64)([(images[i].numpy(), texts[i], 0, 0) for i in range(n)])
    return model, batch


def grads_of(model, batch, micro, teacher=None):
    from txtrayalign.train.step import forward_backward

    model.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    res = forward_backward(model, model, batch, micro=micro, device=torch.device("cpu"), dtype=None,
                           teacher=teacher, distill_weight=0.5 if teacher is not None else 0.0)
    return res, {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("with_teacher", [False, True])
def test_micro_batched_gradients_equal_full_batch(with_teacher):
    import copy

    model, batch = tiny_model_and_batch()
    teacher = None
    if with_teacher:
        teacher = copy.deepcopy(model).eval()
        with torch.no_grad():
            for p in teacher.parameters():
                p.add_(0.01 * torch.randn_like(p))
    full_res, full = grads_of(model, batch, None, teacher)
    micro_res, micro = grads_of(model, batch, 3, teacher)
    assert torch.allclose(full_res.loss, micro_res.loss, atol=1e-6)
    assert full.keys() == micro.keys() and "logit_scale" in full
    for k in full:
        assert torch.allclose(full[k], micro[k], atol=1e-6, rtol=1e-4), k


def test_micro_batches_replay_dropout_masks():
    """With dropout on, the recomputed micro-batches see the masks of the cached pass: the step is repeatable
    and its gradient is that of the loss the cached pass computed."""
    model, batch = tiny_model_and_batch(dropout=0.3)
    res1, g1 = grads_of(model, batch, 3)
    res2, g2 = grads_of(model, batch, 3)
    assert torch.equal(res1.loss, res2.loss)
    for k in g1:
        assert torch.equal(g1[k], g2[k])
    # a mismatched replay would give a different gradient from the full-batch path with the same masks per chunk
    model.zero_grad(set_to_none=True)
    from txtrayalign.train.step import _chunks

    torch.manual_seed(5)
    outs = [model(batch["images"][c], batch["input_ids"][c], batch["attention_mask"][c]) for c in _chunks(8, 3)]
    img = torch.cat([o[0] for o in outs])
    txt = torch.cat([o[1] for o in outs])
    loss, _, _ = objective(img, txt, model.scale())
    loss.backward()
    assert torch.allclose(loss.detach(), res1.loss, atol=1e-6)
    for k, p in model.named_parameters():
        if p.grad is not None:
            assert torch.allclose(p.grad, g1[k], atol=1e-6, rtol=1e-4), k


def test_cached_pass_updates_batchnorm_statistics_once():
    from txtrayalign.train.encoders import build_image_encoder

    model, batch = tiny_model_and_batch()
    model.image_encoder = build_image_encoder("compact_cnn")  # BatchNorm
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    grads_of(model, batch, 3)  # micro-batches of 3, 3 and 2
    assert int(bn.num_batches_tracked) == 3  # the no-grad pass left no trace; the second pass updated once each
    mean_after_micro = bn.running_mean.clone()
    assert mean_after_micro.abs().sum() > 0
