#!/usr/bin/env python3
"""Weight-shared sub-network modules (dynofa_ros.engine.shared) against privately copied ones.

For every eager point of each table (default: the shipped 28-px MBv3 table, then the retired ViT table
in test/fixtures/legacy): max abs output difference on the first 1,000 Fashion-MNIST test images (batched
and at batch 1), batch-1 one-thread latency of the shared module and of ``supernet.extract`` (interleaved
rounds, medians of wall and thread CPU time), and memory (supernet, derived cache, private bytes; against
private copies and separately built models, plus the process RSS growth measured in fresh subprocesses).

    python bench/bench_shared.py [--tables T.yaml ...] [--rounds 400] [--min-seconds 4] [--images 1000] \
        [--batch1-images 1000]

Writes bench/results/shared_weights.json and bench/results/shared_weights.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from dynofa_ros.datasets import load_fmnist, preprocess  # noqa: E402
from dynofa_ros.engine.bn_stats import load_bn_state, load_bn_stats  # noqa: E402
from dynofa_ros.engine.pool import module_bytes  # noqa: E402
from dynofa_ros.engine.shared import SharedWeights, private_bytes, shared_storage_ptrs  # noqa: E402
from dynofa_ros.operating_points import load_table, resolve_bn_stats, resolve_checkpoint  # noqa: E402
from dynofa_ros.supernet.checkpoint import load_supernet  # noqa: E402

TABLES = [ROOT / "config/operating_points/fmnist28_ofa_mbv3.yaml",
          ROOT / "test/fixtures/legacy/fmnist_elastic_vit.yaml"]  # the ViT family: retired, under its target
OUT = ROOT / "bench/results"

RSS_SNIPPET = """
import ctypes, gc, sys, psutil, torch
sys.path.insert(0, {root!r})
torch.set_num_threads(1)
from bench.bench_shared import table_points
from dynofa_ros.engine.bn_stats import load_bn_state
from dynofa_ros.engine.shared import SharedWeights
sn, points = table_points({table!r})
proc = psutil.Process()
gc.collect()
try:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
except OSError:
    pass
rss0 = proc.memory_info().rss
shared = SharedWeights(sn) if {mode!r} == "shared" else None
kept = []
for sid, bn in points:
    if shared is not None:
        m = shared.module(sid, bn)
    else:
        m = sn.extract(sid)
        if bn is not None:
            load_bn_state(m, bn)
    with torch.inference_mode():
        m(sn.sample_input(sn.decode(sid)))
    kept.append(m)
gc.collect()
try:  # hand freed heap (extract's temporary copies) back to the OS so RSS shows what stays resident
    ctypes.CDLL("libc.so.6").malloc_trim(0)
except OSError:
    pass
print(proc.memory_info().rss - rss0)
"""


def table_points(table_path: str | Path) -> tuple[nn.Module, list[tuple[str, dict | None]]]:
    """The table's supernet (eval) and its (id, BN state) points."""
    table = load_table(table_path)
    sn, _ = load_supernet(resolve_checkpoint(table_path, table), family=table.supernet.family)
    points = []
    for p in (q for q in table.points if q.graph_variant == "eager"):
        bn_path = resolve_bn_stats(table_path, p)
        points.append((p.id, load_bn_stats(bn_path, p.id) if bn_path is not None else None))
    return sn.eval(), points


def max_diff(a: nn.Module, b: nn.Module, x: torch.Tensor, batch: int) -> float:
    """Largest |a(x) - b(x)| over ``x`` run in chunks of ``batch``."""
    worst = 0.0
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch):
            xb = x[i:i + batch]
            worst = max(worst, (a(xb) - b(xb)).abs().max().item())
    return worst


