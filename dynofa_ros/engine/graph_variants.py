"""Graph-level variants of a materialised sub-network; each is a separate, measured operating point.

- ``eager``: the extracted module as is.
- ``fused``: BatchNorm folded into the preceding conv (torch.fx) and channels_last memory format.
- ``compiled``: ``torch.compile`` (inductor) with its on-disk cache, so the 30-40 s cold compile is paid
  once per sub-network and machine, never on the frame path (the pool warms it up before switching).
- ``frozen``: BN folded, ofa's Python ``Hswish``/``Hsigmoid`` swapped for the native ``nn.Hardswish`` /
  ``nn.Hardsigmoid`` (same formula) and its two-``mean`` global pools for ``adaptive_avg_pool2d``, then
  ``torch.jit.trace`` + ``torch.jit.freeze``: weights become graph constants and the per-layer Python
  dispatch disappears (batch 1 is dispatch-bound). Agrees with eager within 1e-5; builds in under a
  second and needs no compiler (AOTInductor was ~1.3x faster still on the smallest point but took 14-48 s
  and a C++ toolchain per sub-network: that is what ``compiled`` is for).
  0.42-0.56x eager's latency on the MBv3 points (bench/results/variants.md).
- ``int8``: static post-training quantisation (torch.ao FX ``prepare_fx``/``convert_fx`` with the default
  qconfig mapping of the machine's engine, see `quantized_engine`/`int8_qconfig_mapping`: ``fbgemm`` on
  x86, ``qnnpack`` on ARM; per-channel weights, histogram-calibrated activations), calibrated on
  caller-given image batches, then traced and frozen like ``frozen`` (0.10-0.18x eager, top-1 within
  0.25 pp on the shipped MBv3 tables' points). CPU only; its accuracy differs from eager, so the offline
  step (``dynofa_ros.offline.variants``) measures it and keeps it only within a tolerance.

``frozen`` and ``int8`` hold their own weight copy (never the caller's or the supernet's storages): that
copy is the memory the pool's budget trades. They may be built from an extracted module or from the
pool's weight-shared form (views of the supernet, :mod:`.shared`): the copy clones only the slices.
Their weights are graph constants, not parameters, so count them with :func:`weight_bytes`.
"""
from __future__ import annotations

import copy
import math
import os
import platform
import threading
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

VARIANTS = ("eager", "fused", "compiled", "frozen", "int8")
# torch.fx's symbolic trace patches nn.Module.__call__ for every thread while it runs, so a module called
# on another thread meanwhile fails ("module is not installed as a submodule"): fx traces hold this lock,
# and so does the pool's inference (SubnetPool.infer), which then waits out a trace instead of failing.
FX_TRACE_LOCK = threading.Lock()
DEFAULT_CACHE = Path(os.environ.get("DYNOFA_COMPILE_CACHE", Path.home() / ".cache" / "dynofa_ros" / "inductor"))
DEFAULT_TRACE_RESOLUTION = 32   # conv nets with global pooling trace shape-free; any size records the same graph
_X86 = ("x86_64", "amd64", "i386", "i686", "x86")
_ARM = ("aarch64", "arm64", "armv7l", "armv8l", "arm")


