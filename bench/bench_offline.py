"""Offline-stage benchmark -> bench/results/offline.json.

1. Search wall time with OFA's defaults (population 100, 500 generations, parent ratio 0.25, mutation
   ratio 0.5, mutation prob 0.1): per constraint value, in the OFA ImageNet w1.2 space (OFA's published
   predictor + note10 LUT, when the shared data is present) and in the project's Fashion-MNIST space
   (own MLP predictor + LUT profiled here).
2. LUT-predicted vs measured latency on this CPU over >= 30 random sub-networks of the Fashion-MNIST
   space: median and worst relative error.

    PYTHONPATH=. python bench/bench_offline.py [--checkpoint models/fmnist28_ofa_mbv3.pt] [--n 40] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dynofa_ros.offline.acc_predictor import MLPAccuracyPredictor, OFAAccuracyPredictor  # noqa: E402
from dynofa_ros.offline.lut import ResolutionLUT, ofa_w12_net_config  # noqa: E402
from dynofa_ros.offline.pipeline import MBv3Adapter, build_lut, lut_error, run_search, search_cost  # noqa: E402
from dynofa_ros.offline.search import EvolutionParams, slot_space, sweep  # noqa: E402
from dynofa_ros.operating_points import atomic_write_text  # noqa: E402


def ofa_data() -> Path | None:
    p = Path(os.environ.get("DYNOFA_OFA_DATA", REPO.parent / "shared" / "data" / "ofa"))
    return p if (p / "acc_predictor.pth").exists() else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="Fashion-MNIST supernet (default: untrained supernet of the same "
                                         "architecture; latency does not depend on weight values)")
    ap.add_argument("--n", type=int, default=40, help="sub-networks for the LUT error")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lut", help="LUT folder to reuse (default: profile into a temp folder)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "offline.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = EvolutionParams()  # OFA defaults
    result: dict = {"host": {"machine": platform.machine(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                             "threads": args.threads}, "evolution": params.__dict__}

    data = ofa_data()
    if data:
        lut = ResolutionLUT.load_dir(data / "note10")
        pred = OFAAccuracyPredictor(data / "acc_predictor.pth")
        space = slot_space((3, 5, 7), (3, 4, 6), (2, 3, 4), lut.resolutions())
        cost = lambda a: lut.predict_config(ofa_w12_net_config(list(a.ks), list(a.e), list(a.d)), a.r)  # noqa: E731
        acc = lambda archs: pred.predict([a.as_ofa() for a in archs])  # noqa: E731
        limits = [20.0, 40.0, 60.0]
        rs = sweep(space, acc, cost, limits, params)
        result["ofa_imagenet_space"] = {
            "predictor": "OFA acc_predictor.pth", "lut": "OFA note10", "limits_ms": limits,
            "wall_s_per_constraint": [round(r.wall_s, 2) for r in rs],
            "best": [{"limit_ms": r.constraint, "lut_ms": round(r.best.cost, 3), "predicted_top1": round(r.best.accuracy, 4)}
                     for r in rs]}
        print(json.dumps(result["ofa_imagenet_space"], indent=1), flush=True)

    from dynofa_ros.supernet.checkpoint import build_supernet, load_supernet
    from dynofa_ros.supernet.ofa_mbv3 import fmnist_mbv3_config

    if args.checkpoint:
        sn, _ = load_supernet(args.checkpoint)
    else:
        torch.manual_seed(0)
        sn = build_supernet("ofa_mbv3", fmnist_mbv3_config()).eval()
    ad = MBv3Adapter(sn)
    lut_dir = Path(args.lut) if args.lut else Path(tempfile.mkdtemp(prefix="dynofa_lut_"))
    t0 = time.perf_counter()
    flut = build_lut(sn, lut_dir, threads=args.threads, show_progress=False)
    lut_s = time.perf_counter() - t0
    # search timing in this space: predictor fitted on random labels of the right shape (timing only)
    rng = random.Random(0)
    feats = [ad.encode(ad.space().sample(rng)) for _ in range(64)]
    mlp = MLPAccuracyPredictor(len(feats[0]))
    mlp.fit(feats, [rng.uniform(0.8, 0.9) for _ in feats], epochs=50)
    model = search_cost(ad, "latency", flut)
    limits = [round(model.low + (model.high - model.low) * f, 3) for f in (0.2, 0.5, 0.8)]
    rs = run_search(ad, mlp, model, limits=limits, params=params)
    result["fmnist_space"] = {
        "checkpoint": args.checkpoint or "untrained fmnist_mbv3_config() supernet",
        "lut_entries": sum(len(t) for t in flut.tables.values()), "lut_profile_s": round(lut_s, 1),
        "limits_ms": limits, "wall_s_per_constraint": [round(r.wall_s, 2) for r in rs]}
    print(json.dumps(result["fmnist_space"], indent=1), flush=True)

    # LUT accuracy with wall-clock timing, and with thread CPU time (one thread), which excludes the time
    # a run spends preempted when other jobs share the cores (the load average is recorded)
    cpu_lut = build_lut(sn, Path(str(lut_dir) + "_cpuclock"), threads=1, show_progress=False, clock="cpu")
    result["load_average_before"] = os.getloadavg()
    for name, table, clock in (("lut_error", flut, "wall"), ("lut_error_cpu_clock", cpu_lut, "cpu")):
        err = lut_error(ad, table, args.n, threads=1 if clock == "cpu" else args.threads, seed=1, clock=clock)
        rnd = lambda d: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}  # noqa: E731
        result[name] = rnd({k: v for k, v in err.items() if k != "samples"})
        result[name]["samples"] = [rnd(s) for s in err["samples"]]
        print(name, json.dumps({k: v for k, v in result[name].items() if k != "samples"}), flush=True)
    result["load_average_after"] = os.getloadavg()
    atomic_write_text(args.out, json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
