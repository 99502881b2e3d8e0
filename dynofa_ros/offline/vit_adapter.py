"""The offline search over the elastic ViT supernet (the MBv3 one is `pipeline.MBv3Adapter`).

A ViT sub-network's cost is exactly additive: a fixed part that depends on the resolution and the
embedding width (conv stem, patch embedding, final norm, pooling, head) plus one encoder layer per depth
step, whose cost depends on (tokens, width, heads, MLP ratio) only.  So the per-layer LUT has 9 fixed and
81 layer entries for the 28-px space, the search prices a candidate with a few lookups, and the space's
true cheapest and dearest sub-networks follow exactly.  Keys live in the same `<R>_lookup_table.yaml`
files as the MBv3 LUT (`vit_fixed-w96`, `vit_layer-w96-h3-m4`).
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dynofa_ros.offline.lut import LatencyLUT, ResolutionLUT
from dynofa_ros.offline.profiler import device_key, measure_latency
from dynofa_ros.offline.search import CostModel, SearchSpace
from dynofa_ros.supernet.elastic_vit import ElasticViTSupernet, ViTSpec


def fixed_key(embed: int) -> str:
    return f"vit_fixed-w{embed}"


def layer_key(embed: int, heads: int, mlp_ratio: int) -> str:
    return f"vit_layer-w{embed}-h{heads}-m{mlp_ratio}"


@dataclass
class AdditiveViTCost:
    """cost(spec) = fixed[r, w] + the sum of its layers' [r, w, h, m] entries (ms or MFLOPs)."""
    fixed: dict[tuple[int, int], float]
    layer: dict[tuple[int, int, int, int], float]
    depths: tuple[int, ...]

    def __call__(self, a: ViTSpec) -> float:
        r, w = a.resolution, a.embed
        return self.fixed[(r, w)] + sum(self.layer[(r, w, h, m)] for h, m in a.layers)

    def extreme(self, cheapest: bool = True) -> tuple[ViTSpec, float]:
        """The exact cheapest (or dearest) sub-network: per (r, w), the best layer at the best depth."""
        pick = min if cheapest else max
        options = []
        for (r, w), base in self.fixed.items():
            hm = pick(((h, m) for (r2, w2, h, m) in self.layer if (r2, w2) == (r, w)),
                      key=lambda x: self.layer[(r, w, *x)])
            d = pick(self.depths, key=lambda n: n * self.layer[(r, w, *hm)])
            spec = ViTSpec(resolution=r, embed=w, layers=(hm,) * d)
            options.append((spec, self(spec)))
        return pick(options, key=lambda o: o[1])


