"""Named supernet configurations ("presets") for each family, so one flag picks a space.

``legacy`` is the space of the checkpoints shipped before the 28-px presets (kept so they can be
retrained).  ``fmnist28`` is right-sized for 28-px inputs: full-resolution stem (stride 1), narrow
stages (16-96 channels) and small heads instead of ImageNet's 960/1280, and depth 1-3 per stage: at
28 px the op count dominates a frame, so elastic depth is what spans latency (largest vs smallest
about 3.4x, thread CPU time, one thread).
"""
from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "ofa_mbv3": {
        "legacy": dict(n_classes=10, width_mult=1.0, ks_list=(3, 5, 7), expand_ratio_list=(3, 4, 6),
                       depth_list=(2, 3, 4), in_channels=1,
                       base_stage_width=(16, 16, 24, 32, 40, 48, 64, 192, 256),
                       first_stride=2, resolutions=(16, 20, 24, 28, 32), dropout_rate=0.1),
        # widths: stem, first block, 5 elastic stages (strides 2, 2, 2, 1, 2), final expand, head
        "fmnist28": dict(n_classes=10, width_mult=1.0, ks_list=(3, 5), expand_ratio_list=(2, 3, 4),
                         depth_list=(1, 2, 3), in_channels=1,
                         base_stage_width=(16, 16, 24, 40, 64, 64, 96, 192, 256),
                         first_stride=1, resolutions=(20, 24, 28), dropout_rate=0.1),
    },
    "elastic_vit": {
        "legacy": dict(n_classes=10, in_channels=1, patch=4, embed_list=(48, 64, 96),
                       depth_list=(2, 3, 4, 5, 6), heads_list=(2, 3, 4), mlp_ratio_list=(2, 3, 4),
                       head_dim=16, resolutions=(16, 20, 24, 28, 32)),
        # a 3-conv stem (32, 64 channels) tokenises instead of a 4x4 patch conv (69 % after 300 largest-only
        # steps, train accuracy 71 %: it underfits, it is not a bug); 76 % with the stem.  Widths up to 96 and
        # depth 1-4 keep a step cheap enough for the ~10 epochs a ViT needs on this data
        "fmnist28": dict(n_classes=10, in_channels=1, patch=4, embed_list=(48, 64, 96),
                         depth_list=(1, 2, 3, 4), heads_list=(1, 2, 3), mlp_ratio_list=(2, 3, 4),
                         head_dim=32, resolutions=(20, 24, 28), stem_channels=32),
    },
}


def preset_config(family: str, preset: str) -> dict[str, Any]:
    """Constructor kwargs of ``family``'s supernet for ``preset``; KeyError names the known ones."""
    try:
        return dict(PRESETS[family][preset])
    except KeyError:
        known = {f: sorted(p) for f, p in PRESETS.items()}
        raise KeyError(f"no preset {preset!r} for family {family!r}; known: {known}") from None
