#!/usr/bin/env bash
# Rebuild a default 28-px table from a trained supernet and measure it against the baselines:
#
#   bash scripts/build_fmnist28_table.sh [CHECKPOINT]          MBv3 (default models/fmnist28_ofa_mbv3.pt)
#   bash scripts/build_fmnist28_table.sh --vit [CHECKPOINT]    elastic ViT (default models/fmnist28_elastic_vit.pt)
#
# 1. dynofa search: a fresh accuracy predictor for these weights, every winner re-measured (BN
#    recalibrated, 10k test images). The MBv3 is judged in int8 (the form a CPU serves) with the shipped
#    int8 per-layer LUT; the ViT in eager form with its own LUT (9 fixed + 81 layer entries, profiled
#    here on one thread when missing).
# 2. build_variant_tables: measured @frozen and @int8 rows for each kept point.
# 3. bench_domination: every form beside the static baselines (out/baselines, from
#    scripts/train_baselines.py), interleaved, plus the front plot in docs/.
# Run from a shell where `source ws/env.sh` was done. The MBv3 takes about 25 min on one free core.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${1:-} == --vit ]]; then
    shift
    NAME=fmnist28_elastic_vit
    SEARCH=(--lut config/lut/fmnist28_elastic_vit_cpu@1t)
    TAG=fmnist28_vit
    RESULT=domination_vit
else
    NAME=fmnist28_ofa_mbv3
    SEARCH=(--lut config/lut/fmnist28_ofa_mbv3_cpu@1t_int8 --form int8)
    TAG=fmnist28
    RESULT=domination
fi
CK=${1:-models/$NAME.pt}
TABLE=config/operating_points/$NAME.yaml
PREDICTOR=models/${NAME}_acc_predictor.pt
if [[ "$CK" != models/$NAME.pt ]]; then
    cp "$CK" "models/$NAME.pt"
    rm -f "$PREDICTOR"   # new weights: the predictor is fitted again
fi
python3 -m dynofa_ros.cli search --checkpoint "models/$NAME.pt" --out "$TABLE" \
    --report "bench/results/search_${TAG}_cpu.json" --predictor "$PREDICTOR" \
    "${SEARCH[@]}" --clock cpu --threads 1 --n-limits 12
python3 scripts/build_variant_tables.py "$TABLE"
baselines=()
for b in plain_cnn mobilenet_v3_small; do
    [[ -f out/baselines/$b.pt ]] && baselines+=(--baseline "$b=out/baselines/$b.pt")
done
python3 bench/bench_domination.py --table "$TABLE" "${baselines[@]}" --rounds 5 --runs 20 \
    --plot "docs/front_${TAG}_cpu.png" --out "bench/results/$RESULT"
