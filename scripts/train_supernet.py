#!/usr/bin/env python3
"""Train a Fashion-MNIST supernet (resumable: rerun the same command after an interruption), e.g.

    python3 scripts/train_supernet.py --family ofa_mbv3 --preset fmnist28 --epochs 3 --teacher-epochs 0.5 \
        --out out/train/fmnist28_ofa_mbv3.pt
    python3 scripts/train_supernet.py --family elastic_vit --preset fmnist28 --epochs 3 \
        --out out/train/fmnist28_elastic_vit.pt

``--preset legacy`` is the space of the checkpoints shipped in models/ (see supernet/configs.py).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynofa_ros.supernet.training import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
