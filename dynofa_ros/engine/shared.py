"""Weight-shared execution: sub-network modules whose weights are views of one supernet's own storage.

Why: the pool kept one private weight copy per kept point, so memory grew with the number of points
(the 7 shipped MBv3 points: 4.0x the supernet's bytes, on top of the supernet).  Every sub-network's
weights are slices of the supernet's tensors, so a module can hold views instead; only BatchNorm running
statistics are really per point (Dynamic-OFA recalibrates them per sub-network), 23-82 KiB each.  All 7
points resident then take 1.19x the supernet (derived cache 0.57 MiB, statistics 0.37 MiB).

How: :meth:`SharedWeights.module` builds the standalone module with ``supernet.extract`` (the reference
structure and forward code, so outputs agree with the private copy), then re-points every parameter at
the supernet tensor it was copied from, sliced, or at a derived tensor cached here.  Each re-pointed
view is compared with the weight extract copied (exact for views, within 1e-6 for computed ones), so a change
in ofa's or the ViT's slicing fails loudly at build time instead of giving a silently wrong network.

Choices, by measurement (CPU, one thread, batch 1; figures in bench/results/shared_weights.md):

- MBv3 depthwise kernel below the max size: ofa derives it through the kernel transformation matrices,
  so it is a derived tensor, computed once per (block, kernel size) over all channels and sliced
  ``[:mid]``: one copy serves every expand ratio and every point using that block at that kernel size.
- MBv3 1x1 convs whose input channels are sliced (point-linear and both SE convs at expand < max) are
  non-contiguous views, which ``F.conv2d`` copies on every call (+2-4 us per conv measured).  They run in
  :class:`StridedConv1x1` instead, on the strided 2-D view (BLAS takes the leading dimension, no copy):
  at batch 1 ``torch.mm`` (5.5-6.5 us against 6-7.5 us for conv2d on a contiguous weight) and, for SE on
  the pooled 1x1 map, ``torch.mv`` (3.3-4.4 us against 5.5-6.7 us); for larger batches ``F.linear`` (SE)
  or ``F.conv2d`` on the view, where the copy is amortised (torch.matmul measured up to 2x slower on
  small maps).  Prefix slices that stay contiguous keep their ``nn.Conv2d`` unchanged.  So no cache of
  contiguous 1x1 weights is needed, and the memory figure stays free of per-(layer, slice) copies.
- ViT qkv with fewer heads than the max: the per-head slice of q, k and v is not one strided matrix.
  Three ``F.linear`` on views measured +20-35 us per layer and one ``baddbmm`` on a 3-D view +5-17 us
  (against 25-65 us for the whole attention), too much next to a 0.6 ms model; so the qkv weight and bias
  of each (layer, heads) are cached contiguous at full width and used as a ``[:, :w]`` view (a strided
  ``F.linear`` weight measured as fast as a contiguous one, as do the proj/fc1/fc2/head slices).
- ViT position embedding at a grid below the max: interpolated once per grid at full width, cached.

Caveats: views alias the supernet, so in-place weight updates show in every module, but derived tensors
are computed once: after training the supernet further, build a new :class:`SharedWeights`.  Moving a
module to another device copies its weights (no longer shared).  Forward passes only read shared
tensors, so built modules may run concurrently; building is serialised by a lock (``extract`` switches
the supernet's active sub-network and restores it).  This is the eager form only: :class:`StridedConv1x1`
branches on the input shape, so fx symbolic tracing (the ``fused``/``frozen``/``int8`` graph variants)
does not go through it; build those from ``supernet.extract``, as they hold their own weights anyway.
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..supernet.base import SubnetSpec, Supernet
from ..supernet.elastic_vit import ElasticViTSupernet, ViTSpec, _grid_pos_embed
from ..supernet.ofa_mbv3 import MBv3Spec, OFAMobileNetV3Supernet
from .bn_stats import load_bn_state

_DERIVED_ATOL = 1e-6


class StridedConv1x1(nn.Module):
    """A 1x1, stride-1 convolution on a non-contiguous weight view, without copying it.

    ``weight`` is the 2-D ``[out, in]`` view (row stride = the supernet's max input channels), kept 2-D
    because re-indexing a 4-D view costs ~2 us per call at batch 1, as much as the product itself."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.out_channels, self.in_channels = weight.shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        weight, bias = self.weight, self.bias
        if n == 1 and h * w == 1:   # SE on the pooled map: matrix-vector product
            v = x.reshape(c)
            y = torch.mv(weight, v) if bias is None else torch.addmv(bias, weight, v)
            return y.view(1, -1, 1, 1)
        if n == 1:                  # BLAS takes the view's leading dimension: no weight copy
            x2d = x.reshape(c, h * w)
            y = torch.mm(weight, x2d) if bias is None else torch.addmm(bias[:, None], weight, x2d)
            return y.view(1, -1, h, w)
        if h * w == 1:
            return F.linear(x.reshape(n, c), weight, bias).view(n, -1, 1, 1)
        return F.conv2d(x, weight[:, :, None, None], bias)   # large batch: the weight copy is amortised


def _prefix(t: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """The leading ``shape`` block of ``t`` as a view (how both families slice their weights)."""
    return t.detach()[tuple(slice(0, n) for n in shape)]


def _bind(owner: nn.Module, name: str, view: torch.Tensor, exact: bool = True) -> None:
    """Replace ``owner.<name>`` (a weight extract copied) by a parameter aliasing ``view``, after
    checking the two agree, so a wrong slice can never go unnoticed."""
    old = getattr(owner, name)
    if old.shape != view.shape:
        raise RuntimeError(f"shared weight {name}: view shape {tuple(view.shape)} != {tuple(old.shape)}")
    same = torch.equal(old, view) if exact else torch.allclose(old, view, rtol=1e-5, atol=_DERIVED_ATOL)
    if not same:
        raise RuntimeError(f"shared weight {name} of {type(owner).__name__} differs from the extracted copy")
    setattr(owner, name, nn.Parameter(view, requires_grad=False))


def _bind_same(dst: nn.Module, src: nn.Module) -> None:
    """Every parameter of ``dst`` (a deep copy of ``src``) becomes ``src``'s own tensor."""
    for name, _ in list(dst.named_parameters()):
        owner_name, _, attr = name.rpartition(".")
        owner = dst.get_submodule(owner_name) if owner_name else dst
        _bind(owner, attr, src.get_parameter(name).detach())


def _bind_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d) -> None:
    """Affine BN parameters are shared prefixes; running statistics stay private (per point)."""
    _bind(dst, "weight", _prefix(src.weight, dst.weight.shape))
    _bind(dst, "bias", _prefix(src.bias, dst.bias.shape))


def _bind_conv1x1(parent: nn.Module, name: str, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    """Share a 1x1 conv's weight: in place if the view is contiguous, else via :class:`StridedConv1x1`."""
    conv = getattr(parent, name)
    if weight.is_contiguous():
        _bind(conv, "weight", weight)
        if bias is not None:
            _bind(conv, "bias", bias)
        return
    plain = (conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.groups == 1
             and conv.padding == (0, 0) and conv.dilation == (1, 1))
    if not plain:
        raise RuntimeError(f"{name}: a non-contiguous weight view on a conv that is not a plain 1x1")
    if not torch.equal(conv.weight, weight) or (bias is not None and not torch.equal(conv.bias, bias)):
        raise RuntimeError(f"shared 1x1 weight {name} differs from the extracted copy")
    setattr(parent, name, StridedConv1x1(weight[:, :, 0, 0], bias))


class SharedWeights:
    """Builds sub-network modules whose weights are views of one supernet's own storage."""

    def __init__(self, supernet: Supernet) -> None:
        if isinstance(supernet, OFAMobileNetV3Supernet):
            self._share: Callable[[nn.Module, SubnetSpec], None] = self._share_mbv3
        elif isinstance(supernet, ElasticViTSupernet):
            self._share = self._share_vit
        else:
            raise TypeError(f"SharedWeights: no weight-sharing rule for {type(supernet).__name__}")
        self.supernet = supernet
        self._lock = threading.RLock()
        self._derived: dict[tuple, torch.Tensor] = {}

    def module(self, spec: SubnetSpec | str, bn_state: dict[str, torch.Tensor] | None = None) -> nn.Module:
        """Eval-mode module for ``spec``; weights are views into the supernet or this cache, only BN
        running statistics are private (``bn_state`` if given, else the supernet's current ones)."""
        with self._lock, torch.no_grad():
            spec = self.supernet.as_spec(spec)
            module = self.supernet.extract(spec)   # private copies, replaced below
            self._share(module, spec)
            if bn_state is not None:
                load_bn_state(module, bn_state)
        return module.eval()

    def private_copy(self, spec: SubnetSpec | str, bn_state: dict[str, torch.Tensor] | None = None) -> nn.Module:
        """A standalone module with copied weights (``extract``), serialised with :meth:`module`: the
        source of graph variants that fold or trace their own copy anyway."""
        with self._lock, torch.no_grad():
            module = self.supernet.extract(self.supernet.as_spec(spec))
            if bn_state is not None:
                load_bn_state(module, bn_state)
        return module.eval()

    def derived_bytes(self) -> int:
        """Bytes held by the derived-tensor cache."""
        with self._lock:
            return sum(t.untyped_storage().nbytes() for t in self._derived.values())

    def derived_tensors(self) -> list[torch.Tensor]:
        with self._lock:
            return list(self._derived.values())

    def _cached(self, key: tuple, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The derived tensor for ``key``, computed on first use (callers hold the lock)."""
        t = self._derived.get(key)
        if t is None:
            t = self._derived[key] = make().detach().contiguous()
        return t

    # --- OFA MobileNetV3 ----------------------------------------------------------------------
    def _share_mbv3(self, sub: nn.Module, spec: SubnetSpec) -> None:
        assert isinstance(spec, MBv3Spec) and isinstance(self.supernet, OFAMobileNetV3Supernet)
        net = self.supernet.net
        for name in ("first_conv", "final_expand_layer", "feature_mix_layer", "classifier"):
            _bind_same(getattr(sub, name), getattr(net, name))
        _bind_same(sub.blocks[0], net.blocks[0])
        j = 1
        for stage, block_ids in zip(spec.stages, net.block_group_info):
            for (kernel, _expand), idx in zip(stage, block_ids):
                self._share_mbconv(sub.blocks[j].conv, net.blocks[idx].conv, idx, kernel)
                j += 1
        if j != len(sub.blocks):
            raise RuntimeError(f"extracted module has {len(sub.blocks)} blocks, spec gives {j}")

    def _share_mbconv(self, dst: nn.Module, src: nn.Module, idx: int, kernel: int) -> None:
        """One MBConv block: expand 1x1, depthwise (derived below the max kernel), SE, point-linear."""
        if dst.inverted_bottleneck is not None:
            ib = dst.inverted_bottleneck
            _bind_conv1x1(ib, "conv", _prefix(src.inverted_bottleneck.conv.conv.weight, ib.conv.weight.shape))
            _bind_bn(ib.bn, src.inverted_bottleneck.bn.bn)
        dw, dconv = dst.depth_conv, src.depth_conv.conv
        mid = dw.conv.weight.shape[0]
        if kernel == max(dconv.kernel_size_list):
            _bind(dw.conv, "weight", _prefix(dconv.conv.weight, dw.conv.weight.shape))
        else:
            full = self._cached(("mbv3.depthwise", idx, kernel),
                                lambda: dconv.get_active_filter(dconv.max_in_channels, kernel))
            _bind(dw.conv, "weight", full[:mid], exact=False)
        _bind_bn(dw.bn, src.depth_conv.bn.bn)
        if getattr(src, "use_se", False):
            fc, sfc = dw.se.fc, src.depth_conv.se.fc
            _bind_conv1x1(fc, "reduce", _prefix(sfc.reduce.weight, fc.reduce.weight.shape),
                          _prefix(sfc.reduce.bias, fc.reduce.bias.shape))
            _bind_conv1x1(fc, "expand", _prefix(sfc.expand.weight, fc.expand.weight.shape),
                          _prefix(sfc.expand.bias, fc.expand.bias.shape))
        pl = dst.point_linear
        _bind_conv1x1(pl, "conv", _prefix(src.point_linear.conv.conv.weight, pl.conv.weight.shape))
        _bind_bn(pl.bn, src.point_linear.bn.bn)

    # --- elastic ViT --------------------------------------------------------------------------
    def _share_vit(self, sub: nn.Module, spec: SubnetSpec) -> None:
        assert isinstance(spec, ViTSpec) and isinstance(self.supernet, ElasticViTSupernet)
        sn, cfg, w = self.supernet, self.supernet.config(), spec.embed
        if sn.stem is not None:
            _bind_same(sub.stem, sn.stem)
        _bind(sub.patch_embed, "weight", _prefix(sn.patch_embed.weight, sub.patch_embed.weight.shape))
        _bind(sub.patch_embed, "bias", sn.patch_embed.bias.detach()[:w])
        grid = spec.resolution // cfg["patch"]
        if grid == max(cfg["resolutions"]) // cfg["patch"]:
            _bind(sub, "pos_embed", sn.pos_embed.detach()[..., :w])
        else:
            pos = self._cached(("vit.pos_embed", grid), lambda: _grid_pos_embed(sn.pos_embed, grid))
            _bind(sub, "pos_embed", pos[..., :w], exact=False)
        for li, (dst, src, (h, m)) in enumerate(zip(sub.layers, sn.layers, spec.layers)):
            self._share_vit_layer(dst, src, li, w, h, m)
        _bind(sub.norm, "weight", sn.norm.weight.detach()[:w])
        _bind(sub.norm, "bias", sn.norm.bias.detach()[:w])
        _bind(sub.head, "weight", sn.head.weight.detach()[:, :w])
        _bind(sub.head, "bias", sn.head.bias.detach())

    def _share_vit_layer(self, dst: nn.Module, src: nn.Module, li: int, w: int, h: int, m: int) -> None:
        """A layer's slices are views (``_ElasticLayer.sliced``) except qkv with fewer heads: cached."""
        sliced = {k: v.detach() for k, v in src.sliced(w, h, m).items()}
        if h < src.max_heads:
            hd, hm = src.head_dim, src.max_heads
            full_w = self._cached(("vit.qkv.weight", li, h),
                                  lambda: src.qkv.weight.view(3, hm, hd, -1)[:, :h].reshape(3 * h * hd, -1))
            full_b = self._cached(("vit.qkv.bias", li, h),
                                  lambda: src.qkv.bias.view(3, hm, hd)[:, :h].reshape(3 * h * hd))
            sliced["qkv.weight"], sliced["qkv.bias"] = full_w[:, :w], full_b
        targets = {"ln1": dst.ln1, "qkv": dst.attn.qkv, "proj": dst.attn.proj, "ln2": dst.ln2,
                   "fc1": dst.fc1, "fc2": dst.fc2}
        for key, view in sliced.items():
            name, attr = key.split(".")
            _bind(targets[name], attr, view)


def shared_storage_ptrs(shared: SharedWeights) -> set[int]:
    """Storage base addresses of the supernet's parameters and buffers and of the derived cache."""
    tensors = itertools.chain(shared.supernet.parameters(), shared.supernet.buffers(), shared.derived_tensors())
    return {t.untyped_storage().data_ptr() for t in tensors}


def private_bytes(module: nn.Module, shared: SharedWeights) -> int:
    """Bytes of ``module``'s parameter/buffer storages held neither by the supernet nor by the cache
    (each storage counted once): what one more resident point costs."""
    common = shared_storage_ptrs(shared)
    seen: set[int] = set()
    total = 0
    for t in itertools.chain(module.parameters(), module.buffers()):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in common and ptr not in seen:
            seen.add(ptr)
            total += storage.nbytes()
    return total
