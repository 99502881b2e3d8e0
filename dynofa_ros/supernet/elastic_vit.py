"""Elastic Vision Transformer supernet: elastic depth, heads, MLP ratio and embedding width.

Weights are shared by slicing (HAT/AutoFormer style): a sub-network with embedding width ``w``, ``h``
heads and MLP ratio ``m`` uses the first ``w`` channels, the first ``h`` heads (fixed head dim) and the
first ``m*w`` hidden units of the max-size tensors; depth keeps the first layers.  There is no BatchNorm
(LayerNorm only), so per-sub-network BN statistics are empty for this family.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import SpecError, SubnetSpec, Supernet, check_choice, parse_int


@dataclass(frozen=True)
class ViTSpec(SubnetSpec):
    """Embedding width plus, per active layer, (heads, MLP ratio); depth = number of layers."""

    embed: int = 0
    layers: tuple[tuple[int, int], ...] = ()

    family = "vit"

    def encode(self) -> str:
        body = ".".join(f"h{h}m{m}" for h, m in self.layers)
        return f"vit-r{self.resolution}-w{self.embed}-{body}"

    def describe(self) -> str:
        return (f"r{self.resolution} w{self.embed} d{len(self.layers)} "
                f"h{''.join(str(h) for h, _ in self.layers)} m{''.join(str(m) for _, m in self.layers)}")

    @classmethod
    def decode(cls, spec_id: str) -> "ViTSpec":
        parts = spec_id.split("-")
        if parts[0] != "vit":
            raise SpecError(f"family: id {spec_id!r} does not start with 'vit-'")
        if len(parts) != 4:
            raise SpecError(f"id: expected 'vit-r<res>-w<embed>-h<heads>m<ratio>...', got {spec_id!r}")
        if not parts[1].startswith("r"):
            raise SpecError(f"resolution: expected 'r<pixels>' in {spec_id!r}")
        if not parts[2].startswith("w"):
            raise SpecError(f"embed: expected 'w<width>' in {spec_id!r}")
        res = parse_int(parts[1][1:], "resolution", spec_id)
        embed = parse_int(parts[2][1:], "embed", spec_id)
        layers = []
        for li, tok in enumerate(parts[3].split(".")):
            if not (tok.startswith("h") and "m" in tok):
                raise SpecError(f"layer {li}: token {tok!r} is not 'h<heads>m<mlp_ratio>' in {spec_id!r}")
            h_txt, m_txt = tok[1:].split("m", 1)
            layers.append((parse_int(h_txt, f"layer {li} heads", spec_id),
                           parse_int(m_txt, f"layer {li} mlp_ratio", spec_id)))
        return cls(resolution=res, embed=embed, layers=tuple(layers))


def _grid_pos_embed(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """Resize a [1, G*G, C] position embedding to ``grid`` x ``grid`` tokens (bilinear)."""
    g0 = int(math.isqrt(pos.shape[1]))
    if g0 == grid:
        return pos
    p = pos.reshape(1, g0, g0, -1).permute(0, 3, 1, 2)
    p = F.interpolate(p, size=(grid, grid), mode="bilinear", align_corners=False)
    return p.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)


class _ElasticLayer(nn.Module):
    def __init__(self, embed: int, heads: int, head_dim: int, mlp_ratio: int) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.max_heads = heads
        self.ln1 = nn.LayerNorm(embed)
        self.qkv = nn.Linear(embed, 3 * heads * head_dim)
        self.proj = nn.Linear(heads * head_dim, embed)
        self.ln2 = nn.LayerNorm(embed)
        self.fc1 = nn.Linear(embed, mlp_ratio * embed)
        self.fc2 = nn.Linear(mlp_ratio * embed, embed)

    def sliced(self, w: int, h: int, m: int) -> dict[str, torch.Tensor]:
        """Active weights for width ``w``, ``h`` heads, MLP ratio ``m`` (views, no copies)."""
        hd, hm = self.head_dim, self.max_heads
        qkv_w = self.qkv.weight.view(3, hm, hd, -1)[:, :h, :, :w].reshape(3 * h * hd, w)
        qkv_b = self.qkv.bias.view(3, hm, hd)[:, :h].reshape(3 * h * hd)
        hidden = m * w
        return {
            "ln1.weight": self.ln1.weight[:w], "ln1.bias": self.ln1.bias[:w],
            "qkv.weight": qkv_w, "qkv.bias": qkv_b,
            "proj.weight": self.proj.weight[:w, : h * hd], "proj.bias": self.proj.bias[:w],
            "ln2.weight": self.ln2.weight[:w], "ln2.bias": self.ln2.bias[:w],
            "fc1.weight": self.fc1.weight[:hidden, :w], "fc1.bias": self.fc1.bias[:hidden],
            "fc2.weight": self.fc2.weight[:w, :hidden], "fc2.bias": self.fc2.bias[:w],
        }

    def forward(self, x: torch.Tensor, w: int, h: int, m: int) -> torch.Tensor:
        p = self.sliced(w, h, m)
        return _layer_forward(x, p, h, self.head_dim, self.ln1.eps)


def _layer_forward(x: torch.Tensor, p: dict[str, torch.Tensor], heads: int, head_dim: int,
                   eps: float) -> torch.Tensor:
    n, t, w = x.shape
    y = F.layer_norm(x, (w,), p["ln1.weight"], p["ln1.bias"], eps)
    qkv = F.linear(y, p["qkv.weight"], p["qkv.bias"]).view(n, t, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
    x = x + F.linear(a.transpose(1, 2).reshape(n, t, heads * head_dim), p["proj.weight"], p["proj.bias"])
    y = F.layer_norm(x, (w,), p["ln2.weight"], p["ln2.bias"], eps)
    return x + F.linear(F.gelu(F.linear(y, p["fc1.weight"], p["fc1.bias"])), p["fc2.weight"], p["fc2.bias"])


class _Attention(nn.Module):
    """Static multi-head self-attention (reports its matmul MACs for the FLOP counter)."""

    def __init__(self, embed: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.qkv = nn.Linear(embed, 3 * heads * head_dim)
        self.proj = nn.Linear(heads * head_dim, embed)
        self.last_extra_macs = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        qkv = self.qkv(x).view(n, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        self.last_extra_macs = 2 * t * t * self.heads * self.head_dim
        return self.proj(a.transpose(1, 2).reshape(n, t, self.heads * self.head_dim))


class _StaticLayer(nn.Module):
    def __init__(self, embed: int, heads: int, head_dim: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(embed, eps=eps)
        self.attn = _Attention(embed, heads, head_dim)
        self.ln2 = nn.LayerNorm(embed, eps=eps)
        self.fc1 = nn.Linear(embed, hidden)
        self.fc2 = nn.Linear(hidden, embed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


def _tokenizer(in_channels: int, embed: int, patch: int, stem_channels: int) -> tuple[nn.Module | None, nn.Conv2d]:
    """(stem, patch_embed). Without a stem: one patch x patch conv.  With ``stem_channels`` ``c``: a 3x3
    conv to ``c`` at full resolution + GELU, a 3x3 stride-2 conv to ``2c`` + GELU, then a 3x3 stride-2 conv
    to the embedding (patch 4).  Early convolutions make a small ViT train far faster (Xiao et al. 2021,
    "Early convolutions help transformers see better"); no norm layer, so every sub-network shares the
    stem as it is and the family keeps no per-sub-network statistics."""
    if not stem_channels:
        return None, nn.Conv2d(in_channels, embed, patch, stride=patch)
    if patch != 4:
        raise ValueError(f"a conv stem tokenises with stride 4; got patch {patch}")
    c = stem_channels
    return (nn.Sequential(nn.Conv2d(in_channels, c, 3, 1, 1), nn.GELU(), nn.Conv2d(c, 2 * c, 3, 2, 1), nn.GELU()),
            nn.Conv2d(2 * c, embed, 3, 2, 1))


class ViTSubnet(nn.Module):
    """A standalone (non-elastic) ViT sub-network extracted from :class:`ElasticViTSupernet`."""

    def __init__(self, in_channels: int, patch: int, resolution: int, embed: int,
                 layers: tuple[tuple[int, int], ...], head_dim: int, n_classes: int, eps: float,
                 stem_channels: int = 0) -> None:
        super().__init__()
        grid = resolution // patch
        self.patch = patch  # total stride from pixels to tokens (graph_variants derives example inputs from it)
        self.stem, self.patch_embed = _tokenizer(in_channels, embed, patch, stem_channels)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, embed))
        self.layers = nn.ModuleList(_StaticLayer(embed, h, head_dim, m * embed, eps) for h, m in layers)
        self.norm = nn.LayerNorm(embed, eps=eps)
        self.head = nn.Linear(embed, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem is not None:
            x = self.stem(x)
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x).mean(1))


class ElasticViTSupernet(Supernet):
    """Weight-shared ViT over (resolution, embed width, depth, heads per layer, MLP ratio per layer)."""

    family = "elastic_vit"
    spec_type = ViTSpec

    def __init__(self, n_classes: int = 10, in_channels: int = 1, patch: int = 4,
                 embed_list=(48, 64, 96), depth_list=(2, 3, 4, 5, 6), heads_list=(2, 3, 4),
                 mlp_ratio_list=(2, 3, 4), head_dim: int = 16, resolutions=(16, 20, 24, 28, 32),
                 eps: float = 1e-6, stem_channels: int = 0) -> None:
        super().__init__()
        self._config = dict(n_classes=n_classes, in_channels=in_channels, patch=patch,
                            embed_list=sorted(embed_list), depth_list=sorted(depth_list),
                            heads_list=sorted(heads_list), mlp_ratio_list=sorted(mlp_ratio_list),
                            head_dim=head_dim, resolutions=sorted(resolutions), eps=eps)
        if stem_channels:  # only then in the config: older checkpoints' configs stay as they were
            self._config["stem_channels"] = stem_channels
        for r in resolutions:
            if r % patch:
                raise ValueError(f"resolution {r} is not a multiple of the patch size {patch}")
        c = self._config
        e_max = max(c["embed_list"])
        grid = max(c["resolutions"]) // patch
        self.stem, self.patch_embed = _tokenizer(in_channels, e_max, patch, stem_channels)
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid, e_max) * 0.02)
        self.layers = nn.ModuleList(_ElasticLayer(e_max, max(c["heads_list"]), head_dim, max(c["mlp_ratio_list"]))
                                    for _ in range(max(c["depth_list"])))
        self.norm = nn.LayerNorm(e_max, eps=eps)
        self.head = nn.Linear(e_max, n_classes)
        for layer in self.layers:
            layer.ln1.eps = layer.ln2.eps = eps
        self.set_active(self.largest())

    def space(self) -> dict[str, Any]:
        c = self._config
        return {"embed": c["embed_list"], "depth": c["depth_list"], "heads": c["heads_list"],
                "mlp_ratio": c["mlp_ratio_list"], "resolution": c["resolutions"]}

    def validate(self, spec: SubnetSpec) -> None:
        if not isinstance(spec, ViTSpec):
            raise SpecError(f"family: expected ViTSpec, got {type(spec).__name__}")
        c = self._config
        check_choice(spec.resolution, c["resolutions"], "resolution")
        check_choice(spec.embed, c["embed_list"], "embed")
        check_choice(len(spec.layers), c["depth_list"], "depth")
        for li, layer in enumerate(spec.layers):
            if len(layer) != 2:
                raise SpecError(f"layer {li}: expected (heads, mlp_ratio), got {layer!r}")
            check_choice(layer[0], c["heads_list"], f"layer {li} heads")
            check_choice(layer[1], c["mlp_ratio_list"], f"layer {li} mlp_ratio")

    def decode_unchecked(self, spec_id: str) -> ViTSpec:
        return ViTSpec.decode(spec_id)

    def _uniform(self, pick) -> ViTSpec:
        c = self._config
        return ViTSpec(pick(c["resolutions"]), pick(c["embed_list"]),
                       tuple((pick(c["heads_list"]), pick(c["mlp_ratio_list"])) for _ in range(pick(c["depth_list"]))))

    def largest(self) -> ViTSpec:
        return self._uniform(max)

    def smallest(self) -> ViTSpec:
        return self._uniform(min)

    def random_spec(self, rng: random.Random) -> ViTSpec:
        c = self._config
        layers = tuple((rng.choice(c["heads_list"]), rng.choice(c["mlp_ratio_list"]))
                       for _ in range(rng.choice(c["depth_list"])))
        return ViTSpec(rng.choice(c["resolutions"]), rng.choice(c["embed_list"]), layers)

    def _apply_active(self, spec: SubnetSpec) -> None:
        """Nothing to reconfigure in modules: :meth:`forward` reads the active spec."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.active
        assert isinstance(spec, ViTSpec)
        w = spec.embed
        grid = x.shape[-1] // self._config["patch"]
        if self.stem is not None:
            x = self.stem(x)
        pe = self.patch_embed
        x = F.conv2d(x, pe.weight[:w], pe.bias[:w], stride=pe.stride, padding=pe.padding)
        x = x.flatten(2).transpose(1, 2) + _grid_pos_embed(self.pos_embed, grid)[..., :w]
        for layer, (h, m) in zip(self.layers, spec.layers):
            x = layer(x, w, h, m)
        x = F.layer_norm(x, (w,), self.norm.weight[:w], self.norm.bias[:w], self.norm.eps)
        return F.linear(x.mean(1), self.head.weight[:, :w], self.head.bias)

    def _extract(self, spec: SubnetSpec) -> nn.Module:
        assert isinstance(spec, ViTSpec)
        c = self._config
        w = spec.embed
        sub = ViTSubnet(c["in_channels"], c["patch"], spec.resolution, w, spec.layers, c["head_dim"],
                        c["n_classes"], c["eps"], c.get("stem_channels", 0))
        if self.stem is not None:
            sub.stem.load_state_dict(self.stem.state_dict())
        sub.patch_embed.weight.copy_(self.patch_embed.weight[:w])
        sub.patch_embed.bias.copy_(self.patch_embed.bias[:w])
        sub.pos_embed.copy_(_grid_pos_embed(self.pos_embed, spec.resolution // c["patch"])[..., :w])
        for dst, src, (h, m) in zip(sub.layers, self.layers, spec.layers):
            p = src.sliced(w, h, m)
            targets = {"ln1": dst.ln1, "qkv": dst.attn.qkv, "proj": dst.attn.proj, "ln2": dst.ln2,
                       "fc1": dst.fc1, "fc2": dst.fc2}
            for key, tensor in p.items():
                name, attr = key.split(".")
                getattr(targets[name], attr).copy_(tensor)
        sub.norm.weight.copy_(self.norm.weight[:w])
        sub.norm.bias.copy_(self.norm.bias[:w])
        sub.head.weight.copy_(self.head.weight[:, :w])
        sub.head.bias.copy_(self.head.bias)
        return sub


def fmnist_vit_config() -> dict[str, Any]:
    """The project's Fashion-MNIST elastic ViT: 1 channel, patch 4, 16-32 px, width 48-96."""
    return dict(n_classes=10, in_channels=1, patch=4, embed_list=(48, 64, 96), depth_list=(2, 3, 4, 5, 6),
                heads_list=(2, 3, 4), mlp_ratio_list=(2, 3, 4), head_dim=16, resolutions=(16, 20, 24, 28, 32))
