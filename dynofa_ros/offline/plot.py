"""PNG of an operating-point front: accuracy vs latency, kept points labelled, candidates and baselines."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from dynofa_ros.offline.search import pareto_front
from dynofa_ros.operating_points import OperatingPointTable, split_point_key


@dataclass(frozen=True)
class PlotPoint:
    label: str
    latency_ms: float
    accuracy: float


def _save(fig, out: str | Path) -> Path:
    """Write ``fig`` to ``out`` (folders created) and release it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def plot_front(table: OperatingPointTable, device: str, out: str | Path, *, title: str | None = None,
               candidates: Sequence[PlotPoint] = (), baselines: Sequence[PlotPoint] = (),
               baseline_note: str = "") -> Path:
    """Kept points labelled (L0 = fastest), re-measured but dominated candidates in grey,
    baselines as separate markers. Accuracy in percent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = table.by_latency(device)
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=120)
    if candidates:
        ax.scatter([c.latency_ms for c in candidates], [100 * c.accuracy for c in candidates], s=14,
                   color="0.7", label="re-measured candidates", zorder=1)
    xs = [p.latency(device) for p in pts]
    ys = [100 * p.accuracy for p in pts]
    # the line joins the points non-dominated in this plot's two dimensions; older tables also kept points
    # for their smaller memory (and variant rows share the id's sub-network), those are drawn open
    front2d = pareto_front(list(range(len(pts))), lambda i: (xs[i], ys[i]), senses=("min", "max"))
    mem_only = [i for i in range(len(pts)) if i not in front2d]
    ax.plot([xs[i] for i in front2d], [ys[i] for i in front2d], "-o", color="tab:blue",
            label=f"kept sub-networks ({len(pts)})", zorder=3)
    if mem_only:
        ax.scatter([xs[i] for i in mem_only], [ys[i] for i in mem_only], s=40, facecolors="none",
                   edgecolors="tab:blue", zorder=3, label="kept, off this plot's front")
    for i, (p, x, y) in enumerate(zip(pts, xs, ys)):
        ax.annotate(f"L{i} r{p.resolution}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    markers = "s^DvP*"
    for i, b in enumerate(baselines):
        ax.scatter([b.latency_ms], [100 * b.accuracy], marker=markers[i % len(markers)], s=50, zorder=4,
                   label=f"{b.label}{baseline_note}")
    ax.set_xlabel(f"latency on {device} (median, ms)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title or f"{table.supernet.family} operating points on {device}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, out)


def plot_forms(rows: dict[str, dict], out: str | Path, *, clock: str = "cpu", title: str | None = None) -> Path:
    """Accuracy vs latency of every served form of a table's points, one series per graph form with its
    own (latency, accuracy) front joined, and the static baselines (``baseline:<name>[@form]`` rows) as
    markers: the user's question, is any form of any point better than the model I would otherwise pick.
    ``rows`` maps a pool key or baseline key to ``accuracy`` and ``<clock>_median_ms`` (bench_domination)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat = f"{clock}_median_ms"
    forms: dict[str, list[tuple[float, float]]] = {}
    baselines = []
    for key, r in rows.items():
        if key.startswith("baseline:"):
            baselines.append((key.removeprefix("baseline:"), r[lat], 100 * r["accuracy"]))
        else:
            forms.setdefault(split_point_key(key)[1], []).append((r[lat], 100 * r["accuracy"]))
    fig, ax = plt.subplots(figsize=(9.5, 5), dpi=120)
    for form, pts in sorted(forms.items()):
        front = sorted(pareto_front(pts, lambda p: p, senses=("min", "max")))
        line, = ax.plot([p[0] for p in front], [p[1] for p in front], "-o", zorder=3,
                        label=f"{form} ({len(pts)} points, front joined)")
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, color=line.get_color(), alpha=0.5, zorder=2)
    markers = "s^DvP*X"
    for i, (name, x, y) in enumerate(sorted(baselines)):
        ax.scatter([x], [y], marker=markers[i % len(markers)], s=60, color="black", zorder=4,
                   label=f"static {name}")
    ax.set_xscale("log")
    from matplotlib.ticker import FormatStrFormatter
    for axis_format in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):
        axis_format(FormatStrFormatter("%g"))
    ax.set_xlabel(f"latency, batch 1, one thread (median {clock} ms, log scale)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title or "operating points in every form vs static baselines")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, out)
