#!/usr/bin/env python3
"""Calibrate, evaluate and time the default sub-network ladder of each shipped supernet and write
config/operating_points/fmnist_<family>.yaml plus models/bn/*.pt:

    python3 scripts/build_default_tables.py [--family ofa_mbv3|elastic_vit] [--threads 1]
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dynofa_ros.engine.defaults import LADDERS, build_default_table  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", choices=sorted(LADDERS), action="append")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    for fam in args.family or sorted(LADDERS):
        print("wrote", build_default_table(fam, ROOT, args.threads))
