"""The seed's three 3D members: parameter counts, channels, a few CPU training steps, checkpoint round trip."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from byu_motor.config import Config
from byu_motor.models import create_model, load_checkpoint, save_checkpoint
from byu_motor.presets import get_preset

# name -> (seed parameter count, encoder channels, fused stride-16 channels)
SEED = {
    "seed_resnext50": (49.9e6, [64, 256, 512, 1024, 2048], 1152),
    "seed_densenet121": (27.6e6, [64, 256, 512, 1024, 1024], 1152),
    "seed_x3d_m": (10.4e6, [24, 24, 48, 96, 192], 384),
}


@pytest.mark.parametrize("name", list(SEED))
def test_parameter_counts_and_channels_match_the_seed(name: str):
    cfg = get_preset(name)
    want, channels, fused = SEED[name]
    with torch.device("meta"):
        model = create_model(cfg.model)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - want) / want < 0.01, f"{name}: {n / 1e6:.2f} M parameters, the seed {want / 1e6} M"
    assert model.encoder.out_channels == channels
    assert model.encoder.strides == [(s, s, s) for s in (2, 4, 8, 16, 32)]
    assert model.stride == (16, 16, 16)
    # the decoder sees up2(s32) + the fused s16 map; its convs are 192 wide
    assert model.neck.decoder[1][0].in_channels == channels[-1] + fused
    assert model.neck.decoder[2][0].out_channels == 192


@pytest.mark.parametrize("name", list(SEED))
def test_seed_recipe(name: str):
    cfg = get_preset(name)
    assert cfg.model.pretrained_file is None
    assert (cfg.data.spacing_a, cfg.data.patch_size) == ((16.0,) * 3, (224, 448, 448))
    assert (cfg.data.norm_mean, cfg.data.norm_std) == (0.0, 1.0)  # the encoder normalises
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.batch_size * cfg.train.grad_accum) == (
        5e-4,
        0.0,
        4,
    )
    assert cfg.train.ema == 0.99 and cfg.train.ema_every_micro and cfg.train.sigma_a == 200.0
    # SEED_RECIPE 5.6: X3D-M (EXP16) 30k steps with 1k warmup, the others 32k with 3k
    x3d = name == "seed_x3d_m"
    steps = 30000 if x3d else (32010 if "resnext" in name else 32000)
    assert (cfg.train.steps, cfg.train.warmup_steps) == (steps, 1000 if x3d else 3000)
    t = cfg.train
    assert (t.warmup_lr_init, t.min_lr) == pytest.approx((0.01 * t.lr, 0.005 * t.lr), rel=1e-12)
    assert (t.adam_eps, t.clip_grad, t.amp, t.pos_weight, t.losses) == (1e-7, 0.0, "fp16", 1.0, {"bce": 1.0})
    assert (t.batch_size, t.grad_accum, t.train_on_all) == (2, 2, True)
    assert t.seed == {"seed_resnext50": 6112210, "seed_densenet121": 2210, "seed_x3d_m": 42}[name]
    # SEED_RECIPE 5.2: every motor window in 16 views plus background (X3D EXP16: more, fewer from positives)
    assert (t.sampler, t.augment_set, t.sigma_rule) == ("seed", "seed", "same")
    assert (t.bg_ratio, t.bg_from_pos) == ((0.25, 0.1) if x3d else (0.05, 0.25))
    assert (
        cfg.infer.test_spacing_a == 13.1 and cfg.infer.overlap == 0.0 and cfg.infer.resample_cast == "floor"
    )
    # two views each, exactly the seed's (no implicit identity), decoded apart and fused as points
    assert len(cfg.infer.tta) == 2 and not cfg.infer.tta_identity and cfg.infer.views_apart
    assert (cfg.infer.tiling, cfg.infer.decode_upsample, cfg.infer.peak_decoder) == ("seed", 2, "seed")
    assert (cfg.infer.ensemble, cfg.infer.fusion_radius_a) == ("wbf", 1000.0)
    assert cfg.infer.threshold == "negative_share" and cfg.infer.negative_share == 0.55
    assert Config.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("name", list(SEED))
def test_trains_a_few_steps_on_cpu_and_round_trips(name: str, tmp_path):
    torch.manual_seed(0)
    cfg = get_preset(name)
    cfg.data.patch_size = (32, 32, 32)
    model = create_model(cfg.model).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(2, 1, 32, 32, 32)
    target = torch.zeros(2, 1, 2, 2, 2)
    target[0, 0, 1, 1, 0] = 1.0
    head_before = model.head.out.weight.detach().clone()
    losses = []
    for _ in range(3):
        logits = model(x)
        assert logits.shape == (2, 1, 2, 2, 2)
        loss = F.binary_cross_entropy_with_logits(logits, target)
        opt.zero_grad()
        loss.backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert not missing, missing[:3]
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert not torch.equal(head_before, model.head.out.weight)
    # the first loss sits near BCE at the 5e-5 prior: the mean of -log(1 - p) and one -log(p) in 16 cells
    assert losses[0] < 2.0
    model.eval()
    path = save_checkpoint(tmp_path / f"{name}.pt", model, cfg)
    loaded = load_checkpoint(path)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), model(x), atol=1e-5)
    state = loaded.model.state_dict()
    adapter = next(k for k in state if k.endswith("mean") and ".0.0." in k)
    assert state[adapter].numel() == 3  # the input normalisation travels in the checkpoint