def interleaved_latency(shared: nn.Module, private: nn.Module, x: torch.Tensor, rounds: int,
                        min_seconds: float) -> dict:
    """Batch-1 latency of both modules, alternating call by call (order flipped every round) so drift in
    machine load hits both alike; at least ``rounds`` rounds and ``min_seconds`` of calls per module (fast
    points get more rounds); medians of wall and thread CPU time, in ms."""
    samples = {"shared": ([], []), "private": ([], [])}
    mods = {"shared": shared, "private": private}
    with torch.inference_mode():
        t0 = time.perf_counter()
        for _ in range(20):
            shared(x), private(x)
        per_round = (time.perf_counter() - t0) / 20
        rounds = max(rounds, int(2 * min_seconds / per_round))
        for r in range(rounds):
            for name in (("shared", "private") if r % 2 == 0 else ("private", "shared")):
                w0, c0 = time.perf_counter(), time.thread_time()
                mods[name](x)
                c1, w1 = time.thread_time(), time.perf_counter()
                samples[name][0].append((w1 - w0) * 1e3)
                samples[name][1].append((c1 - c0) * 1e3)
    out = {}
    for name, (wall, cpu) in samples.items():
        out[name] = {"wall_median_ms": statistics.median(wall), "cpu_median_ms": statistics.median(cpu),
                     "wall_p90_ms": statistics.quantiles(wall, n=10)[-1]}
    out["rounds"] = rounds
    out["ratio_wall"] = out["shared"]["wall_median_ms"] / out["private"]["wall_median_ms"]
    out["ratio_cpu"] = out["shared"]["cpu_median_ms"] / out["private"]["cpu_median_ms"]
    # paired: median of the per-round ratios (each pair ran back to back, under the same load)
    for key, i in (("paired_ratio_wall", 0), ("paired_ratio_cpu", 1)):
        out[key] = statistics.median(a / b for a, b in zip(samples["shared"][i], samples["private"][i]))
    return out


def bench_point(sw: SharedWeights, sid: str, bn: dict | None, images: torch.Tensor, args) -> tuple[dict, nn.Module]:
    """Equality, latency and bytes of one point; returns its record and the kept shared module."""
    sn = sw.supernet
    spec = sn.decode(sid)
    t0 = time.perf_counter()
    shared = sw.module(spec, bn)
    build_ms = (time.perf_counter() - t0) * 1e3
    private = sn.extract(spec)
    if bn is not None:
        load_bn_state(private, bn)
    ptrs = shared_storage_ptrs(sw)
    x = preprocess(images, spec.resolution)
    rec = {"id": sid, "resolution": spec.resolution, "build_ms": round(build_ms, 1),
           "max_abs_diff": max_diff(shared, private, x, 250),
           "max_abs_diff_batch1": max_diff(shared, private, x[:args.batch1_images], 1),
           "all_params_shared": all(p.untyped_storage().data_ptr() in ptrs for p in shared.parameters()),
           "private_bytes": private_bytes(shared, sw), "private_copy_bytes": module_bytes(private)}
    rec["latency"] = interleaved_latency(shared, private, x[:1].clone(), args.rounds, args.min_seconds)
    lat = rec["latency"]
    print(f"  {sid[:72]:72s} diff {rec['max_abs_diff']:.1e}/{rec['max_abs_diff_batch1']:.1e} "
          f"shared {lat['shared']['wall_median_ms']:.3f} private {lat['private']['wall_median_ms']:.3f} ms "
          f"ratio wall {lat['ratio_wall']:.3f} cpu {lat['ratio_cpu']:.3f} paired {lat['paired_ratio_wall']:.3f}/"
          f"{lat['paired_ratio_cpu']:.3f}", flush=True)
    return rec, shared


def memory_summary(sw: SharedWeights, records: list[dict]) -> dict:
    """Resident bytes of all the group's points at once, shared vs private copies vs separate models."""
    sn_bytes = module_bytes(sw.supernet)
    derived = sw.derived_bytes()
    priv = sum(r["private_bytes"] for r in records)
    copies = sum(r["private_copy_bytes"] for r in records)
    total = sn_bytes + derived + priv
    return {"points": len(records), "supernet_bytes": sn_bytes, "derived_bytes": derived,
            "private_bytes": priv, "shared_total_bytes": total, "shared_total_ratio": total / sn_bytes,
            "supernet_plus_private_copies_bytes": sn_bytes + copies,
            "supernet_plus_private_copies_ratio": (sn_bytes + copies) / sn_bytes,
            "separate_models_bytes": copies, "separate_models_ratio": copies / sn_bytes,
            "shared_vs_separate_models": total / copies}


def rss_delta(table: Path, mode: str) -> int | None:
    """Process RSS growth from building the table's points (``shared`` or ``private``), fresh process."""
    code = RSS_SNIPPET.format(root=str(ROOT), table=str(table), mode=mode)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    if res.returncode != 0:
        print(res.stderr[-2000:], file=sys.stderr)
        return None
    return int(res.stdout.strip().splitlines()[-1])


