"""`byu-motor convert`: turn MRC / OME-Zarr volumes into the competition layout (JPEG slices + labels)."""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

HELP = "convert MRC / OME-Zarr tomograms to DATA_DIR/<split>/<tomo_id>/slice_*.jpg and train_labels.csv rows"

EPILOG = """\
Each INPUT (an MRC file or an OME-Zarr folder) is stretched to uint8 (percentiles --low-pct/--high-pct)
and written as DATA_DIR/<split>/<tomo_id>/slice_0000.jpg ...; tomo_id is --tomo-id-prefix + the file stem
(`TS_01.ome.zarr` -> `TS_01`). Volumes are not resampled: the spacing is written to the labels as is.

For --split train one row per motor (or one -1 row) is appended to DATA_DIR/train_labels.csv, which is
created with the competition header if missing. Motors come from --motors CSV with columns
`tomo_id, z, y, x`: tomo_id is either the output tomo_id or the source file stem, and z, y, x are
voxel coordinates (axis 0, 1, 2) of the SOURCE volume, which are also those of the written tomogram.
A tomogram absent from the CSV is written as motor-free. With --motors-grid Z,Y,X the CSV's z, y, x are
voxels of that grid instead (brendanartley's external list: --motors-grid 128,512,512; its z indexes
linspace(0, Z-1, 128) of the source), mapped onto the source volume the seed's way.

--preset seed processes CryoET Data Portal volumes as the 3rd-place solution did: clip to the 0.879 and
99.064 percentiles, scale to [0, 255], resample trilinearly to max(16 A, the file's spacing) and write uint8
JPEG slices; the labels get the new shape, spacing and motor coordinates. Any volume whose converted shape
is under 128 voxels on an axis gets a one-line warning (its spacing is likely wrong).
"""

PRESETS = {
    "plain": {"low_pct": 0.5, "high_pct": 99.5, "min_spacing_a": None},
    "seed": {"low_pct": 0.879, "high_pct": 99.064, "min_spacing_a": 16.0},
}

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `byu-motor convert`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="MRC files and/or OME-Zarr folders")
    parser.add_argument("--out", required=True, metavar="DATA_DIR", help="root of the competition layout")
    parser.add_argument("--split", default="train", help="sub-folder to write into (default: train)")
    parser.add_argument(
        "--motors", metavar="CSV", help="motor positions: columns tomo_id, z, y, x (source voxels)"
    )
    parser.add_argument(
        "--spacing-a", type=float, metavar="A", help="voxel spacing in Angstrom, overriding the file's"
    )
    parser.add_argument("--tomo-id-prefix", default="", help="prefix of every tomo_id (e.g. 'ext_')")
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="plain",
        help="plain: stretch only (0.5-99.5 %%), no resampling; seed: the 3rd place's portal processing "
        "(default: plain)",
    )
    parser.add_argument(
        "--low-pct", type=float, default=None, help="percentile mapped to 0 (default: the preset's)"
    )
    parser.add_argument(
        "--high-pct", type=float, default=None, help="percentile mapped to 255 (default: the preset's)"
    )
    parser.add_argument(
        "--min-spacing-a",
        type=float,
        default=None,
        metavar="A",
        help="resample finer volumes to this spacing (default: the preset's; plain: none, seed: 16)",
    )
    parser.add_argument(
        "--motors-grid",
        default=None,
        metavar="Z,Y,X",
        help="the --motors coordinates are voxels of this grid, e.g. 128,512,512 (default: source voxels)",
    )
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality (default 95)")


