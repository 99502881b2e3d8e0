#!/usr/bin/env python3
"""Graph variants per sub-network: eager vs fused vs frozen vs int8 on this CPU.

For each eager point of an MBv3 table (default: the shipped 28-px table):
latency at batch 1 on one thread in interleaved rounds (each call timed on the thread's CPU clock and on
the wall clock at once), top-1 on the 10k test set, weight bytes; int8 calibrated on a fixed subset of
train images at the point's resolution (as `dynofa_ros.offline.variants` does).

    python3 bench/bench_variants.py [--table T.yaml] [--rounds 10] [--runs 20] [--calib-images 1024] [--aoti]

Writes bench/results/variants.json and bench/results/variants.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from dynofa_ros.engine.graph_variants import make_variant, quantized_engine, weight_bytes  # noqa: E402
from dynofa_ros.engine.timing import percentile  # noqa: E402
from dynofa_ros.offline.variants import fmnist_data, materialise, top1  # noqa: E402
from dynofa_ros.operating_points import load_table, resolve_checkpoint  # noqa: E402
from dynofa_ros.supernet.checkpoint import load_supernet  # noqa: E402

TABLE = ROOT / "config" / "operating_points" / "fmnist28_ofa_mbv3.yaml"
FORMS = ("eager", "fused", "frozen", "int8")
RESULTS = ROOT / "bench" / "results"


def stats(ms: list[float]) -> dict:
    return {"median": round(statistics.median(ms), 4), "p95": round(percentile(ms, 95), 4)}


@torch.inference_mode()
def interleaved(modules: dict, x: torch.Tensor, rounds: int, runs: int, warmup: int = 10) -> dict:
    """Per form: thread-CPU and wall ms of the same calls, in rounds alternating between the forms."""
    cpu: dict[str, list[float]] = {k: [] for k in modules}
    wall: dict[str, list[float]] = {k: [] for k in modules}
    for m in modules.values():
        for _ in range(warmup):
            m(x)
    for _ in range(rounds):
        for name, m in modules.items():
            for _ in range(runs):
                c0, w0 = time.thread_time(), time.perf_counter()
                m(x)
                w1, c1 = time.perf_counter(), time.thread_time()
                cpu[name].append((c1 - c0) * 1e3)
                wall[name].append((w1 - w0) * 1e3)
    return {k: {"cpu_ms": stats(cpu[k]), "wall_ms": stats(wall[k])} for k in modules}


def bench_point(label: str, eager: torch.nn.Module, resolution: int, data, args) -> dict:
    """Build the forms, time them interleaved, score them on the test set."""
    x = data.batches("eval", resolution)[0][:1].contiguous()
    forms = {"eager": eager}
    build_s = {}
    for v in FORMS[1:]:
        t0 = time.perf_counter()
        forms[v] = make_variant(eager, v, example=x, calibration=data.batches("calib", resolution))
        build_s[v] = round(time.perf_counter() - t0, 2)
    lat = interleaved(forms, x, args.rounds, args.runs)
    out = {"point": label, "resolution": resolution, "forms": {}}
    for v, m in forms.items():
        out["forms"][v] = {**lat[v], "accuracy": top1(m, data, resolution), "weight_bytes": weight_bytes(m),
                           "build_s": build_s.get(v, 0.0)}
    e = out["forms"]["eager"]
    for v in FORMS:
        f = out["forms"][v]
        f["ratio_cpu"] = round(f["cpu_ms"]["median"] / e["cpu_ms"]["median"], 3)
        f["ratio_wall"] = round(f["wall_ms"]["median"] / e["wall_ms"]["median"], 3)
    print(f"{label}: " + ", ".join(f"{v} {out['forms'][v]['ratio_cpu']:.2f}x acc {out['forms'][v]['accuracy']:.4f}"
                                   for v in FORMS), flush=True)
    return out


def aoti_smallest(eager: torch.nn.Module, x: torch.Tensor, rounds: int, runs: int) -> dict:
    """The torch.export + AOTInductor alternative to `frozen`, timed against frozen (compile cost too)."""
    from dynofa_ros.engine.graph_variants import own_inference_copy

    own = own_inference_copy(eager)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        pkg = torch._inductor.aoti_compile_and_package(torch.export.export(own, (x,)),
                                                       package_path=str(Path(tmp) / "smallest.pt2"))
        aoti = torch._inductor.aoti_load_package(pkg)
        compile_s = time.perf_counter() - t0
    with torch.inference_mode():
        diff = (aoti(x) - eager(x)).abs().max().item()
    lat = interleaved({"eager": eager, "frozen": make_variant(eager, "frozen", example=x), "aoti": aoti},
                      x, rounds, runs)
    return {"compile_s": round(compile_s, 1), "max_abs_diff": diff, "latency": lat}


def table_points(data, args) -> list[dict]:
    table = load_table(args.table)
    supernet, _ = load_supernet(resolve_checkpoint(args.table, table), family=table.supernet.family)
    out, smallest = [], None
    for p in [q for q in table.points if q.graph_variant == "eager"][:args.points]:   # variant rows: built here
        eager = materialise(supernet, args.table, p)
        out.append(bench_point(p.id, eager, p.resolution, data, args))
        out[-1]["table_accuracy"] = p.accuracy
        smallest = smallest or (eager, p.resolution)
    if args.aoti:
        eager, r = smallest
        out[0]["aoti"] = aoti_smallest(eager, data.batches("eval", r)[0][:1].contiguous(), args.rounds, args.runs)
    return out


def fmt(f: dict, clock: str) -> str:
    return f"{f[clock]['median']:.3f} / {f[clock]['p95']:.3f} ({f['ratio_' + clock[:-3]]:.2f}x)"


def write_md(result: dict, path: Path) -> None:
    m = result["meta"]
    lines = [f"# Graph variants (cpu, 1 thread, {m['date']})", "",
             f"Command: `{m['command']}`. Table: `{m['table']}`. Machine: {m['machine']}, torch {m['torch']}, "
             "quantised engine "
             f"`{m['quantized_engine']}`. Load average at start {m['loadavg_start']}, end {m['loadavg_end']} "
             f"on {m['cpus']} CPUs (other jobs, e.g. training, may share them). Latency: batch 1, {m['rounds']} "
             f"interleaved rounds x "
             f"{m['runs']} calls per form; median / p95 ms (ratio of medians to eager). Thread-CPU time "
             "is what an idle core would give; wall includes preemption. Accuracy: top-1 on the 10k test set; "
             f"int8 calibrated on {m['calib_images']} train images (seed {m['seed']}).", ""]
    for clock in ("cpu_ms", "wall_ms"):
        lines += [f"## Latency, {'thread CPU time' if clock == 'cpu_ms' else 'wall clock'}", "",
                  "| point | eager | fused | frozen | int8 |", "|---|---|---|---|---|"]
        for r in result["points"]:
            lines.append(f"| `{r['point']}` | " + " | ".join(fmt(r["forms"][v], clock) for v in FORMS) + " |")
        lines.append("")
    lines += ["## Accuracy and weights", "", "| point | top-1 eager | fused | frozen | int8 (loss pp) | "
              "weight KiB eager / fused / frozen / int8 | build s frozen / int8 |", "|---|---|---|---|---|---|---|"]
    for r in result["points"]:
        f = r["forms"]
        loss = 100 * (f["eager"]["accuracy"] - f["int8"]["accuracy"])
        kib = " / ".join(f"{f[v]['weight_bytes'] / 1024:.0f}" for v in FORMS)
        lines.append(f"| `{r['point']}` | {f['eager']['accuracy']:.4f} | {f['fused']['accuracy']:.4f} | "
                     f"{f['frozen']['accuracy']:.4f} | {f['int8']['accuracy']:.4f} ({loss:+.2f}) | {kib} | "
                     f"{f['frozen']['build_s']} / {f['int8']['build_s']} |")
    a = result["points"][0].get("aoti")
    if a:
        lat = a["latency"]
        lines += ["", f"AOTInductor (torch.export + aoti_compile_and_package) on the smallest point: compile "
                  f"{a['compile_s']} s, max |diff| {a['max_abs_diff']:.1e}; CPU-time median eager "
                  f"{lat['eager']['cpu_ms']['median']:.3f}, frozen {lat['frozen']['cpu_ms']['median']:.3f}, "
                  f"aoti {lat['aoti']['cpu_ms']['median']:.3f} ms."]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", type=Path, default=TABLE, help="operating-point table whose eager points are timed")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--calib-images", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--points", type=int, default=None, help="first N table points only (smoke run)")
    ap.add_argument("--aoti", action="store_true", help="also time AOTInductor on the smallest point")
    args = ap.parse_args()
    torch.set_num_threads(1)
    meta = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python3 bench/bench_variants.py " + " ".join(sys.argv[1:]), "torch": torch.__version__,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "cpus": os.cpu_count(),
            "quantized_engine": quantized_engine(), "loadavg_start": [round(v, 2) for v in os.getloadavg()],
            "table": str(args.table.resolve().relative_to(ROOT) if args.table.resolve().is_relative_to(ROOT)
                         else args.table),
            "rounds": args.rounds, "runs": args.runs, "calib_images": args.calib_images, "seed": args.seed,
            "threads": 1}
    data = fmnist_data(args.calib_images, args.seed)
    points = table_points(data, args)
    meta["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    result = {"meta": meta, "points": points}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "variants.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    write_md(result, RESULTS / "variants.md")
    print(f"wrote {RESULTS / 'variants.json'} and variants.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