def bench_group(name: str, sn: nn.Module, points: list[tuple[str, dict | None]], images: torch.Tensor,
                args, table: Path | None) -> dict:
    print(f"{name}:", flush=True)
    sw = SharedWeights(sn)
    records, kept = [], []
    for sid, bn in points:
        rec, module = bench_point(sw, sid, bn, images, args)
        records.append(rec)
        kept.append(module)
    group = {"name": name, "points": records, "memory": memory_summary(sw, records)}
    if table is not None and not args.no_rss:
        group["rss_delta_bytes"] = {m: rss_delta(table, m) for m in ("shared", "private")}
    return group


def to_markdown(result: dict) -> str:
    lines = [f"# Weight-shared sub-networks (`dynofa_ros.engine.shared`)", "",
             f"torch {result['torch']}, {result['threads']} thread, batch 1, interleaved rounds (at least "
             f"{result['rounds']} and {result['min_seconds']:g} s per module); "
             f"load average {result['loadavg_start'][0]:.2f} at start, {result['loadavg_end'][0]:.2f} at end. "
             f"Max abs diff against `supernet.extract` (same BN state) on {result['images']} Fashion-MNIST "
             f"test images (batched / batch 1 on the first {result['batch1_images']}). Latency: medians of wall "
             f"and thread CPU time per call; ratio = shared / private medians, paired = median of per-round "
             f"ratios (the two calls of a round run back to back). Private KiB: what one more resident point "
             f"costs (BN running statistics).", ""]
    for g in result["groups"]:
        m = g["memory"]
        lines += [f"## {g['name']}", "",
                  "| point | max diff | max diff b1 | shared ms | private ms | ratio wall | ratio cpu "
                  "| paired wall | paired cpu | private KiB |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in g["points"]:
            lat = r["latency"]
            lines.append(f"| `{r['id']}` | {r['max_abs_diff']:.1e} | {r['max_abs_diff_batch1']:.1e} | "
                         f"{lat['shared']['wall_median_ms']:.3f} | {lat['private']['wall_median_ms']:.3f} | "
                         f"{lat['ratio_wall']:.3f} | {lat['ratio_cpu']:.3f} | {lat['paired_ratio_wall']:.3f} | "
                         f"{lat['paired_ratio_cpu']:.3f} | {r['private_bytes'] / 1024:.1f} |")
        lines += ["", f"Memory, {m['points']} points resident: supernet {m['supernet_bytes'] / 2**20:.2f} MiB, "
                  f"derived cache {m['derived_bytes'] / 2**20:.3f} MiB, private {m['private_bytes'] / 2**20:.3f} MiB: "
                  f"total **{m['shared_total_ratio']:.3f}x** the supernet; supernet + private copies "
                  f"{m['supernet_plus_private_copies_ratio']:.2f}x; {m['points']} separately built models "
                  f"{m['separate_models_ratio']:.2f}x (shared total = {m['shared_vs_separate_models']:.2f} of them)."]
        if g.get("rss_delta_bytes"):
            rss = g["rss_delta_bytes"]
            fmt = {k: (f"{v / 2**20:.1f} MiB" if v is not None else "n/a") for k, v in rss.items()}
            lines.append(f"Process RSS growth building them (fresh process): shared {fmt['shared']}, "
                         f"private copies {fmt['private']}.")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=400)
    ap.add_argument("--min-seconds", type=float, default=4.0,
                    help="at least this many seconds of timed calls per module and point")
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--batch1-images", type=int, default=1000)
    ap.add_argument("--no-rss", action="store_true", help="skip the subprocess RSS measurement")
    ap.add_argument("--tables", type=Path, nargs="+", default=TABLES, help="operating-point tables to measure")
    ap.add_argument("--out", type=Path, default=OUT / "shared_weights")
    args = ap.parse_args()
    torch.set_num_threads(1)
    result = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
              "threads": torch.get_num_threads(), "rounds": args.rounds, "min_seconds": args.min_seconds,
              "images": args.images,
              "batch1_images": args.batch1_images, "loadavg_start": list(os.getloadavg()), "groups": []}
    images = load_fmnist("test")[0][:args.images]
    for table in args.tables:
        sn, points = table_points(table)
        shown = table.resolve().relative_to(ROOT) if table.resolve().is_relative_to(ROOT) else table
        name = f"{sn.family} table ({shown})"
        result["groups"].append(bench_group(name, sn, points, images, args, table))
    result["loadavg_end"] = list(os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(to_markdown(result))
    print(f"wrote {args.out.with_suffix('.json')} and .md")


if __name__ == "__main__":
    main()
