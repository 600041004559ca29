"""`byu-motor convert`: turn MRC / OME-Zarr volumes into the competition layout (JPEG slices + labels)."""

from __future__ import annotations

import argparse
import csv
import re
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
A tomogram absent from the CSV is written as motor-free.
"""

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
    parser.add_argument("--low-pct", type=float, default=0.5, help="percentile mapped to 0 (default 0.5)")
    parser.add_argument(
        "--high-pct", type=float, default=99.5, help="percentile mapped to 255 (default 99.5)"
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


def run(args: argparse.Namespace) -> int:
    """Convert every input; returns 0 on success, 1 when an input or the label file is wrong."""
    import numpy as np
    import pandas as pd

    from byu_motor.data.external import read_volume, source_stem, to_uint8
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

    for source, tomo_id, motors in jobs:
        try:
            volume = read_volume(source)
            spacing_a = args.spacing_a if args.spacing_a else _isotropic_spacing(volume.spacing_a, source)
            zyx = np.asarray(motors, dtype=np.float64).reshape(-1, 3)
            shape = volume.shape
            outside = (zyx < 0) | (zyx > np.asarray(shape) - 1)
            if outside.any():
                bad = zyx[outside.any(axis=1)][0].tolist()
                raise ValueError(f"{source}: motor {bad} (z, y, x) lies outside the volume shape {shape}")
            data = to_uint8(volume.data, args.low_pct, args.high_pct)
        except ImportError as err:  # a missing optional reader (mrcfile, zarr): one line, exit 2
            raise ValueError(f"{source}: {err}") from err
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
