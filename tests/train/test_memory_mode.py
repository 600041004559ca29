"""The 16 GB memory mode: gradient checkpointing gives the same gradients while saving fewer activations."""

from __future__ import annotations

import copy

import pytest
import torch

from byu_motor.models import create_model
from byu_motor.presets import get_preset


def _grads_and_saved_bytes(model: torch.nn.Module, x: torch.Tensor) -> tuple[dict, int]:
    """Gradients of a sum-of-squares loss, and the bytes autograd kept for backward during the forward."""
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    (out.float() ** 2).mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, saved[0]


def test_grad_checkpointing_gives_the_same_gradients() -> None:
    # the tiny encoder is a StagedEncoder like the seed members' (their checkpointing is the same code)
    cfg, patch = get_preset("tiny"), (16, 32, 32)
    torch.manual_seed(0)
    plain = create_model(cfg.model).double().train()
    cfg.model.grad_checkpointing = True
    ckpt = create_model(cfg.model).double().train()
    ckpt.load_state_dict(copy.deepcopy(plain.state_dict()))
    x = torch.rand(2, 1, *patch, dtype=torch.float64)
    g_plain, bytes_plain = _grads_and_saved_bytes(plain, x)
    g_ckpt, bytes_ckpt = _grads_and_saved_bytes(ckpt, x)
    assert g_plain.keys() == g_ckpt.keys() and len(g_plain) > 10
    for k in g_plain:
        torch.testing.assert_close(g_ckpt[k], g_plain[k], rtol=1e-9, atol=1e-12)
    assert bytes_ckpt < 0.7 * bytes_plain, (bytes_ckpt, bytes_plain)


@pytest.mark.parametrize("name", ["seed_resnext50", "seed_densenet121", "seed_x3d_m"])
def test_the_16gb_variant_keeps_the_recipe_but_its_memory(name: str) -> None:
    full, small = get_preset(name), get_preset(f"{name}_16gb")
    assert small.model.grad_checkpointing and not full.model.grad_checkpointing
    assert (
        small.train.batch_size * small.train.grad_accum == full.train.batch_size * full.train.grad_accum == 4
    )
    assert small.train.batch_size == 1
    if name == "seed_x3d_m":  # fits at the seed's patch
        assert small.data.patch_size == full.data.patch_size and small.infer.patch_size is None
    else:  # trains on smaller windows, predicts on the seed's
        assert small.data.patch_size == (192, 384, 384) and small.infer.patch_size == full.data.patch_size
        assert all(n % 32 == 0 for n in small.data.patch_size)  # the encoders' deepest stride
    # four EMA updates per optimiser step decay like the seed's two
    per_step = small.train.ema**small.train.grad_accum
    assert per_step == pytest.approx(full.train.ema**full.train.grad_accum, rel=1e-12)
    for section in ("infer", "data"):  # nothing else differs
        a, b = getattr(small, section).__dict__, getattr(full, section).__dict__
        assert {k for k in a if a[k] != b[k]} <= {"patch_size"}
    with torch.device("meta"):
        model = create_model(small.model)
    assert model.encoder.grad_checkpointing  # every encoder stage is recomputed in backward


def test_the_memory_estimate_puts_the_16gb_variant_under_16_gib() -> None:
    from byu_motor.train.memory_estimate import estimate_modes

    est = {mode: e for _, mode, e in estimate_modes(["seed_resnext50"])}  # what bench/memory.py prints
    full, small = est["full"], est["16gb"]
    assert full.total_gib > 30.0  # the seed needed a 48 GB card
    assert small.total_gib < 0.75 * 16  # room for activation gradients and workspace on a 16 GB card
    assert small.weights_gib == full.weights_gib


def test_memory_estimate_counts_weights_and_checkpointing_saves_activations() -> None:
    from byu_motor.train.memory_estimate import estimate_training_memory

    cfg = get_preset("tiny")
    cfg.data.patch_size = (32, 64, 64)
    plain = estimate_training_memory(cfg)
    params = sum(p.numel() for p in create_model(cfg.model).parameters())
    assert plain.weights_gib == pytest.approx(16 * params / 2**30)
    assert plain.total_gib == pytest.approx(plain.activations_gib + plain.weights_gib)
    cfg.model.grad_checkpointing = True
    ckpt = estimate_training_memory(cfg)
    assert ckpt.weights_gib == plain.weights_gib
    assert 0 < ckpt.activations_gib < 0.8 * plain.activations_gib
    cfg.train.batch_size *= 2  # activations scale with the batch, weights do not
    assert estimate_training_memory(cfg).activations_gib == pytest.approx(2 * ckpt.activations_gib, rel=0.05)
