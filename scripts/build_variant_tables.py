#!/usr/bin/env python3
"""Add measured graph-variant points (frozen, int8) to an operating-point table, and ship the int8
calibration images the runtime needs to rebuild the same int8 forms:

    python3 scripts/build_variant_tables.py config/operating_points/fmnist28_ofa_mbv3.yaml

Writes the table in place (or to --out) and models/calibration/fmnist_train<N>.pt (uint8 [N, 1, 28, 28],
the seeded train subset the int8 forms were calibrated on), named in the table's
``supernet.calibration_images``.  See dynofa_ros/offline/variants.py for what is measured and kept.
"""
import argparse
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from dynofa_ros.offline.variants import DEFAULT_CALIB_IMAGES, DEFAULT_TOLERANCE, add_variant_points, fmnist_data, format_result  # noqa: E402
from dynofa_ros.operating_points import load_table, resolve_bn_stats, save_table  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table")
    ap.add_argument("--out", help="table to write (default: in place)")
    ap.add_argument("--calib-images", type=int, default=DEFAULT_CALIB_IMAGES)
    ap.add_argument("--int8-tolerance", type=float, default=DEFAULT_TOLERANCE)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = fmnist_data(args.calib_images, seed=0)
    rel = Path("models") / "calibration" / f"fmnist_train{args.calib_images}.pt"
    (ROOT / rel).parent.mkdir(parents=True, exist_ok=True)
    torch.save(data.calib_images.clone(), ROOT / rel)
    out = Path(args.out or args.table)
    _, results = add_variant_points(args.table, out, data=data, int8_tolerance=args.int8_tolerance,
                                    rounds=args.rounds, runs=args.runs, on_result=lambda r: print(format_result(r), flush=True))
    table = load_table(out)
    save_table(replace(table, supernet=replace(table.supernet, calibration_images=str(rel))), out)
    print(f"wrote {out} ({sum(r.kept for r in results)} variant points kept of {len(results)}) and {rel}")
    drop_unreferenced_bn(out)
    return 0


def drop_unreferenced_bn(table_path: Path) -> None:
    """Remove the BN files in the table's own bn/<table name>/ folder that no row names any more
    (sub-networks whose every row was dropped as dominated)."""
    folder = table_path.parent / "bn" / table_path.stem
    used = {path.resolve() for path in (resolve_bn_stats(table_path, p) for p in load_table(table_path).points) if path}
    for f in sorted(folder.glob("*.pt")):
        if f.resolve() not in used:
            f.unlink()
            print(f"removed {f} (no row of {table_path.name} uses it)")


if __name__ == "__main__":
    sys.exit(main())
