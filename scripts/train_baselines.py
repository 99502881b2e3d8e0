#!/usr/bin/env python3
"""Train the static Fashion-MNIST baselines under a CPU budget and measure them, e.g.

    nice -n 15 python3 scripts/train_baselines.py --cpu-seconds 900
    python3 scripts/train_baselines.py --cpu-seconds 900 --skip-train \
        --supernet ofa_mbv3=out/train/fmnist28_ofa_mbv3.pt      # re-measure beside a supernet's ends
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynofa_ros.offline.baselines_train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
