"""The seed's 2D augmentation set (SEED_RECIPE 5.4), drawn once per sample and applied alike to every slice.

Geometry is one homography ``G`` (3 x 3, input pixel ``(y, x, 1)`` -> output pixel) so that keypoints follow
exactly, perspective included: flips (p 0.5 each, about the image centre, so the image keeps its own frame),
then with p 0.8 one of an affine (scale U(0.6, 1.2) per axis, rotation U(0, 360), shear +-5 deg; weight 0.4),
the same with shear +-20 deg (0.3), or a perspective (corners moved by |N(0, s)|, s U(0.05, 0.12), the
quadrilateral stretched to its bounding size; 0.3).

Voxels, on grey values 0..255 ``[C, H, W]``, groups in the seed's order, every draw shared by the slices (the
seed passes them as separate grey images with one set of parameters):
noise p 0.1 (Gaussian mean 0, var U(60, 120), drawn at half resolution and upsampled bilinearly, 0.6 |
multiplicative U(0.6, 1.4) per pixel 0.4; one noise map shared by the slices); quality p 0.25 (down- and
up-scaling by one U(0.5, 0.9) for both axes 0.6 | JPEG quality U(20, 80) 0.3 | posterize to 4-6 bits 0.1);
texture p 0.1 (emboss 0.4 | sharpen 0.5 | CLAHE clip 4 on 16 x 16 tiles 0.1); colour p 0.5 (brightness-contrast,
four ranges, 0.4 | tone curve, scale 0.3, one curve shared by the slices, 0.4 | gamma U(0.6, 1.5) 0.2).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F


def _pick(rng: np.random.Generator, weights: Sequence[float]) -> int:
    w = np.asarray(weights, dtype=np.float64)
    return int(rng.choice(len(w), p=w / w.sum()))


def _affine(rng: np.random.Generator, shear_deg: float) -> tuple[np.ndarray, float]:
    """An affine and its keypoint scale: Albumentations' ``max(scale_x, scale_y)`` (rotation, shear ignored)."""
    a = rng.uniform(0.0, 2.0 * math.pi)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    sh = np.tan(np.radians(rng.uniform(-shear_deg, shear_deg, 2)))
    shear = np.array([[1.0, sh[0]], [sh[1], 1.0]])
    out = np.eye(3)
    scales = rng.uniform(0.6, 1.2, 2)
    out[:2, :2] = rot @ shear @ np.diag(scales)
    return out, float(scales.max())