def read_motor_csv(path: str | Path) -> dict[str, list[tuple[float, float, float]]]:
    """Read a motors CSV (``tomo_id, z, y, x``) into ``{tomo_id: [(z, y, x), ...]}`` (source voxels).

    Raises:
        ValueError: missing columns or a non-numeric coordinate (naming the file and line).
    """
    path = Path(path)
    motors: dict[str, list[tuple[float, float, float]]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in ("tomo_id", "z", "y", "x") if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; header is {header}")
        reader.fieldnames = header
        for row in reader:
            try:
                zyx = (float(row["z"]), float(row["y"]), float(row["x"]))
            except (TypeError, ValueError):
                raise ValueError(f"{path}: line {reader.line_num}: non-numeric coordinate in {row}") from None
            motors.setdefault(row["tomo_id"].strip(), []).append(zyx)
    return motors


def _isotropic_spacing(spacing: tuple[float, float, float] | None, source: Path) -> float:
    if spacing is None:
        raise ValueError(f"{source}: the file gives no voxel spacing; pass --spacing-a")
    if max(spacing) > 1.01 * min(spacing):
        raise ValueError(
            f"{source}: anisotropic spacing {spacing} A (z, y, x); pass --spacing-a to force one"
        )
    return float(sum(spacing) / 3)


def _settings(args: argparse.Namespace) -> dict:
    """Stretch percentiles, resampling floor and motor grid: the preset's, overridden by the options."""
    settings = dict(PRESETS[args.preset])
    for key in ("low_pct", "high_pct", "min_spacing_a"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    settings["grid"] = None
    if args.motors_grid:
        try:
            grid = tuple(int(v) for v in args.motors_grid.split(","))
        except ValueError:
            grid = ()
        if len(grid) != 3 or min(grid) < 1:
            raise ValueError(f"--motors-grid must be three positive integers Z,Y,X, got {args.motors_grid!r}")
        settings["grid"] = grid
    return settings


def _convert_one(source: Path, motors: list, args: argparse.Namespace, settings: dict) -> tuple:
    """``(uint8 volume, motors (n, 3) in its voxels, its spacing in A)`` of one input."""
    import numpy as np

    from byu_motor.data.external import read_volume, stretch_and_resample
    from byu_motor.data.grid import Grid
    from byu_motor.data.label_formats import grid_list_to_volume

    volume = read_volume(source)
    spacing_a = args.spacing_a if args.spacing_a else _isotropic_spacing(volume.spacing_a, source)
    zyx = np.asarray(motors, dtype=np.float64).reshape(-1, 3)
    shape = volume.shape
    if settings["grid"] is not None:
        zyx = grid_list_to_volume(zyx, shape, settings["grid"])
    outside = (zyx < 0) | (zyx > np.asarray(shape) - 1)
    if outside.any():
        bad = zyx[outside.any(axis=1)][0].tolist()
        raise ValueError(f"{source}: motor {bad} (z, y, x) lies outside the volume shape {shape}")
    data, new_spacing = stretch_and_resample(
        volume.data,
        spacing_a,
        settings["low_pct"],
        settings["high_pct"],
        settings["min_spacing_a"],
        stretch_uint8=args.preset != "plain",  # plain keeps a uint8 volume as it is
    )
    if data.shape != shape:
        target = Grid(data.shape, new_spacing)
        zyx = target.clip(Grid(shape, spacing_a).map_to(target, zyx))  # a motor in the first half voxel
    return data, zyx, new_spacing


def run(args: argparse.Namespace) -> int:
    """Convert every input; returns 0 on success, 1 when an input or the label file is wrong."""
    import pandas as pd

    from byu_motor.data.external import SMALL_AXIS_VOX, source_stem
    from byu_motor.data.io import write_tomogram
    from byu_motor.data.layout import LABEL_COLUMNS, LabelError, read_labels

    out_dir = Path(args.out)
    split_dir = out_dir / args.split
    labels_csv = out_dir / "train_labels.csv"
    write_labels = args.split == "train"
    try:
        motors_by_id = read_motor_csv(args.motors) if args.motors else {}
        known = read_labels(labels_csv) if write_labels and labels_csv.exists() else {}
        next_row = 0
        if write_labels and labels_csv.exists():
            existing = pd.read_csv(labels_csv)
            if list(existing.columns) != list(LABEL_COLUMNS):  # rows are appended by position
                raise ValueError(
                    f"{labels_csv}: header {list(existing.columns)} is not {list(LABEL_COLUMNS)}"
                )
            next_row = int(existing["row_id"].max()) + 1 if len(existing) else 0
        jobs = []
        for source in map(Path, args.inputs):
            stem = source_stem(source)
            tomo_id = _SAFE.sub("_", f"{args.tomo_id_prefix}{stem}")
            if tomo_id in known or (split_dir / tomo_id).exists() or tomo_id in [j[1] for j in jobs]:
                raise ValueError(
                    f"{source}: tomo_id {tomo_id} already exists in {out_dir} (or twice in INPUT)"
                )
            jobs.append((source, tomo_id, motors_by_id.get(tomo_id, motors_by_id.get(stem, []))))
        # Catch motors that match no input: a typo there would silently give a motor-free label.
        unused = set(motors_by_id) - {j[1] for j in jobs} - {source_stem(j[0]) for j in jobs}
        if unused:
            raise ValueError(f"{args.motors}: tomo_id(s) {sorted(unused)} match no INPUT")
    except OSError as err:  # ValueErrors (LabelError, ExternalVolumeError too) go to the CLI's error path
        raise ValueError(str(err)) from err

    settings = _settings(args)
    for source, tomo_id, motors in jobs:
        try:
            data, zyx, spacing_a = _convert_one(source, motors, args, settings)
        except ImportError as err:  # a missing optional reader (mrcfile, zarr): one line, exit 2
            raise ValueError(f"{source}: {err}") from err
        shape = data.shape
        if min(shape) < SMALL_AXIS_VOX:
            print(
                f"warning: {source}: converted volume is only {shape} voxels at {spacing_a:.3f} A "
                f"(< {SMALL_AXIS_VOX} on an axis); check its voxel spacing",
                file=sys.stderr,
            )
        write_tomogram(data, split_dir / tomo_id, quality=args.quality)
        print(
            f"{source} -> {split_dir / tomo_id}  shape {shape}  spacing {spacing_a:.3f} A  motors {len(zyx)}"
        )
        if not write_labels:
            continue
        rows = [[z, y, x] for z, y, x in zyx.tolist()] or [[-1.0, -1.0, -1.0]]
        new_file = not labels_csv.exists()
        with open(labels_csv, "a", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            if new_file:
                writer.writerow(LABEL_COLUMNS)
            for z, y, x in rows:
                writer.writerow(
                    [next_row, tomo_id, float(z), float(y), float(x), *shape, spacing_a, len(zyx)]
                )
                next_row += 1
    if write_labels:
        try:
            read_labels(labels_csv)  # what we appended must read back
        except LabelError as err:
            raise ValueError(f"{labels_csv} no longer reads back: {err}") from err
    return 0
