#!/usr/bin/env bash
# Rebuild the default 28-px MBv3 table from a trained supernet and measure it against the baselines:
#
#   bash scripts/build_fmnist28_table.sh [CHECKPOINT]        (default models/fmnist28_ofa_mbv3.pt)
#
# 1. dynofa search, judged in int8 (the form a CPU serves): a fresh accuracy predictor for these weights,
#    the shipped int8 per-layer LUT, every winner re-measured (BN recalibrated, 10k test images).
# 2. build_variant_tables: measured @frozen and @int8 rows for each kept point.
# 3. bench_domination: every form beside the static baselines (out/baselines, from
#    scripts/train_baselines.py), interleaved, plus the front plot in docs/.
# Run from a shell where `source ws/env.sh` was done. Takes about 25 min on one free core.
set -euo pipefail
cd "$(dirname "$0")/.."
CK=${1:-models/fmnist28_ofa_mbv3.pt}
TABLE=config/operating_points/fmnist28_ofa_mbv3.yaml
PREDICTOR=models/fmnist28_ofa_mbv3_acc_predictor.pt
if [[ "$CK" != models/fmnist28_ofa_mbv3.pt ]]; then
    cp "$CK" models/fmnist28_ofa_mbv3.pt
    rm -f "$PREDICTOR"   # new weights: the predictor is fitted again
fi
python3 -m dynofa_ros.cli search --checkpoint models/fmnist28_ofa_mbv3.pt --out "$TABLE" \
    --report bench/results/search_fmnist28_cpu.json --predictor "$PREDICTOR" \
    --lut config/lut/fmnist28_ofa_mbv3_cpu@1t_int8 --form int8 --clock cpu --threads 1 --n-limits 12
python3 scripts/build_variant_tables.py "$TABLE"
baselines=()
for b in plain_cnn mobilenet_v3_small; do
    [[ -f out/baselines/$b.pt ]] && baselines+=(--baseline "$b=out/baselines/$b.pt")
done
python3 bench/bench_domination.py --table "$TABLE" "${baselines[@]}" --rounds 5 --runs 20 \
    --plot docs/front_fmnist28_cpu.png