class ChannelsLast(nn.Module):
    """Runs ``inner`` on a channels_last copy of 4-D inputs (the fused variant's memory format)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.contiguous(memory_format=torch.channels_last))


class FrozenGraph(nn.Module):
    """A frozen TorchScript graph plus the byte count of its constants (they are not parameters).

    Float constants are also registered as non-persistent buffers (the same tensors, no copy), so the
    pool's parameters+buffers accounting sees them; int8 packed weights cannot be, hence ``weight_nbytes``.
    Build it on its device: moving it afterwards would move the buffers, not the graph's constants."""

    def __init__(self, graph: torch.jit.ScriptModule, variant: str, weight_nbytes: int,
                 tensors: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        self.graph_module = graph
        self.variant = variant
        self.weight_nbytes = int(weight_nbytes)
        for i, t in enumerate(tensors):
            self.register_buffer(f"const{i}", t, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph_module(x)


def fuse_bn(module: nn.Module) -> nn.Module:
    """Fold every conv->BN pair into the conv (eval only); modules without BN come back traced as is."""
    from torch.fx.experimental.optimization import fuse

    with FX_TRACE_LOCK:
        return fuse(module.eval(), inplace=False)


def enable_compile_cache(cache_dir: Path = DEFAULT_CACHE) -> None:
    """Point inductor's FX-graph/kernel caches at a persistent folder (unless the user already did)."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir))
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")


class NativeSE(nn.Module):
    """ofa's ``SEModule`` with its global pooling as one ``adaptive_avg_pool2d`` instead of two ``mean``
    calls: the same average, but int8 has a native kernel for it, while a quantised ``mean`` round-trips
    through float (a third of a shallow int8 point's frame, measured with torch.profiler)."""

    def __init__(self, fc: nn.Module) -> None:
        super().__init__()
        self.fc = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(torch.nn.functional.adaptive_avg_pool2d(x, 1))


def _ofa_natives() -> dict[type, Callable[[nn.Module], nn.Module]]:
    """ofa's Python modules -> native equivalents (empty without ofa). ofa: Hswish = x*relu6(x+3)/6,
    Hsigmoid = relu6(x+3)/6, exactly torch's Hardswish/Hardsigmoid; its ReLU/ReLU6 are torch's already;
    its global pool and SE average over H then W, which is the same mean as one adaptive pool."""
    try:
        from ofa.utils.pytorch_modules import Hsigmoid, Hswish, MyGlobalAvgPool2d, SEModule
    except ImportError:
        return {}

    def pool(child: nn.Module) -> nn.Module:
        return nn.AdaptiveAvgPool2d(1) if child.keep_dim else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())

    return {Hswish: lambda _: nn.Hardswish(), Hsigmoid: lambda _: nn.Hardsigmoid(),
            MyGlobalAvgPool2d: pool, SEModule: lambda child: NativeSE(native_modules(child.fc))}


def native_modules(module: nn.Module) -> nn.Module:
    """Replace ofa's Python activation, pooling and SE modules by native ones, in place: one kernel
    instead of several ops, and the quantiser has int8 kernels for them (not for a division or a mean)."""
    table = _ofa_natives()
    for name, child in module.named_children():
        native = table.get(type(child))
        if native is not None:
            setattr(module, name, native(child))
        else:
            native_modules(child)
    return module


def compact_copy(module: nn.Module) -> nn.Module:
    """Deep copy in which every parameter/buffer is a fresh compact clone. A plain deepcopy of a module
    whose weights are views (the pool's shared forms alias the supernet) would copy each whole
    underlying supernet storage, not the slice."""
    memo: dict[int, object] = {}
    for t in (*module.parameters(), *module.buffers()):
        if id(t) not in memo:
            c = t.detach().clone(memory_format=torch.contiguous_format)
            memo[id(t)] = nn.Parameter(c, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else c
    return copy.deepcopy(module, memo)


def plain_convs(module: nn.Module) -> nn.Module:
    """Replace the shared form's ``StridedConv1x1`` (it branches on the input shape, which neither fx
    nor a trace can follow) by the equivalent ``nn.Conv2d``, in place, taking over its weight tensors."""
    try:
        from .shared import StridedConv1x1
    except ImportError:  # no weight-shared forms in this tree
        return module
    for name, child in module.named_children():
        if isinstance(child, StridedConv1x1):
            conv = nn.Conv2d(child.in_channels, child.out_channels, 1, bias=child.bias is not None)
            conv.weight = nn.Parameter(child.weight.detach().reshape(*child.weight.shape, 1, 1),
                                       requires_grad=False)
            if child.bias is not None:
                conv.bias = nn.Parameter(child.bias.detach(), requires_grad=False)
            setattr(module, name, conv.to(child.weight.device).eval())
        else:
            plain_convs(child)
    return module


def own_inference_copy(module: nn.Module) -> nn.Module:
    """Compact copy with plain convs and native activations: the shared start of frozen and int8, so
    neither touches the caller's module nor shares any storage with it.  BN is folded later, without
    torch.fx (``torch.jit.freeze`` folds conv+BN; ``prepare_fx`` fuses it for int8): fx's symbolic trace
    patches ``nn.Module.__call__`` process-wide, which broke inference running on other threads."""
    return native_modules(plain_convs(compact_copy(module).eval()))


def default_example(module: nn.Module) -> torch.Tensor:
    """A zero input for tracing when the caller gives none: channels from the first conv; the size from a
    ViT's position table (grid x its total patch stride), else DEFAULT_TRACE_RESOLUTION (a conv net's
    trace is size-free)."""
    conv = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ValueError("cannot derive an example input (no Conv2d): pass example=")
    res = DEFAULT_TRACE_RESOLUTION
    pos, patch = getattr(module, "pos_embed", None), getattr(module, "patch", None)
    if isinstance(pos, torch.Tensor) and isinstance(patch, int):
        res = math.isqrt(pos.shape[-2]) * patch
    return torch.zeros(1, conv.in_channels, res, res, device=conv.weight.device, dtype=conv.weight.dtype)


def _graph_tensors(graph: torch.jit.ScriptModule) -> list[torch.Tensor]:
    """The tensor constants of a frozen graph (its weights), each storage once."""
    out, seen = [], set()
    for node in graph.graph.findAllNodes("prim::Constant"):
        value = node.output()
        if isinstance(value.type(), torch._C.TensorType):
            t = value.toIValue()
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in seen:
                seen.add(t.untyped_storage().data_ptr())
                out.append(t)
    return out


@torch.no_grad()
def _trace_freeze(module: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """TorchScript is deprecated in favour of torch.compile/export, but it is still the fast path that
    needs no compiler at build time (see the module docstring); its FutureWarnings are silenced here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(module.eval(), example, check_trace=False)
        frozen = torch.jit.freeze(traced.eval())
    # The first calls fix how the graph runs: an int8 graph first called at batch 256 then ran batch 1
    # 7x slower (measured), so it is called at the example's shape first, before anyone else calls it.
    for _ in range(2):
        frozen(example)
    return frozen


def make_frozen(module: nn.Module, example: torch.Tensor | None = None) -> FrozenGraph:
    """BN-folded, native-activation, traced and frozen copy of ``module`` (see the module docstring)."""
    example = default_example(module) if example is None else example
    graph = _trace_freeze(own_inference_copy(module), example)
    tensors = _graph_tensors(graph)
    return FrozenGraph(graph, "frozen", sum(t.untyped_storage().nbytes() for t in tensors), tensors)


def quantized_engine(machine: str | None = None, supported: Iterable[str] | None = None) -> str:
    """The quantised-kernel engine for this machine: fbgemm (else x86) on x86, qnnpack on ARM. fbgemm
    before x86: on this Xeon the x86 engine's int8 graphs ran 2x slower at batch 1 (its oneDNN dispatch)."""
    machine = (machine or platform.machine()).lower()
    supported = list(torch.backends.quantized.supported_engines if supported is None else supported)
    prefs = ("fbgemm", "x86", "onednn") if machine in _X86 else ("qnnpack",) if machine.startswith(_ARM) else ()
    for engine in (*prefs, "fbgemm", "x86", "qnnpack", "onednn"):
        if engine in supported:
            return engine
    raise RuntimeError(f"no quantised engine for {machine!r}; torch offers {supported}")


def int8_qconfig_mapping(engine: str):
    """torch's default static mapping for ``engine``, with full-range activations on x86 CPUs with VNNI:
    the default 7-bit range only avoids int16 overflow in pre-VNNI kernels, and here it cost up to
    1.1 pp top-1 (28-px supernet, largest) against ~0 with the full 8 bits."""
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.observer import HistogramObserver, default_per_channel_weight_observer

    mapping = get_default_qconfig_mapping(engine)
    vnni = getattr(torch.cpu, "_is_vnni_supported", lambda: False)()
    if engine in ("fbgemm", "x86") and vnni:
        mapping.set_global(QConfig(activation=HistogramObserver.with_args(reduce_range=False),
                                   weight=default_per_channel_weight_observer))
    return mapping


def _quantized_nbytes(module: nn.Module) -> int:
    """Bytes of a converted int8 model's weights: int8 values, float biases, per-channel scales. A
    quantised Linear keeps its (weight, bias) as a tuple in the state dict, so tuples are opened."""
    total = 0
    for value in module.state_dict().values():
        for t in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(t, torch.Tensor):
                total += _tensor_nbytes(t)
    return total


def _tensor_nbytes(t: torch.Tensor) -> int:
    """A tensor's values, plus its per-channel scales and zero points when it is quantised per channel."""
    total = t.numel() * t.element_size()
    if t.is_quantized and t.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        total += sum(a.numel() * a.element_size() for a in (t.q_per_channel_scales(),
                                                             t.q_per_channel_zero_points()))
    return total


@torch.no_grad()
def make_int8(module: nn.Module, calibration: Iterable[torch.Tensor] | None,
              example: torch.Tensor | None = None, engine: str | None = None) -> FrozenGraph:
    """Static int8 copy of ``module`` calibrated on ``calibration`` batches, traced and frozen (CPU)."""
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    batches = list(calibration) if calibration is not None else []
    if not batches:
        raise ValueError("graph variant 'int8' needs calibration=: a few batches of preprocessed images at "
                         "the point's resolution (static quantisation measures activation ranges on them)")
    if any(t.device.type != "cpu" for t in (*module.parameters(), *batches)):
        raise ValueError("graph variant 'int8' runs on the CPU only: build it from a CPU module and batches")
    engine = engine or quantized_engine()
    torch.backends.quantized.engine = engine
    example = batches[0][:1] if example is None else example
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices (torchao is not installed)
        own = own_inference_copy(module)
        with FX_TRACE_LOCK:
            prepared = prepare_fx(own, int8_qconfig_mapping(engine), (example,))
        for x in batches:
            prepared(x)
        with FX_TRACE_LOCK:
            converted = convert_fx(prepared)
    return FrozenGraph(_trace_freeze(converted, example), "int8", _quantized_nbytes(converted))


def module_bytes(module: nn.Module) -> int:
    """Bytes held by a module's parameters and buffers (distinct storages counted once)."""
    seen: set[int] = set()
    total = 0
    for t in (*module.parameters(), *module.buffers()):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen:
            seen.add(ptr)
            total += t.untyped_storage().nbytes()
    return total


def extent_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameter and buffer extents (a view counts its slice, not the storage behind
    it): what a compact private copy of a weight-shared form takes before any folding or quantisation."""
    unique = {id(t): t for t in (*module.parameters(), *module.buffers())}
    return sum(t.numel() * t.element_size() for t in unique.values())


def weight_bytes(module: nn.Module) -> int:
    """Bytes of a variant's weights: a frozen graph's own count, else parameters+buffers (storages once)."""
    return module.weight_nbytes if isinstance(module, FrozenGraph) else module_bytes(module)


def make_variant(module: nn.Module, variant: str, *, example: torch.Tensor | None = None,
                 calibration: Iterable[torch.Tensor] | None = None) -> nn.Module:
    """Return ``module`` in graph variant ``variant`` (eval mode). eager/fused/compiled may share weights
    with ``module``; frozen/int8 own a copy. ``example`` is a [1, C, R, R] input at the point's resolution
    (frozen derives one if omitted, see `default_example`); ``calibration`` is required for int8."""
    module = module.eval()
    if variant == "eager":
        return module
    if variant == "fused":
        fused = fuse_bn(module).to(memory_format=torch.channels_last)
        return ChannelsLast(fused).eval()
    if variant == "compiled":
        enable_compile_cache()
        return torch.compile(module, dynamic=False)
    if variant == "frozen":
        return make_frozen(module, example).eval()
    if variant == "int8":
        return make_int8(module, calibration, example).eval()
    raise ValueError(f"graph_variant: unknown variant {variant!r}; known: {list(VARIANTS)}")
