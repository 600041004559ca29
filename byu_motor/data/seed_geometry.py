"""The seed's zoom and affine matrices, built as MONAI 1.4.0 built them, independently of the installed MONAI.

The seed (MONAI 1.4.0) works in MONAI's axis order ``(X, Y, Z)`` (its ZYX arrays are permuted ``(2, 1, 0)``);
this package works in ``(z, y, x)``. Every matrix here is first built in XYZ exactly as MONAI 1.4.0 did, then
conjugated by the axis reversal ``P`` (``M_zyx = P M_xyz P``, ``P = P^-1``). All matrices map output offsets to
input offsets about the window centre (MONAI's ``AffineGrid`` convention), ``(3, 3)``.

MONAI 1.4 / 1.5 build a shear by assigning the coefficients (``out[0, 1] = c0, out[0, 2] = c1, out[1, 0] = c2,
...``); MONAI 1.6 composes elementary shears, which gives other matrices for the same coefficients. So the
builders are re-implemented here rather than imported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# Section 5.3 of the seed recipe (configs/data/3d_heatmap.yaml, aug).
ZOOM_P, ZOOM_RANGE = 0.4, (0.6, 1.2)
AFFINE_P, AFFINE_WEIGHTS = 0.75, (0.5, 0.25)
SCALE_RANGE, SHEAR_RANGE, TILT_DEG = 0.3, 0.2, 15.0

#: the axis reversal zyx <-> xyz
REVERSE = np.eye(3)[::-1].copy()


def monai_rotate(radians: Sequence[float]) -> np.ndarray:
    """MONAI 1.4 ``create_rotate(3, radians)`` ``(3, 3)``: ``R0 @ R1 @ R2``, ``Ri`` a turn about MONAI axis ``i``.

    ``R0`` turns axes 1-2 (``[[c, -s], [s, c]]`` on them), ``R1`` axes 0-2 (``[0, 2] = s, [2, 0] = -s``), ``R2``
    axes 0-1 (``[0, 1] = -s, [1, 0] = s``). Angles in radians; missing ones are 0.
    """
    a = list(radians) + [0.0] * (3 - len(radians))
    out = np.eye(3)
    for axis, (i, j) in enumerate(((1, 2), (0, 2), (0, 1))):
        s, c = math.sin(a[axis]), math.cos(a[axis])
        r = np.eye(3)
        r[i, i], r[j, j] = c, c
        r[i, j], r[j, i] = (s, -s) if axis == 1 else (-s, s)
        out = out @ r
    return out


def monai_shear(coefs: Sequence[float]) -> np.ndarray:
    """MONAI 1.4 ``create_shear(3, coefs)`` ``(3, 3)``: up to 6 coefficients assigned (missing ones 0).

    ``[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1] = c0 .. c5``: ``[i, j]`` adds ``c * out_j`` to ``in_i``.
    """
    c = list(coefs) + [0.0] * (6 - len(coefs))
    out = np.eye(3)
    for k, (i, j) in enumerate(((0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1))):
        out[i, j] = c[k]
    return out


def monai_scale(factors: Sequence[float]) -> np.ndarray:
    """MONAI ``create_scale(3, factors)`` ``(3, 3)``: ``diag(factors)`` (an output step of ``f`` input voxels)."""
    return np.diag(np.asarray(factors, dtype=np.float64))


def xyz_to_zyx(matrix_xyz: np.ndarray) -> np.ndarray:
    """A ``(3, 3)`` matrix acting on ``(x, y, z)`` offsets as the same map on ``(z, y, x)`` offsets."""
    return REVERSE @ np.asarray(matrix_xyz, dtype=np.float64) @ REVERSE


def zoom_steps(factors: np.ndarray, size: Sequence[int] | None) -> np.ndarray:
    """Output-to-input step ``(3,)`` of MONAI's ``Zoom(keep_size=True)`` for magnifications ``factors`` ``(3,)``.

    MONAI zooms an axis of ``n`` voxels to ``floor(n z)`` voxels (step ``n / floor(n z)``), then pads or crops
    back to ``n``; without ``size`` the step is the unquantised ``1 / z``. (The pad/crop can also shift the
    window by up to half a voxel, a translation this matrix does not carry.)
    """
    z = np.asarray(factors, dtype=np.float64)
    if size is None:
        return 1.0 / z
    n = np.asarray(size, dtype=np.float64)
    return n / np.maximum(np.floor(n * z), 1.0)


def seed_affine_xyz(rng: np.random.Generator) -> np.ndarray:
    """One draw of the seed's affine (it has fired) in XYZ ``(3, 3)``: ``rotate @ shear @ scale``.

    Light (weight 0.5): ``rotate_range ((0, 0), (0, 0), (0, 2 pi))``, no shear. Heavy (weight 0.25): tilts
    ``U(-15, 15)`` deg about X and about Y, the in-plane ``U(0, 2 pi)`` about Z, and ``shear_range`` of 3
    ranges ``U(-0.2, 0.2)``, i.e. only X<-Y, X<-Z and Y<-X. Both: scale ``1 + U(-0.3, 0.3)`` per axis.
    """
    w = np.asarray(AFFINE_WEIGHTS) / sum(AFFINE_WEIGHTS)
    heavy = rng.random() >= w[0]
    tilt = math.radians(TILT_DEG)
    angles = [0.0, 0.0, rng.uniform(0.0, 2.0 * math.pi)]
    shear = np.eye(3)
    if heavy:
        angles[:2] = rng.uniform(-tilt, tilt, size=2)
        shear = monai_shear(rng.uniform(-SHEAR_RANGE, SHEAR_RANGE, size=3))
    scale = 1.0 + rng.uniform(-SCALE_RANGE, SCALE_RANGE, size=3)
    return monai_rotate(angles) @ shear @ monai_scale(scale)


def sample_seed_matrix(rng: np.random.Generator, size: Sequence[int] | None = None) -> np.ndarray:
    """Draw the seed's zoom @ affine matrix ``(3, 3)`` (output to input offsets, zyx), identity when neither fires.

    Zoom (p 0.4): ``RandZoom`` magnification ``U(0.6, 1.2)`` drawn per axis (3 ranges), quantised as MONAI
    does when the window ``size`` ``(D, H, W)`` is given (:func:`zoom_steps`). Affine (p 0.75): see
    :func:`seed_affine_xyz`. Composed as the seed's lazy pipeline: ``zoom @ affine`` in XYZ, then to zyx.
    """
    m = np.eye(3)
    if rng.random() < ZOOM_P:
        z_xyz = rng.uniform(*ZOOM_RANGE, size=3)
        m = np.diag(zoom_steps(z_xyz, None if size is None else tuple(size)[::-1]))
    if rng.random() < AFFINE_P:
        m = m @ seed_affine_xyz(rng)
    return xyz_to_zyx(m)
