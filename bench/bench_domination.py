#!/usr/bin/env python3
"""Does a kept point beat the static model a user would pick?  And what does memory buy?

One run, on one machine, interleaved (the machine is shared and noisy):

- **Domination.** Every form the table's pool serves (shared eager and each private variant) and each
  static baseline (eager as a user runs it, and frozen: a user could trace it too) are timed in the same
  rounds, batch 1, one thread; accuracy on the 10k Fashion-MNIST test set.  For each baseline B the
  question is the issue's: is there a kept point, in its fastest form, with accuracy >= acc(B) and latency
  <= 1.1 x latency(B)?
- **Memory.** The pool's resident bytes for the shared forms of all K kept sub-networks against K
  separately built static models of the same architectures, and the latency a point gets (the fastest
  resident form, averaged over the kept sub-networks) as the resident set grows from "shared only" to
  "every variant".

    python bench/bench_domination.py --table config/operating_points/fmnist28_ofa_mbv3.yaml \
        --baseline plain_cnn=out/baselines/plain_cnn.pt --baseline mobilenet_v3_small=out/baselines/mobilenet_v3_small.pt

Baseline weights come from `dynofa baselines` (scripts/train_baselines.py).  Writes
bench/results/domination.{json,md}, and with ``--plot PNG`` the front of each form beside the baselines.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from dynofa_ros.datasets import load_fmnist  # noqa: E402
from dynofa_ros.engine.evaluate import evaluate_accuracy  # noqa: E402
from dynofa_ros.engine.graph_variants import make_variant  # noqa: E402
from dynofa_ros.engine.pool import SubnetPool, module_bytes  # noqa: E402
from dynofa_ros.offline.baselines_train import interleaved_latency, load_weights  # noqa: E402
from dynofa_ros.offline.plot import plot_forms  # noqa: E402
from dynofa_ros.operating_points import load_table, split_point_key  # noqa: E402

SLACK = 1.1  # the latency allowance


def pool_forms(table_path: str) -> tuple[SubnetPool, dict[str, tuple[nn.Module, int]]]:
    """The table's pool with every private form built, and each form's module."""
    pool = SubnetPool.from_table(table_path, device="cpu")
    assert pool.wait_ready(600), "private forms did not build"
    failed = {k: r["error"] for k, r in pool.memory_report().items() if r["error"]}
    if failed:
        print(f"forms that failed to build (served by their shared form): {failed}", flush=True)
    return pool, {k: (pool.module(k), pool.input_resolution(k)) for k in pool.subnet_ids() if k not in failed}


def baseline_forms(specs: list[str]) -> tuple[dict[str, tuple[nn.Module, int]], dict[str, dict]]:
    """Each baseline eager (as trained) and frozen (traced + frozen, the user's own fastest easy form)."""
    forms, meta = {}, {}
    for spec in specs:
        name, path = spec.split("=", 1)
        model, info = load_weights(Path(path), name)
        res = 28
        forms[f"baseline:{name}"] = (model, res)
        forms[f"baseline:{name}@frozen"] = (make_variant(model, "frozen", example=torch.zeros(1, 1, res, res)), res)
        meta[name] = {"path": path, "trained": {k: info.get(k) for k in ("cpu_seconds", "epochs") if k in info}}
    return forms, meta


def accuracies(forms: dict[str, tuple[nn.Module, int]], table, test_x, test_y) -> dict[str, float]:
    """Top-1 on the test set: baselines and int8 measured here; other forms equal eager, so the table's."""
    out = {}
    for name, (module, res) in forms.items():
        if name.startswith("baseline:") or name.endswith("@int8"):
            out[name] = evaluate_accuracy(module, test_x, test_y, res)
        else:
            out[name] = table.point(name).accuracy
    return out


def domination(rows: dict[str, dict], table_ids: list[str], clock: str) -> list[dict]:
    """For each baseline form: the fastest kept point at least as accurate, and whether it is in time."""
    verdicts = []
    for b, brow in rows.items():
        if not b.startswith("baseline:"):
            continue
        ok = [k for k in table_ids if rows[k]["accuracy"] >= brow["accuracy"]]
        best = min(ok, key=lambda k: rows[k][f"{clock}_median_ms"]) if ok else None
        ratio = rows[best][f"{clock}_median_ms"] / brow[f"{clock}_median_ms"] if best else None
        verdicts.append({"baseline": b, "accuracy": brow["accuracy"], "latency_ms": brow[f"{clock}_median_ms"],
                         "best_point": best, "point_accuracy": rows[best]["accuracy"] if best else None,
                         "point_latency_ms": rows[best][f"{clock}_median_ms"] if best else None,
                         "latency_ratio": round(ratio, 3) if ratio else None,
                         "dominated": bool(ratio is not None and ratio <= SLACK)})
    return verdicts


def memory_curve(pool: SubnetPool, rows: dict[str, dict], clock: str) -> list[dict]:
    """Resident bytes and mean latency of the fastest resident form per sub-network, per resident set."""
    private = [k for k in pool.subnet_ids() if split_point_key(k)[1] != "eager" and k in rows]
    variants = sorted({split_point_key(k)[1] for k in private})
    levels = [("shared only", [])] + [(f"+ {v}", [k for k in private if k.endswith("@" + v)]) for v in variants]
    if len(variants) > 1:
        levels.append(("every variant", private))
    subnets = sorted({split_point_key(k)[0] for k in rows if not k.startswith("baseline:")})
    curve = []
    for label, keep in levels:
        pool.set_materialised(keep)
        pool.wait_ready(600)
        resident = set(keep)
        lat = [min(rows[k][f"{clock}_median_ms"] for k in rows
                   if split_point_key(k)[0] == s and (split_point_key(k)[1] == "eager" or k in resident))
               for s in subnets]
        curve.append({"resident": label, "private_forms": len(keep), "resident_mb": round(pool.resident_bytes() / 2**20, 3),
                      "mean_latency_ms": round(statistics.mean(lat), 4)})
    return curve


def separate_models_mb(pool: SubnetPool) -> float:
    """K standalone static models of the kept architectures (what K separately trained models take)."""
    subnets = sorted({split_point_key(k)[0] for k in pool.subnet_ids()})
    return sum(module_bytes(pool.supernet.extract(s)) for s in subnets) / 2**20


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    table = load_table(args.table)
    test_x, test_y = load_fmnist("test")
    pool, forms = pool_forms(args.table)
    base, base_meta = baseline_forms(args.baseline)
    forms.update(base)
    acc = accuracies(forms, table, test_x, test_y)
    times = interleaved_latency(forms, rounds=args.rounds, runs=args.runs)
    rows = {k: {"accuracy": round(acc[k], 4), **times[k]} for k in forms}
    table_ids = [k for k in forms if not k.startswith("baseline:")]
    pool.set_materialised([])
    pool.wait_ready(60)
    shared_mb = pool.resident_bytes() / 2**20
    separate = separate_models_mb(pool)
    return {"table": args.table, "clock": args.clock, "rounds": args.rounds, "runs_per_round": args.runs,
            "torch": torch.__version__, "load_average": os.getloadavg(), "baselines": base_meta,
            "forms": rows, "domination": domination(rows, table_ids, args.clock),
            "memory": {"kept_subnetworks": len({split_point_key(k)[0] for k in table_ids}),
                       "shared_resident_mb": round(shared_mb, 3), "separate_models_mb": round(separate, 3),
                       "saving": round(1 - shared_mb / separate, 3), "curve": memory_curve(pool, rows, args.clock)}}


def write_md(result: dict, path: Path) -> None:
    c = result["clock"]
    lines = ["# Kept points against the static baselines, and memory as a knob", "",
             f"`python bench/bench_domination.py --table {result['table']}`; batch 1, one thread, {result['rounds']} "
             f"interleaved rounds x {result['runs_per_round']} runs; latency = median {c} ms (thread CPU time "
             f"when `cpu`); load average {', '.join(f'{v:.1f}' for v in result['load_average'])}; torch {result['torch']}.",
             "", "## Domination (a kept point, fastest form, accuracy >= baseline, latency <= 1.1x)", "",
             "| baseline | top-1 | ms | best kept point | top-1 | ms | ratio | dominated |", "|---|---|---|---|---|---|---|---|"]
    for d in result["domination"]:
        lines.append(f"| {d['baseline']} | {d['accuracy']:.2%} | {d['latency_ms']:.3f} | `{d['best_point'] or 'none'}` | "
                     f"{(d['point_accuracy'] or 0):.2%} | {(d['point_latency_ms'] or 0):.3f} | {d['latency_ratio']} | "
                     f"{'yes' if d['dominated'] else '**no**'} |")
    lines += ["", "## Every form", "", "| form | top-1 | median ms | p95 ms |", "|---|---|---|---|"]
    for k, r in sorted(result["forms"].items(), key=lambda kv: kv[1][f"{c}_median_ms"]):
        lines.append(f"| `{k}` | {r['accuracy']:.2%} | {r[f'{c}_median_ms']:.3f} | {r[f'{c}_p95_ms']:.3f} |")
    m = result["memory"]
    lines += ["", "## Memory", "",
              f"Shared forms of all {m['kept_subnetworks']} kept sub-networks resident: {m['shared_resident_mb']:.2f} MiB "
              f"(supernet + derived kernels + BN statistics) against {m['separate_models_mb']:.2f} MiB for "
              f"{m['kept_subnetworks']} separate static models of the same architectures: **{m['saving']:.0%} less**.", "",
              "| resident set | private forms | resident MiB | mean latency of the fastest resident form (ms) |",
              "|---|---|---|---|"]
    lines += [f"| {r['resident']} | {r['private_forms']} | {r['resident_mb']:.2f} | {r['mean_latency_ms']:.3f} |" for r in m["curve"]]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default=str(ROOT / "config" / "operating_points" / "fmnist28_ofa_mbv3.yaml"))
    ap.add_argument("--baseline", action="append", default=[], help="NAME=weights.pt (plain_cnn, mobilenet_v3_small)")
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "domination"))
    ap.add_argument("--plot", help="also write a PNG of every form and baseline (accuracy vs latency)")
    args = ap.parse_args(argv)
    result = run(args)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    write_md(result, out.with_suffix(".md"))
    if args.plot:
        print(f"wrote {plot_forms(result['forms'], args.plot, clock=args.clock)}")
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