def perspective_keypoint_scale(m: np.ndarray, size: Sequence[int]) -> float:
    """The keypoint scale the seed gave a perspective ``m`` (``(3, 3)`` on ``(y, x, 1)``) of an image of
    ``size (H, W)``: the matrix in ``(x, y)`` order, shifted as Albumentations' ``fit_output`` does (the warped
    image's corners start at 0), then ``max(sign(m00) |row 0|, sign(m11) |row 1|)`` of its 2 x 2 part (the
    seed's patched ``perspective_keypoints``; its translation-dependent rows are kept as they were)."""
    swap = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    mxy = swap @ np.asarray(m, dtype=np.float64) @ swap
    h, w = (float(n) for n in size)
    corners = apply_homography(mxy, [[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])
    shift = np.eye(3)
    shift[:2, 2] = -corners.min(axis=0)
    mxy = shift @ mxy
    mxy = mxy / mxy[2, 2]
    sx = math.copysign(math.hypot(mxy[0, 0], mxy[0, 1]), mxy[0, 0])
    sy = math.copysign(math.hypot(mxy[1, 0], mxy[1, 1]), mxy[1, 1])
    return max(sx, sy)


def homography_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3 x 3 homography mapping four points ``src (4, 2)`` onto ``dst (4, 2)`` (normalised, ``[2, 2] = 1``)."""
    rows, rhs = [], []
    for (u, v), (p, q) in zip(np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)):
        rows.append([u, v, 1, 0, 0, 0, -p * u, -p * v])
        rows.append([0, 0, 0, u, v, 1, -q * u, -q * v])
        rhs += [p, q]
    h = np.linalg.solve(np.asarray(rows), np.asarray(rhs))
    return np.append(h, 1.0).reshape(3, 3)


def perspective(rng: np.random.Generator, size: Sequence[int]) -> np.ndarray:
    """A random perspective of an image of ``size (H, W)``: its corners moved inward by |N(0, s)| of the size
    (at most 0.32), the quadrilateral mapped onto a rectangle of its longest sides."""
    h, w = (float(n) for n in size)
    s = rng.uniform(0.05, 0.12)
    d = np.mod(np.abs(rng.normal(0.0, s, (4, 2))), 0.32) * np.array([h, w])
    quad = np.array(
        [[d[0, 0], d[0, 1]], [d[1, 0], w - d[1, 1]], [h - d[2, 0], w - d[2, 1]], [h - d[3, 0], d[3, 1]]]
    )
    out_h = max(np.linalg.norm(quad[3] - quad[0]), np.linalg.norm(quad[2] - quad[1]))
    out_w = max(np.linalg.norm(quad[1] - quad[0]), np.linalg.norm(quad[2] - quad[3]))
    rect = np.array([[0.0, 0.0], [0.0, out_w], [out_h, out_w], [out_h, 0.0]])
    return homography_from_points(quad, rect)


def draw_geometry_2d(
    rng: np.random.Generator, size: Sequence[int], aug: bool = True
) -> tuple[np.ndarray, float]:
    """The seed's random geometry: ``(g, keypoint_scale)``.

    ``g`` is a homography ``(3, 3)`` on ``(y, x, 1)``, input -> output pixels, up to a translation
    (:func:`seed_crop` places it); ``keypoint_scale`` is the factor the seed (Albumentations) applied to each
    motor's Gaussian sigma and to the crop's margin: 1 for flips, ``max(scale_x, scale_y)`` for an affine,
    :func:`perspective_keypoint_scale` for a perspective. Identity and 1 with ``aug=False``.

    Args:
        rng: the sample's generator.
        size: the input image ``(H, W)``, pixels.
        aug: draw (else the identity).
    """
    g, scale = np.eye(3), 1.0
    if not aug:
        return g, scale
    for axis, n in enumerate(size):  # flips about the centre (y -> H - 1 - y): the image keeps its own frame
        if rng.random() < 0.5:
            g[axis, axis], g[axis, 2] = -1.0, float(n) - 1.0
    if rng.random() < 0.8:
        kind = _pick(rng, (0.4, 0.3, 0.3))
        if kind == 2:
            m = perspective(rng, size)
            scale = perspective_keypoint_scale(m, size)
        else:
            m, scale = _affine(rng, (5.0, 20.0)[kind])
        g = m @ g
    return g, scale


def geometry_2d(rng: np.random.Generator, size: Sequence[int], aug: bool = True) -> np.ndarray:
    """The homography of :func:`draw_geometry_2d` alone."""
    return draw_geometry_2d(rng, size, aug)[0]


def apply_homography(g: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map points ``(n, 2)`` (y, x) through ``g``."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    h = np.column_stack([p, np.ones(len(p))]) @ np.asarray(g).T
    return h[:, :2] / h[:, 2:3]


def fitted_bounds(g: np.ndarray, size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Corners ``lo, hi`` ``(2,)`` (y, x) of the box holding an image of ``size (H, W)`` after ``g``: the
    output Albumentations' ``fit_output`` keeps (pixel edges; ``hi - lo`` is its size in pixels)."""
    h, w = (float(n) for n in size)
    with np.errstate(divide="ignore", invalid="ignore"):  # a corner on the vanishing line: not finite
        corners = apply_homography(g, [[-0.5, -0.5], [-0.5, w - 0.5], [h - 0.5, -0.5], [h - 0.5, w - 0.5]])
    return corners.min(axis=0), corners.max(axis=0)


def seed_crop(
    g: np.ndarray,
    size: Sequence[int],
    crop: Sequence[int],
    rng: np.random.Generator,
    keep: np.ndarray | None = None,
    margin: float = 0.0,
) -> np.ndarray:
    """``g`` followed by the seed's crop of its fitted output: the homography input -> crop pixels.

    The crop ``(h, w)`` lies inside the fitted image (:func:`fitted_bounds`) at a uniform integer offset; with
    ``keep`` (an input point ``(2,)``) it also holds ``keep +- margin`` output pixels. Where that is impossible
    (an image smaller than the crop, a point too close to the edge) the offset is uniform over the image,
    clipped at 0: a small image sits at the crop's top left, the rest is fill (the seed's pad).
    """
    lo, hi = fitted_bounds(g, size)
    box = np.asarray(crop, dtype=np.int64)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):  # a corner on the vanishing line
        centre = keep if keep is not None else (np.asarray(size, dtype=np.float64) - 1.0) / 2.0
        t = np.eye(3)
        t[:2, 2] = (box - 1.0) / 2.0 - apply_homography(g, centre)[0]
        return t @ g
    fitted = np.ceil(hi - lo - 1e-6).astype(np.int64)
    start = None
    if np.all(fitted >= box):
        low, high = np.zeros(2, dtype=np.int64), fitted - box
        if keep is not None:
            at = apply_homography(g, keep)[0] - lo  # edge-based pixel coordinates of the fitted image
            # int() truncates toward zero, as the seed's box
            low = np.maximum(low, (at + margin).astype(np.int64) - box)
            high = np.minimum(high, (at - margin).astype(np.int64))
        if np.all(low <= high):
            start = np.array([rng.integers(a, b + 1) for a, b in zip(low, high)])
    if start is None:
        start = np.array([rng.integers(0, max(0, f - c) + 1) for f, c in zip(fitted, box)])
    t = np.eye(3)
    t[:2, 2] = -(lo + 0.5 + start)
    return t @ g


