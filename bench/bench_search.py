#!/usr/bin/env python3
"""Search wall time: `dynofa search`'s evolution against the `ofa` package's own EvolutionFinder.

Both get the same accuracy predictor (OFA's published acc_predictor.pth), the same latency table, the same
population, generations, parent and mutation ratios, and the same constraints; the two run interleaved,
limit by limit, so machine load hits both alike. The only difference is the search machinery: ours
precomputes the table per block slot (exact for fixed-width MBv3, checked here), ofa walks the table's
string keys for every candidate. Reported: wall time per limit, the ratio ofa / ours, and front quality
(best predicted top-1 each finds within the limit).

    python bench/bench_search.py --ofa-data ../shared/data/ofa [--lut NAME=DIR ...] [--generations 500]

The committed result also ran Dynamic-OFA's published Jetson Xavier NX tables (UoS-EEC/DynamicOFA,
optimal_search/latency/checkpoints/latency_table@jetson{,_GPU}/<R>_lookup_table.json), copied to /tmp:
they are the user's files, not the project's.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dynofa_ros.offline.acc_predictor import OFA_E, OFA_KS, OFAAccuracyPredictor  # noqa: E402
from dynofa_ros.offline.lut import ResolutionLUT, ofa_w12_net_config  # noqa: E402
from dynofa_ros.offline.search import (EvolutionParams, evolve, slot_cost_model, slot_space,  # noqa: E402
                                       with_true_cheapest)
from dynofa_ros.operating_points import atomic_write_text  # noqa: E402

RESULTS = ROOT / "bench" / "results"


class _OfaAccuracy:
    """ofa's EvolutionFinder interface over the same predictor file (ofa's own class does not load it)."""

    def __init__(self, predictor: OFAAccuracyPredictor, resolutions: list[int]) -> None:
        from ofa.nas.accuracy_predictor.arch_encoder import MobileNetArchEncoder
        self.predictor = predictor
        self.arch_encoder = MobileNetArchEncoder(image_size_list=resolutions, ks_list=list(OFA_KS),
                                                 expand_list=list(OFA_E), depth_list=[2, 3, 4])

    def predict_acc(self, samples: list[dict]) -> torch.Tensor:
        return torch.tensor(self.predictor.predict([{**s, "r": [s["image_size"]]} for s in samples]))


class _OfaLatency:
    """ofa's efficiency interface: the table walked per candidate, as ofa's LatencyTable does."""

    def __init__(self, lut: ResolutionLUT) -> None:
        self.lut = lut

    def get_efficiency(self, sample: dict) -> float:
        return self.lut.predict_config(ofa_w12_net_config(sample["ks"], sample["e"], sample["d"]), sample["image_size"])


def _run_ofa(lut, predictor, resolutions, limit, params, seed) -> tuple[float, float, float]:
    from ofa.nas.search_algorithm import EvolutionFinder
    random.seed(seed)
    np.random.seed(seed)
    finder = EvolutionFinder(_OfaLatency(lut), _OfaAccuracy(predictor, resolutions), population_size=params.population,
                             max_time_budget=params.generations, parent_ratio=params.parent_ratio,
                             mutation_ratio=params.mutation_ratio, arch_mutate_prob=params.mutation_prob)
    t0 = time.perf_counter()
    _, (acc, _, latency) = finder.run_evolution_search(limit, verbose=False)
    return time.perf_counter() - t0, acc, latency


def _run_ours(lut, predictor, resolutions, limit, params, seed) -> tuple[float, float, float]:
    exact = lambda a: lut.predict_config(ofa_w12_net_config(list(a.ks), list(a.e), list(a.d)), a.r)  # noqa: E731
    t0 = time.perf_counter()  # the per-slot model is built inside the timed region: it is part of our search
    model = slot_cost_model(exact, OFA_KS, OFA_E, (2, 3, 4), resolutions)
    space = with_true_cheapest(slot_space(OFA_KS, OFA_E, (2, 3, 4), resolutions), model.cheapest)
    acc = lambda archs: predictor.predict([a.as_ofa() for a in archs])  # noqa: E731
    r = evolve(space, acc, model.cost, limit, EvolutionParams(**{**params.__dict__, "seed": seed}))
    assert abs(exact(r.best.arch) - r.best.cost) < 1e-6 * max(1.0, r.best.cost), "per-slot model != table walk"
    return time.perf_counter() - t0, r.best.accuracy, r.best.cost


def bench_table(name: str, folder: Path, predictor, params, fractions, repeats) -> dict:
    lut = ResolutionLUT.load_dir(folder)
    resolutions = [r for r in lut.resolutions() if 160 <= r <= 224]
    exact = lambda a: lut.predict_config(ofa_w12_net_config(list(a.ks), list(a.e), list(a.d)), a.r)  # noqa: E731
    model = slot_cost_model(exact, OFA_KS, OFA_E, (2, 3, 4), resolutions)
    limits = [model.low + (model.high - model.low) * f for f in fractions]
    rows = []
    for i, limit in enumerate(limits):
        for rep in range(repeats):
            seed = 100 * i + rep
            runs = [("ofa", _run_ofa), ("ours", _run_ours)] if (i + rep) % 2 == 0 else [("ours", _run_ours), ("ofa", _run_ofa)]
            row = {"limit_ms": limit, "repeat": rep}
            for who, run in runs:
                wall, acc, cost = run(lut, predictor, resolutions, limit, params, seed)
                row[who] = {"wall_s": wall, "best_predicted_accuracy": acc, "latency_ms": cost}
                assert cost <= limit * (1 + 1e-9), f"{who} broke the limit"
            row["wall_ratio_ofa_over_ours"] = row["ofa"]["wall_s"] / row["ours"]["wall_s"]
            rows.append(row)
            print(f"{name} limit {limit:8.2f} ms  ofa {row['ofa']['wall_s']:6.2f}s acc {row['ofa']['best_predicted_accuracy']:.4f}"
                  f"  ours {row['ours']['wall_s']:6.2f}s acc {row['ours']['best_predicted_accuracy']:.4f}"
                  f"  ratio {row['wall_ratio_ofa_over_ours']:.2f}x", flush=True)
    ratios = [r["wall_ratio_ofa_over_ours"] for r in rows]
    gaps = [r["ours"]["best_predicted_accuracy"] - r["ofa"]["best_predicted_accuracy"] for r in rows]
    return {"table": name, "folder": str(folder), "resolutions": resolutions, "cost_range_ms": [model.low, model.high],
            "rows": rows, "median_wall_ratio": statistics.median(ratios), "min_wall_ratio": min(ratios),
            "median_accuracy_gap_points": 100 * statistics.median(gaps), "min_accuracy_gap_points": 100 * min(gaps)}


def write_markdown(result: dict, path: Path) -> None:
    p = result["evolution"]
    lines = ["# Search wall time: `dynofa search` vs ofa's EvolutionFinder", "",
             f"Same predictor (OFA acc_predictor.pth), table, population {p['population']}, {p['generations']} "
             "generations, parent 0.25, mutation 0.5; interleaved per limit. Produced by "
             f"`{result['command']}` (load average at the end {result['load_average_end']}).", "",
             "| table | limit ms | ofa s | ours s | ofa / ours | best top-1 ofa | best top-1 ours |",
             "|---|---|---|---|---|---|---|"]
    for t in result["tables"]:
        for r in t["rows"]:
            lines.append(f"| {t['table']} | {r['limit_ms']:.2f} | {r['ofa']['wall_s']:.2f} | {r['ours']['wall_s']:.2f} | "
                         f"{r['wall_ratio_ofa_over_ours']:.2f}x | {r['ofa']['best_predicted_accuracy']:.4f} | "
                         f"{r['ours']['best_predicted_accuracy']:.4f} |")
    lines += [""] + [f"- {t['table']}: median ofa/ours wall ratio {t['median_wall_ratio']:.2f}x (min "
                     f"{t['min_wall_ratio']:.2f}x); best predicted top-1 ours - ofa: median "
                     f"{t['median_accuracy_gap_points']:+.2f} points (worst {t['min_accuracy_gap_points']:+.2f})"
                     for t in result["tables"]]
    atomic_write_text(path, "\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ofa-data", default=str(ROOT.parent / "shared" / "data" / "ofa"),
                    help="folder with acc_predictor.pth and note10/ (OFA's published files)")
    ap.add_argument("--lut", nargs="*", default=[], help="more LUT folders (name=DIR), e.g. Dynamic-OFA's Jetson tables")
    ap.add_argument("--population", type=int, default=100)
    ap.add_argument("--generations", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 0.75],
                    help="limits as fractions of each table's cost range")
    ap.add_argument("--out", default=str(RESULTS / "search_vs_ofa"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = Path(args.ofa_data)
    if not (data / "acc_predictor.pth").exists():
        sys.exit(f"bench_search: OFA's acc_predictor.pth not found in {data} (--ofa-data)")
    predictor = OFAAccuracyPredictor(data / "acc_predictor.pth")
    params = EvolutionParams(population=args.population, generations=args.generations)
    tables = [("note10", data / "note10")] + [tuple(x.split("=", 1)) if "=" in x else (Path(x).name, x) for x in args.lut]
    result = {"command": "python bench/bench_search.py " + " ".join(sys.argv[1:]), "evolution": params.__dict__,
              "tables": [bench_table(n, Path(f), predictor, params, args.fractions, args.repeats) for n, f in tables]}
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    atomic_write_text(args.out + ".json", json.dumps(result, indent=1))
    write_markdown(result, Path(args.out + ".md"))
    print(f"wrote {args.out}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
