"""OFA MobileNetV3 supernet on top of the PyPI ``ofa`` package.

The ImageNet spaces (width 1.0 / 1.2) are exactly ofa's ``OFAMobileNetV3`` (same modules, same state_dict
keys, so the official checkpoints load).  :class:`_OFAMobileNetV3` only lifts the constants that ofa
hard-codes (input channels, stage widths, first-conv stride) so the same building blocks also give the
small Fashion-MNIST supernet that this project trains and ships.

Never import ``ofa.model_zoo`` (it downloads) or ``ofa.utils.my_dataloader`` (needs ``torch._six``).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from torch import nn

from ofa.imagenet_classification.elastic_nn.modules.dynamic_layers import DynamicMBConvLayer
from ofa.imagenet_classification.elastic_nn.networks.ofa_mbv3 import OFAMobileNetV3
from ofa.imagenet_classification.networks import MobileNetV3
from ofa.utils import MyNetwork, make_divisible, val2list
from ofa.utils.layers import ConvLayer, IdentityLayer, LinearLayer, MBConvLayer, ResidualBlock

from .base import SpecError, SubnetSpec, Supernet, check_choice, parse_int

IMAGENET_WIDTHS = (16, 16, 24, 40, 80, 112, 160, 960, 1280)
IMAGENET_RESOLUTIONS = tuple(range(128, 225, 4))
N_STAGES = 5


@dataclass(frozen=True)
class MBv3Spec(SubnetSpec):
    """Per elastic stage, the (kernel, expand) of each active block; depth = blocks per stage."""

    stages: tuple[tuple[tuple[int, int], ...], ...] = ()

    family = "mbv3"

    def encode(self) -> str:
        body = "-".join(".".join(f"k{k}e{e}" for k, e in st) for st in self.stages)
        return f"mbv3-r{self.resolution}-{body}"

    def describe(self) -> str:
        d = [len(st) for st in self.stages]
        ks = ["".join(str(k) for k, _ in st) for st in self.stages]
        es = ["".join(str(e) for _, e in st) for st in self.stages]
        return f"r{self.resolution} d{''.join(map(str, d))} k{'/'.join(ks)} e{'/'.join(es)}"

    @property
    def depths(self) -> list[int]:
        return [len(st) for st in self.stages]

    @classmethod
    def decode(cls, spec_id: str) -> "MBv3Spec":
        parts = spec_id.split("-")
        if parts[0] != "mbv3":
            raise SpecError(f"family: id {spec_id!r} does not start with 'mbv3-'")
        if len(parts) < 2 or not parts[1].startswith("r"):
            raise SpecError(f"resolution: expected 'r<pixels>' after 'mbv3-' in {spec_id!r}")
        res = parse_int(parts[1][1:], "resolution", spec_id)
        stages = []
        for si, text in enumerate(parts[2:]):
            blocks = []
            for bi, tok in enumerate(text.split(".")):
                if not (tok.startswith("k") and "e" in tok):
                    raise SpecError(f"stage {si} block {bi}: token {tok!r} is not 'k<kernel>e<expand>' in {spec_id!r}")
                k_txt, e_txt = tok[1:].split("e", 1)
                blocks.append((parse_int(k_txt, f"stage {si} block {bi} kernel", spec_id),
                               parse_int(e_txt, f"stage {si} block {bi} expand", spec_id)))
            stages.append(tuple(blocks))
        return cls(resolution=res, stages=tuple(stages))


class _OFAMobileNetV3(OFAMobileNetV3):
    """ofa's OFAMobileNetV3 with the hard-coded input channels, widths and first stride as arguments.

    With the defaults the module tree (and so the state_dict) is identical to ofa's class.
    """

    def __init__(self, n_classes: int = 1000, bn_param=(0.1, 1e-5), dropout_rate: float = 0.1,
                 width_mult: float = 1.0, ks_list=(3, 5, 7), expand_ratio_list=(3, 4, 6),
                 depth_list=(2, 3, 4), in_channels: int = 3,
                 base_stage_width=IMAGENET_WIDTHS, first_stride: int = 2) -> None:
        self.width_mult = width_mult
        self.ks_list = sorted(val2list(list(ks_list), 1))
        self.expand_ratio_list = sorted(val2list(list(expand_ratio_list), 1))
        self.depth_list = sorted(val2list(list(depth_list), 1))
        ks_list, expand_ratio_list = self.ks_list, self.expand_ratio_list
        base_stage_width = list(base_stage_width)
        div = MyNetwork.CHANNEL_DIVISIBLE
        final_expand_width = make_divisible(base_stage_width[-2] * width_mult, div)
        last_channel = make_divisible(base_stage_width[-1] * width_mult, div)
        stride_stages = [1, 2, 2, 2, 1, 2]
        act_stages = ["relu", "relu", "relu", "h_swish", "h_swish", "h_swish"]
        se_stages = [False, False, True, False, True, True]
        n_block_list = [1] + [max(self.depth_list)] * 5
        width_list = [make_divisible(w * width_mult, div) for w in base_stage_width[:-2]]
        input_channel, first_block_dim = width_list[0], width_list[1]
        first_conv = ConvLayer(in_channels, input_channel, kernel_size=3, stride=first_stride,
                               act_func="h_swish")
        first_block_conv = MBConvLayer(in_channels=input_channel, out_channels=first_block_dim,
                                       kernel_size=3, stride=stride_stages[0], expand_ratio=1,
                                       act_func=act_stages[0], use_se=se_stages[0])
        first_block = ResidualBlock(
            first_block_conv,
            IdentityLayer(first_block_dim, first_block_dim) if input_channel == first_block_dim else None)
        self.block_group_info = []
        blocks = [first_block]
        block_index = 1
        feature_dim = first_block_dim
        for width, n_block, s, act_func, use_se in zip(width_list[2:], n_block_list[1:], stride_stages[1:],
                                                       act_stages[1:], se_stages[1:]):
            self.block_group_info.append([block_index + i for i in range(n_block)])
            block_index += n_block
            for i in range(n_block):
                stride = s if i == 0 else 1
                conv = DynamicMBConvLayer(in_channel_list=val2list(feature_dim),
                                          out_channel_list=val2list(width), kernel_size_list=ks_list,
                                          expand_ratio_list=expand_ratio_list, stride=stride,
                                          act_func=act_func, use_se=use_se)
                shortcut = IdentityLayer(feature_dim, feature_dim) if stride == 1 and feature_dim == width else None
                blocks.append(ResidualBlock(conv, shortcut))
                feature_dim = width
        final_expand_layer = ConvLayer(feature_dim, final_expand_width, kernel_size=1, act_func="h_swish")
        feature_mix_layer = ConvLayer(final_expand_width, last_channel, kernel_size=1, bias=False,
                                      use_bn=False, act_func="h_swish")
        classifier = LinearLayer(last_channel, n_classes, dropout_rate=dropout_rate)
        MobileNetV3.__init__(self, first_conv, blocks, final_expand_layer, feature_mix_layer, classifier)
        self.set_bn_param(momentum=bn_param[0], eps=bn_param[1])
        self.runtime_depth = [len(idx) for idx in self.block_group_info]


class OFAMobileNetV3Supernet(Supernet):
    """OFA MobileNetV3 behind the :class:`Supernet` interface (``self.net`` is the ofa module)."""

    family = "ofa_mbv3"
    spec_type = MBv3Spec

    def __init__(self, n_classes: int = 1000, width_mult: float = 1.0, ks_list=(3, 5, 7),
                 expand_ratio_list=(3, 4, 6), depth_list=(2, 3, 4), in_channels: int = 3,
                 base_stage_width=IMAGENET_WIDTHS, first_stride: int = 2,
                 resolutions=IMAGENET_RESOLUTIONS, dropout_rate: float = 0.1) -> None:
        super().__init__()
        self._config = dict(n_classes=n_classes, width_mult=width_mult, ks_list=list(ks_list),
                            expand_ratio_list=list(expand_ratio_list), depth_list=list(depth_list),
                            in_channels=in_channels, base_stage_width=list(base_stage_width),
                            first_stride=first_stride, resolutions=list(resolutions),
                            dropout_rate=dropout_rate)
        self.net = _OFAMobileNetV3(n_classes=n_classes, dropout_rate=dropout_rate, width_mult=width_mult,
                                   ks_list=ks_list, expand_ratio_list=expand_ratio_list,
                                   depth_list=depth_list, in_channels=in_channels,
                                   base_stage_width=base_stage_width, first_stride=first_stride)
        self.resolutions = sorted(resolutions)
        self.set_active(self.largest())

    # --- Supernet interface ------------------------------------------------------------------
    def space(self) -> dict[str, Any]:
        return {"kernel": list(self.net.ks_list), "expand": list(self.net.expand_ratio_list),
                "depth": list(self.net.depth_list), "resolution": list(self.resolutions),
                "stages": N_STAGES}

    def validate(self, spec: SubnetSpec) -> None:
        if not isinstance(spec, MBv3Spec):
            raise SpecError(f"family: expected MBv3Spec, got {type(spec).__name__}")
        check_choice(spec.resolution, self.resolutions, "resolution")
        if len(spec.stages) != N_STAGES:
            raise SpecError(f"stages: expected {N_STAGES} stages, got {len(spec.stages)}")
        for si, st in enumerate(spec.stages):
            check_choice(len(st), self.net.depth_list, f"stage {si} depth")
            for bi, blk in enumerate(st):
                if len(blk) != 2:
                    raise SpecError(f"stage {si} block {bi}: expected (kernel, expand), got {blk!r}")
                check_choice(blk[0], self.net.ks_list, f"stage {si} block {bi} kernel")
                check_choice(blk[1], self.net.expand_ratio_list, f"stage {si} block {bi} expand")

    def decode_unchecked(self, spec_id: str) -> MBv3Spec:
        return MBv3Spec.decode(spec_id)

    def _uniform(self, res: int, k: int, e: int, d: int) -> MBv3Spec:
        return MBv3Spec(res, tuple(tuple((k, e) for _ in range(d)) for _ in range(N_STAGES)))

    def largest(self) -> MBv3Spec:
        n = self.net
        return self._uniform(max(self.resolutions), max(n.ks_list), max(n.expand_ratio_list), max(n.depth_list))

    def smallest(self) -> MBv3Spec:
        n = self.net
        return self._uniform(min(self.resolutions), min(n.ks_list), min(n.expand_ratio_list), min(n.depth_list))

    def random_spec(self, rng: random.Random) -> MBv3Spec:
        n = self.net
        stages = tuple(tuple((rng.choice(n.ks_list), rng.choice(n.expand_ratio_list))
                             for _ in range(rng.choice(n.depth_list))) for _ in range(N_STAGES))
        return MBv3Spec(rng.choice(self.resolutions), stages)

    def to_ofa_arch(self, spec: MBv3Spec) -> dict[str, list[int]]:
        """ofa's ``{"ks", "e", "d"}`` lists (one slot per block; skipped slots get the minimum)."""
        max_d = max(self.net.depth_list)
        ks, es = [], []
        for st in spec.stages:
            for i in range(max_d):
                k, e = st[i] if i < len(st) else (min(self.net.ks_list), min(self.net.expand_ratio_list))
                ks.append(k)
                es.append(e)
        return {"ks": ks, "e": es, "d": [len(st) for st in spec.stages]}

    def from_ofa_arch(self, arch: dict[str, list[int]], resolution: int) -> MBv3Spec:
        max_d = max(self.net.depth_list)
        stages = tuple(tuple((arch["ks"][s * max_d + i], arch["e"][s * max_d + i]) for i in range(d))
                       for s, d in enumerate(arch["d"]))
        return MBv3Spec(resolution, stages)

    def _apply_active(self, spec: SubnetSpec) -> None:
        assert isinstance(spec, MBv3Spec)
        self.net.set_active_subnet(**self.to_ofa_arch(spec))

    def _extract(self, spec: SubnetSpec) -> nn.Module:
        previous = self._active
        self._apply_active(spec)
        try:
            return self.net.get_active_subnet(preserve_weight=True)
        finally:
            if previous is not None:
                self._apply_active(previous)

    def forward(self, x):
        return self.net(x)


def fmnist_mbv3_config() -> dict[str, Any]:
    """The project's small Fashion-MNIST space: 1 input channel, narrow stages, 16-32 px."""
    return dict(n_classes=10, width_mult=1.0, ks_list=(3, 5, 7), expand_ratio_list=(3, 4, 6),
                depth_list=(2, 3, 4), in_channels=1, base_stage_width=(16, 16, 24, 32, 40, 48, 64, 192, 256),
                first_stride=2, resolutions=(16, 20, 24, 28, 32), dropout_rate=0.1)