def warp(slices: np.ndarray, g: np.ndarray, out_shape: Sequence[int], fill: float) -> torch.Tensor:
    """Resample ``[C, Y, X]`` slices through homography ``g`` into ``[C, H, W]`` (bilinear, ``fill`` outside)."""
    h, w = (int(n) for n in out_shape)
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    with np.errstate(divide="ignore", invalid="ignore"):  # handled below
        src = apply_homography(np.linalg.inv(g), np.stack([yy.ravel(), xx.ravel()], axis=1)).reshape(h, w, 2)
    size = np.asarray(slices.shape[1:], dtype=np.float64)
    norm = (src + 0.5) / size * 2.0 - 1.0  # align_corners=False pixel centres
    # points beyond a perspective's vanishing line: outside (fill), never NaN or inf
    norm = np.clip(np.nan_to_num(norm, nan=-2.0, posinf=2.0, neginf=-2.0), -2.0, 2.0)
    grid = torch.from_numpy(norm[..., ::-1].copy()).float()[None]  # grid_sample wants (x, y)
    img = torch.from_numpy(np.asarray(slices, dtype=np.float32))[None] - fill
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0] + fill


def _noise(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    # one noise map shared by the slices; Gaussian: drawn at half resolution and scaled up
    if _pick(rng, (0.6, 0.4)) == 0:
        half = [max(1, n // 2) for n in x.shape[-2:]]
        n = torch.randn((1, *half), generator=g) * math.sqrt(rng.uniform(60.0, 120.0))
        return x + F.interpolate(n[None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0]
    return x * (0.6 + 0.8 * torch.rand((1, *x.shape[-2:]), generator=g))


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    from PIL import Image

    out = []
    for plane in x.clamp(0, 255).round().to(torch.uint8).numpy():
        buf = io.BytesIO()
        Image.fromarray(plane).save(buf, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(io.BytesIO(buf.getvalue()))))
    return torch.from_numpy(np.stack(out)).float()


def _quality(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    kind = _pick(rng, (0.6, 0.3, 0.1))
    if kind == 0:
        down, up = (("area", "bicubic"), ("area", "bilinear"), ("bilinear", "bilinear"))[
            _pick(rng, (0.1, 0.1, 0.8))
        ]
        size = x.shape[-2:]
        scale = rng.uniform(0.5, 0.9)  # one factor for both axes (cv2.resize's fx = fy: rounded sizes)
        small = [max(1, round(n * scale)) for n in size]
        kw = {} if down == "area" else {"align_corners": False}
        t = F.interpolate(x[None], size=small, mode=down, **kw)
        return F.interpolate(t, size=size, mode=up, align_corners=False)[0]
    if kind == 1:
        return _jpeg(x, int(rng.integers(20, 81)))
    return posterize(x, int(rng.integers(4, 7)))


def posterize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Keep the ``bits`` high bits of each grey value (0..255)."""
    step = 2 ** (8 - int(bits))
    return torch.floor(x.clamp(0, 255).round() / step) * step


def _kernel(x: torch.Tensor, k: np.ndarray) -> torch.Tensor:
    w = torch.from_numpy(k.astype(np.float32))[None, None].expand(x.shape[0], 1, 3, 3)
    return F.conv2d(F.pad(x[None], (1, 1, 1, 1), mode="replicate"), w, groups=x.shape[0])[0]


def clahe(x: torch.Tensor, clip: float = 4.0, tiles: int = 16) -> torch.Tensor:
    """Contrast-limited adaptive histogram equalisation of each ``[C, H, W]`` plane (grey 0..255): per tile a
    histogram clipped at ``clip`` x its mean bin, the excess spread evenly, and the tiles' maps blended bilinearly."""
    out = []
    for plane in x.clamp(0, 255).round().to(torch.int64).numpy():
        h, w = plane.shape
        ty, tx = min(tiles, h), min(tiles, w)
        ey, ex = np.linspace(0, h, ty + 1).astype(int), np.linspace(0, w, tx + 1).astype(int)
        lut = np.empty((ty, tx, 256))
        for i in range(ty):
            for j in range(tx):
                hist = np.bincount(plane[ey[i] : ey[i + 1], ex[j] : ex[j + 1]].ravel(), minlength=256).astype(
                    float
                )
                limit = max(clip * hist.sum() / 256.0, 1.0)
                hist = np.minimum(hist, limit) + (hist - np.minimum(hist, limit)).sum() / 256.0
                lut[i, j] = np.cumsum(hist) / max(hist.sum(), 1.0) * 255.0
        cy, cx = (ey[:-1] + ey[1:] - 1) / 2.0, (ex[:-1] + ex[1:] - 1) / 2.0
        fy = np.clip(np.interp(np.arange(h), cy, np.arange(ty)), 0, ty - 1)
        fx = np.clip(np.interp(np.arange(w), cx, np.arange(tx)), 0, tx - 1)
        y0, x0 = (
            np.minimum(fy.astype(int), ty - 2 if ty > 1 else 0),
            np.minimum(fx.astype(int), tx - 2 if tx > 1 else 0),
        )
        y1, x1 = np.minimum(y0 + 1, ty - 1), np.minimum(x0 + 1, tx - 1)
        wy, wx = (fy - y0)[:, None], (fx - x0)[None, :]
        yy, xx = y0[:, None], x0[None, :]
        v = plane
        top = (1 - wx) * lut[yy, xx, v] + wx * lut[yy, x1[None, :], v]
        bot = (1 - wx) * lut[y1[:, None], xx, v] + wx * lut[y1[:, None], x1[None, :], v]
        out.append((1 - wy) * top + wy * bot)
    return torch.from_numpy(np.stack(out)).float()


def _texture(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    kind = _pick(rng, (0.4, 0.5, 0.1))
    same = np.zeros((3, 3))
    same[1, 1] = 1.0
    if kind == 0:  # emboss
        alpha, s = rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.8)
        effect = np.array([[-1 - s, -s, 0.0], [-s, 1.0, s], [0.0, s, 1 + s]])
        return _kernel(x, (1 - alpha) * same + alpha * effect)
    if kind == 1:  # sharpen
        alpha, light = rng.uniform(0.1, 0.3), rng.uniform(0.0, 0.4)
        effect = np.array([[-1.0, -1.0, -1.0], [-1.0, 8.0 + light, -1.0], [-1.0, -1.0, -1.0]])
        return _kernel(x, (1 - alpha) * same + alpha * effect)
    return clahe(x)


def _colour(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    kind = _pick(rng, (0.4, 0.4, 0.2))
    if kind == 0:  # brightness (times the mean) and contrast, one of the seed's four range pairs
        b, c = (
            ((-0.3, 0.0), (-0.2, 0.0)),
            ((0.0, 0.4), (-0.5, 0.0)),
            ((-0.3, 0.0), (0.0, 0.5)),
            ((0.0, 0.3), (0.0, 0.5)),
        )[_pick(rng, (0.4, 0.4, 0.1, 0.1))]
        return x * (1.0 + rng.uniform(*c)) + rng.uniform(*b) * x.mean()
    if kind == 1:  # tone curve: a cubic Bezier via (0, 0), (0.25, lo), (0.75, hi), (1, 1), one for all slices
        t = x.clamp(0, 255) / 255.0
        lo, hi = (float(np.clip(rng.normal(m, 0.3), 0, 1)) for m in (0.25, 0.75))
        return 255.0 * (3 * (1 - t) ** 2 * t * lo + 3 * (1 - t) * t**2 * hi + t**3)
    return 255.0 * (x.clamp(0, 255) / 255.0) ** rng.uniform(0.6, 1.5)


GROUPS: tuple[tuple[float, Callable[[torch.Tensor, np.random.Generator], torch.Tensor]], ...] = (
    (0.1, _noise),
    (0.25, _quality),
    (0.1, _texture),
    (0.5, _colour),
)


def pixels_2d(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The seed's voxel groups (module docstring) on grey ``[C, H, W]``; returns float32 clipped to [0, 255]."""
    x = x.float()
    for p, group in GROUPS:
        if rng.random() < p:
            x = group(x, rng)
    return x.clamp(0.0, 255.0)
