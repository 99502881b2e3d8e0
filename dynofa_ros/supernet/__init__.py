"""Weight-shared supernets (OFA MobileNetV3, elastic ViT), sub-network specs and checkpoints."""
from .base import SpecError, SubnetSpec, Supernet
from .checkpoint import (CheckpointError, build_supernet, load_official_ofa_mbv3, load_supernet,
                         save_supernet)

__all__ = ["SpecError", "SubnetSpec", "Supernet", "CheckpointError", "build_supernet",
           "load_official_ofa_mbv3", "load_supernet", "save_supernet"]
