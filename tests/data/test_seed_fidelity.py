"""Fidelity of the seed's 3-D training items: MONAI 1.4.0 affine matrices, in-window targets, uint8 grey levels, dropout."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from byu_motor.data import seed_sampler
from byu_motor.data.cache import CachedVolume
from byu_motor.data.grid import Grid
from byu_motor.data.normalize import Normalizer
from byu_motor.data.seed_augment import sample_seed_matrix
from byu_motor.data.seed_sampler import SeedWindowDataset
from tests.train.test_engine import one_thread  # noqa: F401 - autouse: one intra-op thread


class ScriptedRng:
    """A stand-in generator: ``random()`` from a script, ``uniform(low, high, size)`` from ``rule``."""

    def __init__(self, randoms, rule):
        self.randoms, self.rule = list(randoms), rule

    def random(self) -> float:
        return self.randoms.pop(0)

    def uniform(self, low=0.0, high=1.0, size=None):
        return self.rule(float(low), float(high), size)


def _rule(theta=0.0, tilts=(0.0, 0.0), shear=None, scale=(0.0, 0.0, 0.0), zoom=(1.0, 1.0, 1.0)):
    """Draws by range: in-plane ``(0, 2 pi)``, tilts (fractions of their bound), shear, scale offsets, zoom."""
    real = np.random.default_rng(0)

    def rule(low, high, size):
        if (low, high) == (0.0, 2.0 * math.pi):
            return theta
        if (low, high) == (0.6, 1.2):
            return np.asarray(zoom)[:size]
        if (low, high) == (-0.3, 0.3):
            return np.asarray(scale)[:size]
        if (low, high) == (-0.2, 0.2):
            return real.uniform(low, high, size) if shear is None else np.asarray(shear)[:size]
        return np.asarray(tilts)[:size] * high  # the tilt range, whatever its unit

    return rule


NO_ZOOM_HEAVY, NO_ZOOM_LIGHT = (0.99, 0.0, 0.99), (0.99, 0.0, 0.0)


def test_matrix_does_not_depend_on_the_installed_monai(monkeypatch: pytest.MonkeyPatch) -> None:
    import monai
    import monai.transforms.utils as mu

    before = [sample_seed_matrix(np.random.default_rng(s)) for s in range(40)]

    def broken(*args, **kwargs):
        raise AssertionError("MONAI's matrix builders differ between versions; do not call them")

    for name in ("create_rotate", "create_shear", "create_scale"):
        monkeypatch.setattr(mu, name, broken)
    monkeypatch.setattr(monai, "__version__", "1.4.0")
    after = [sample_seed_matrix(np.random.default_rng(s)) for s in range(40)]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_heavy_affine_is_monai_140_rotate_shear_scale_in_xyz() -> None:
    a, b, t = 0.5 * math.radians(15), -0.3 * math.radians(15), 1.1
    c, s = (0.1, -0.15, 0.05), (0.2, -0.1, 0.25)
    rng = ScriptedRng(
        NO_ZOOM_HEAVY, _rule(theta=t, tilts=(0.5, -0.3), shear=(*c, 0.07, -0.09, 0.11), scale=s)
    )
    ca, sa, cb, sb, ct, st = math.cos(a), math.sin(a), math.cos(b), math.sin(b), math.cos(t), math.sin(t)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])  # MONAI 1.4 create_rotate, XYZ, about X
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[ct, -st, 0], [st, ct, 0], [0, 0, 1]])
    sh = np.array([[1, c[0], c[1]], [c[2], 1, 0], [0, 0, 1]])  # 3 coefficients assigned: X<-Y, X<-Z, Y<-X
    want_xyz = rx @ ry @ rz @ sh @ np.diag(1.0 + np.asarray(s))
    np.testing.assert_allclose(sample_seed_matrix(rng), want_xyz[::-1, ::-1], atol=1e-12)


def test_heavy_shear_has_the_seeds_sparsity() -> None:
    """Angles 0 (in-plane pi: a signed permutation), scale 1: only x<-y, x<-z and y<-x are sheared (zyx)."""
    allowed = np.eye(3, dtype=bool)
    allowed[2, 1] = allowed[2, 0] = allowed[1, 2] = True  # X<-Y, X<-Z, Y<-X in zyx indices
    for theta in (0.0, math.pi):
        for _ in range(20):
            m = sample_seed_matrix(ScriptedRng(NO_ZOOM_HEAVY, _rule(theta=theta)))
            assert np.all(np.abs(m[~allowed]) < 1e-12), m
            assert np.all(np.abs(m[allowed & ~np.eye(3, dtype=bool)]) > 0), m


def test_in_plane_angle_is_applied_before_the_tilts() -> None:
    """``R_x R_y R_z``: the output z axis maps to the same input direction whatever the in-plane angle."""
    cols = []
    for theta in np.linspace(0.0, 2 * math.pi, 7, endpoint=False):
        rng = ScriptedRng(NO_ZOOM_HEAVY, _rule(theta=theta, tilts=(0.8, -0.6), shear=(0.0,) * 6))
        cols.append(sample_seed_matrix(rng)[:, 0])
    np.testing.assert_allclose(cols, np.repeat(cols[:1], len(cols), axis=0), atol=1e-12)
    assert np.abs(cols[0][1:]).max() > 0.1  # the tilts do move it


def test_in_plane_draw_leaves_z_fixed_and_turns_as_monai() -> None:
    for theta in np.linspace(0.1, 6.2, 9):
        m = sample_seed_matrix(ScriptedRng(NO_ZOOM_LIGHT, _rule(theta=theta, scale=(0.1, -0.2, 0.3))))
        assert m[0, 0] == pytest.approx(1.3) and np.all(m[0, 1:] == 0) and np.all(m[1:, 0] == 0)
    quarter = sample_seed_matrix(ScriptedRng(NO_ZOOM_LIGHT, _rule(theta=math.pi / 2)))
    np.testing.assert_allclose(quarter, [[1, 0, 0], [0, 0, 1], [0, -1, 0]], atol=1e-12)  # x_in = -y_out


def test_zoom_is_quantised_per_axis_as_monai_zoom_keep_size() -> None:
    rng = ScriptedRng((0.0, 0.99), _rule(zoom=(0.7, 1.1, 0.95)))  # XYZ magnifications
    m = sample_seed_matrix(rng, (16, 32, 48))
    np.testing.assert_allclose(m, np.diag([16 / 15, 32 / 35, 48 / 33]))  # n / floor(n z), zyx


# ---------------------------------------------------------------- sampler: targets, grey levels, dropout margins

PATCH = (16, 32, 32)


def _cfg(**kw: object) -> SimpleNamespace:
    base = dict(
        bg_ratio=0.5, bg_from_pos=0.25, augment_set="seed", sigma_rule="same", sigma_a=200.0, augment={}
    )
    base.update(kw)
    return SimpleNamespace(**base)


def _volume(motors: list[list[float]], norm: Normalizer | None = None) -> CachedVolume:
    vol = np.random.default_rng(0).integers(60, 200, size=(16, 32, 64)).astype(np.uint8)
    grid = Grid(vol.shape, 16.0)
    norm = norm or Normalizer("fixed", 0.5, 0.25)
    return CachedVolume("t", vol, grid, grid, np.asarray(motors, np.float64).reshape(-1, 3), norm)


def test_a_motor_just_outside_the_window_leaves_no_tail() -> None:
    ds = SeedWindowDataset([_volume([[8.0, 16.0, 39.5]])], PATCH, _cfg(), stride=16, length=4, augment=False)
    left, right = (w for w in ds.windows if w.start[2] in (0, 32))
    out = ds.sample(left, 0, np.random.default_rng(0))  # the motor is 8 voxels past its last x voxel
    assert int(out["n_motors"]) == 0 and float(out["target"].max()) == 0.0
    inside = ds.sample(right, 0, np.random.default_rng(0))
    assert int(inside["n_motors"]) == 1 and float(inside["target"].max()) == 1.0


def test_grey_levels_are_floored_like_the_seeds_uint8_crop() -> None:
    norm = Normalizer("fixed", 0.2, 0.3)
    ds = SeedWindowDataset([_volume([[8.0, 16.0, 20.0]], norm)], PATCH, _cfg(), stride=16, length=4)
    ds._augmentation = lambda size, rng: np.diag([0.9, 0.8, 1.1])  # fractional grey levels from resampling
    for s in range(6):
        image = ds.sample(ds.windows[0], 0, np.random.default_rng(s))["image"].double()
        grey = (image * norm.std + norm.mean) * 255.0
        assert torch.all(torch.abs(grey - torch.round(grey)) < 1e-3)
        assert grey.min() > -1e-3 and grey.max() < 255.0 + 1e-3


def test_the_sampler_hands_the_dropout_the_seeds_transformed_margins(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    class Spy:
        def __init__(self, spacing_a):
            pass

        def __call__(self, patch, motors, rng, margin_vox=0.0):
            seen.append(np.broadcast_to(np.asarray(margin_vox, dtype=np.float64), (3,)).copy())
            return patch

    monkeypatch.setattr(seed_sampler, "SeedPixelAugment", Spy)
    ds = SeedWindowDataset([_volume([[8.0, 16.0, 20.0]])], PATCH, _cfg(), stride=16, length=4)
    c, s = math.cos(0.4), math.sin(0.4)
    for m in (
        np.diag([0.5, 1.0, 2.0]),
        np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]]) @ np.diag([1.2, 0.7, 1.0]),
    ):
        ds._augmentation = lambda size, rng, m=m: m
        ds.sample(ds.windows[0], 0, np.random.default_rng(0))
        inv = np.linalg.inv(m)
        cov = inv @ np.diag([12.5**2] * 3) @ inv.T  # 200 A at 16 A, into output voxels
        lam, vec = np.linalg.eigh(cov)
        want = np.abs(vec * np.sqrt(lam) * math.sqrt(6.251388631170325)).max(axis=1)  # chi2(3).ppf(0.9)
        np.testing.assert_allclose(seen[-1], want, rtol=1e-5)
    np.testing.assert_allclose(seen[0], 2.5003 * 12.5 * np.array([2.0, 1.0, 0.5]), rtol=1e-4)


# ---------------------------------------------------------------- coarse dropout


def test_margins_are_the_90_percent_ellipsoid_per_axis() -> None:
    from scipy.stats import chi2

    from byu_motor.data.seed_dropout import CHI_3_090, seed_dropout_margins

    assert CHI_3_090 == pytest.approx(math.sqrt(chi2.ppf(0.9, df=3)), abs=1e-6)
    np.testing.assert_allclose(
        seed_dropout_margins(np.diag([4.0, 9.0, 16.0])), CHI_3_090 * np.array([2, 3, 4])
    )
    a = np.random.default_rng(0).normal(size=(3, 3))
    cov = a @ a.T + np.eye(3)
    extent = CHI_3_090 * np.sqrt(np.diag(cov))  # the ellipsoid's true half-extent per axis bounds it
    assert np.all(seed_dropout_margins(cov) <= extent + 1e-12)


def test_holes_never_come_within_a_motors_margin() -> None:
    from byu_motor.data.seed_dropout import draw_holes

    rng = np.random.default_rng(1)
    bounds = (np.array([3, 4, 4]), np.array([10, 14, 14]))
    made = 0
    for _ in range(300):
        motors = rng.uniform(-4, [20, 36, 36], size=(int(rng.integers(0, 4)), 3))
        margins = rng.uniform(1.0, 6.0, size=motors.shape)
        holes = draw_holes((16, 32, 32), motors, margins, bounds, rng)
        assert len(holes) <= 8 and (len(motors) > 0 or len(holes) >= 3)
        for start, end in holes:
            near = (motors >= start - margins) & (motors <= end - 1 + margins)
            assert not np.any(np.all(near, axis=1))
            assert np.all(end - start >= bounds[0]) and np.all(start >= 0) and np.all(end <= (16, 32, 32))
        made += len(holes)
    assert made > 300


class HoleScript:
    """``integers`` answers: the hole count, then per draw a size ``(3,)`` and three starts; records the bounds."""

    def __init__(self, n_holes: int, draws: list[tuple[int, tuple[int, int, int]]]):
        self.answers: list = [n_holes]
        for size, start in draws:
            self.answers += [np.full(3, size), *start]
        self.size_lows: list[np.ndarray] = []

    def integers(self, low, high=None, size=None):
        if np.ndim(low):
            self.size_lows.append(np.array(low))
        return self.answers.pop(0)


def test_rejected_holes_are_redrawn_and_accepted_ones_kept() -> None:
    from byu_motor.data.seed_dropout import draw_holes

    motor, margins = np.array([[16.0, 16.0, 16.0]]), np.array([2.0, 2.0, 2.0])
    bounds = (np.array([4, 4, 4]), np.array([8, 8, 8]))
    far, on, near_z = (0, 0, 0), (14, 14, 14), (11, 14, 14)  # near_z: a size-4 hole ends at 14, 16 - 2 <= 14
    script = HoleScript(3, [(4, far), (5, on), (5, near_z), (6, (20, 0, 0)), (6, (0, 25, 0))])
    holes = draw_holes((32, 32, 32), motor, margins, bounds, script)
    assert [tuple(h[0]) for h in holes] == [far, (20, 0, 0), (0, 25, 0)]
    assert not script.answers  # every scripted draw was used, none more
    # the seed's size ratchet: each draw's lower bound is the size drawn before it, rejected or not
    assert [int(lo[0]) for lo in script.size_lows] == [4, 4, 5, 5, 6]

    # ten rejections in a row end the call; the count restarts after an acceptance; accepted holes stay
    script = HoleScript(5, [(4, far)] + [(4, on)] * 9 + [(4, (20, 20, 20))] + [(4, on)] * 10)
    holes = draw_holes((32, 32, 32), motor, margins, bounds, script)
    assert [tuple(h[0]) for h in holes] == [far, (20, 20, 20)] and not script.answers


def test_pixel_augment_dropout_spares_motors_and_fills_with_noise() -> None:
    from byu_motor.data.seed_augment import SeedPixelAugment

    aug = SeedPixelAugment((64.0, 64.0, 64.0))  # holes of 7-31 voxels
    rng = np.random.default_rng(2)
    patch = torch.full((1, 24, 40, 40), 100.0)
    changed = 0
    for i in range(100):
        motors = rng.uniform(0, [23, 39, 39], size=(2, 3))
        margins = rng.uniform(1.0, 4.0, size=(2, 3))
        out = aug.dropout(patch, motors, margins, np.random.default_rng(i))[0]
        assert torch.equal(patch[0], torch.full((24, 40, 40), 100.0))  # a copy
        idx = np.argwhere((out != 100.0).numpy())
        for c, m in zip(motors, margins):
            assert not np.any(np.all(np.abs(idx - c) <= m, axis=1))
        changed += int(len(idx) > 0)
        assert out.min() >= 0 and out.max() < 255
    assert changed > 50


def test_a_tomogram_thinner_than_the_window_is_augmented_then_padded_at_the_low_end_then_viewed() -> None:
    """The seed crops a window larger than the tomogram to the tomogram, augments that crop (about its own
    centre), pads zeros at the low end (its window starts at n - P < 0) and applies the view last: the padding
    stays exactly grey 0 whatever the intensity augmentation, and a z-flipping view moves it to the high end."""
    vol = np.full((10, 32, 32), 150, dtype=np.uint8)  # 10 slices under a 16-deep window
    grid = Grid(vol.shape, 16.0)
    norm = Normalizer("fixed", 0.5, 0.25)
    motor = np.array([[5.0, 16.0, 16.0]])
    ds = SeedWindowDataset([CachedVolume("t", vol, grid, grid, motor, norm)], PATCH, _cfg(), 16, 64, seed=1)
    views = seed_sampler.dihedral_views()
    changed = 0
    for view in range(16):
        for s in range(3):
            item = ds.sample(ds.windows[0], view, np.random.default_rng(s))
            grey = ((item["image"][0].double() * norm.std + norm.mean) * 255.0).numpy()
            flipped = views[view][0, 0] < 0
            pad, data = (grey[10:], grey[:10]) if flipped else (grey[:6], grey[6:])
            assert np.all(np.abs(pad) < 1e-6), (view, s)  # exactly 0, untouched by the augmentation
            changed += bool(np.any(np.abs(data - 150.0) > 1.0))
            n = int(item["n_motors"])
            if n:  # the motor stays in the data part: slices 6-15, or 0-9 when z is flipped
                z = float(item["motors"][0, 0])
                assert (0 <= z <= 9) if flipped else (6 <= z <= 15)
    assert changed > 0  # the intensity augmentation did act on the data part
