#!/usr/bin/env python3
"""Train a shipped Fashion-MNIST supernet, e.g.

    python3 scripts/train_supernet.py --family ofa_mbv3 --epochs 1.0
    python3 scripts/train_supernet.py --family elastic_vit --epochs 3.0
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynofa_ros.supernet.training import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