class ViTAdapter:
    """Bridges the elastic ViT supernet and the search: the architecture is the `ViTSpec` itself."""

    def __init__(self, supernet: ElasticViTSupernet) -> None:
        sp = supernet.space()
        self.supernet = supernet
        self.ws, self.ds, self.hs, self.ms, self.rs = (sp["embed"], sp["depth"], sp["heads"], sp["mlp_ratio"],
                                                       sp["resolution"])
        c = supernet.config()
        self.patch, self.head_dim, self.stem_channels = c["patch"], c["head_dim"], c.get("stem_channels", 0)

    # --- the space -------------------------------------------------------------------------------
    def space(self) -> SearchSpace[ViTSpec]:
        """Per-gene mutation and uniform crossover over (resolution, width, depth, per-layer heads/MLP)."""
        sn = self.supernet

        def layer(rng: random.Random) -> tuple[int, int]:
            return rng.choice(self.hs), rng.choice(self.ms)

        def mutate(a: ViTSpec, prob: float, rng: random.Random) -> ViTSpec:
            pick = lambda v, choices: rng.choice(choices) if rng.random() < prob else v  # noqa: E731
            depth = pick(len(a.layers), self.ds)
            old = list(a.layers) + [layer(rng) for _ in range(depth - len(a.layers))]
            layers = tuple((pick(h, self.hs), pick(m, self.ms)) for h, m in old[:depth])
            return ViTSpec(pick(a.resolution, self.rs), pick(a.embed, self.ws), layers)

        def crossover(a: ViTSpec, b: ViTSpec, rng: random.Random) -> ViTSpec:
            depth = rng.choice((len(a.layers), len(b.layers)))
            longer = a.layers if len(a.layers) >= len(b.layers) else b.layers
            layers = tuple(rng.choice((a.layers[i], b.layers[i])) if i < min(len(a.layers), len(b.layers))
                           else longer[i] for i in range(depth))
            return ViTSpec(rng.choice((a.resolution, b.resolution)), rng.choice((a.embed, b.embed)), layers)

        return SearchSpace(sample=sn.random_spec, mutate=mutate, crossover=crossover, smallest=sn.smallest)

    def to_spec(self, a: ViTSpec) -> ViTSpec:
        return a

    def from_spec(self, spec: ViTSpec | str) -> ViTSpec:
        return self.supernet.as_spec(spec)

    def encode(self, a: ViTSpec) -> list[float]:
        """Predictor features: one-hot resolution and width, then per layer slot one-hot heads and MLP
        ratio (all zero past the depth)."""
        x = [float(a.resolution == r) for r in self.rs] + [float(a.embed == w) for w in self.ws]
        for i in range(max(self.ds)):
            h, m = a.layers[i] if i < len(a.layers) else (None, None)
            x += [float(h == v) for v in self.hs] + [float(m == v) for v in self.ms]
        return x

    def corners(self) -> list[ViTSpec]:
        """Each resolution x shallowest/deepest x narrowest/widest x smallest/largest uniform layer."""
        layer_ends = ((min(self.hs), min(self.ms)), (max(self.hs), max(self.ms)))
        return [ViTSpec(r, w, (hm,) * d) for r in self.rs for d in (min(self.ds), max(self.ds))
                for w in (min(self.ws), max(self.ws)) for hm in layer_ends]

    def widest_twin(self, a: ViTSpec) -> ViTSpec:
        raise ValueError("the elastic ViT is searched in eager form only (no int8 twin)")

    # --- costs -----------------------------------------------------------------------------------
    def _tokens(self, r: int) -> int:
        return (r // self.patch) ** 2

    def _fixed_macs(self, r: int, w: int) -> int:
        cin, c, ncls = self.supernet.in_channels, self.stem_channels, self.supernet.config()["n_classes"]
        if c:
            stem = r * r * c * 9 * cin + (r // 2) ** 2 * 2 * c * 9 * c + self._tokens(r) * w * 9 * 2 * c
        else:
            stem = self._tokens(r) * w * self.patch ** 2 * cin
        return stem + w * ncls

    def _layer_macs(self, r: int, w: int, h: int, m: int) -> int:
        t, inner = self._tokens(r), h * self.head_dim
        return t * (3 * inner * w + inner * w + 2 * m * w * w) + 2 * t * t * inner

    def mflops(self, a: ViTSpec) -> float:
        return self._macs_model()(a) / 1e6

    def _macs_model(self) -> AdditiveViTCost:
        fixed = {(r, w): float(self._fixed_macs(r, w)) for r in self.rs for w in self.ws}
        layer = {(r, w, h, m): float(self._layer_macs(r, w, h, m))
                 for r, w, h, m in itertools.product(self.rs, self.ws, self.hs, self.ms)}
        return AdditiveViTCost(fixed, layer, tuple(self.ds))

    def _latency_model(self, lut: ResolutionLUT) -> AdditiveViTCost:
        fixed = {(r, w): lut.tables[r].query(fixed_key(w)) for r in self.rs for w in self.ws}
        layer = {(r, w, h, m): lut.tables[r].query(layer_key(w, h, m))
                 for r, w, h, m in itertools.product(self.rs, self.ws, self.hs, self.ms)}
        return AdditiveViTCost(fixed, layer, tuple(self.ds))

    def cost_model(self, metric: str, lut: ResolutionLUT | None) -> CostModel:
        """The constraint metric ('latency' via the LUT, in ms, or 'mflops') with its exact range."""
        if metric == "latency":
            if lut is None:
                raise ValueError("latency-constrained search needs a latency LUT (--lut)")
            cost = self._latency_model(lut)
        elif metric == "mflops":
            cost = self._macs_model()
            cost = AdditiveViTCost({k: v / 1e6 for k, v in cost.fixed.items()},
                                   {k: v / 1e6 for k, v in cost.layer.items()}, cost.depths)
        else:
            raise ValueError(f"unknown constraint metric {metric!r}; use 'latency' or 'mflops'")
        (cheapest, low), (_, high) = cost.extreme(True), cost.extreme(False)
        return CostModel(cost, cheapest, low, high, True)

    def predicted_ms(self, lut: ResolutionLUT, a: ViTSpec) -> float:
        return self._latency_model(lut)(a)

    def build_lut(self, folder: str | Path, *, device: str = "cpu", threads: int | None = 1, warmup: int = 5,
                  runs: int = 30, stat: str = "median", clock: str = "wall", form: str = "eager",
                  show_progress: bool = True) -> ResolutionLUT:
        """Time the fixed part per (resolution, width) and one encoder layer per (resolution, width,
        heads, MLP ratio) on this device; resumable like the MBv3 LUT (existing entries are kept)."""
        from tqdm import tqdm

        if form != "eager":
            raise ValueError(f"the elastic ViT LUT is timed in eager form only, not {form!r}")
        folder = Path(folder)
        tables = {r: LatencyLUT.load(p) if (p := folder / f"{r}_lookup_table.yaml").exists()
                  else LatencyLUT(source=str(p)) for r in self.rs}
        jobs = [(r, w, None) for r in self.rs for w in self.ws]
        jobs += [(r, w, hm) for r, w in itertools.product(self.rs, self.ws)
                 for hm in itertools.product(self.hs, self.ms)]
        for r, w, hm in tqdm(jobs, desc=f"ViT LUT {device_key(device, threads)}", unit="entry",
                             disable=not show_progress):
            key = fixed_key(w) if hm is None else layer_key(w, *hm)
            if key in tables[r]:
                continue
            module, x = self._timed_part(r, w, hm)
            t = measure_latency(module.to(device), x.to(device), warmup=warmup, runs=runs, threads=threads,
                                clock=clock)
            tables[r].add(key, getattr(t, f"{stat}_ms"), t.std_ms, t.runs)
            tables[r].save(folder / f"{r}_lookup_table.yaml")
        return ResolutionLUT(tables, self.supernet.in_channels)

    def _timed_part(self, r: int, w: int, hm: tuple[int, int] | None) -> tuple[nn.Module, torch.Tensor]:
        """(module, input) of the fixed part (the network with no encoder layer) or of one layer."""
        layer = hm or (min(self.hs), min(self.ms))
        sub = self.supernet.extract(ViTSpec(r, w, (layer,)))
        if hm is not None:
            return sub.layers[0], torch.randn(1, self._tokens(r), w)
        sub.layers = nn.ModuleList()
        return sub, torch.randn(1, self.supernet.in_channels, r, r)

