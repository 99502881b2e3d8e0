#!/usr/bin/env bash
# Reproduce the 28-px elastic ViT supernet (models/fmnist28_elastic_vit.pt) in one command:
#
#   bash scripts/train_fmnist28_vit.sh [THREADS]      (default: one torch thread per core, nproc)
#
# Two schedules (AdamW, cosine LR), the second a warm restart from the first:
#   1. the largest sub-network alone (the first phase of progressive shrinking): a ViT fits this data
#      slowly, and the small ones should distil from a teacher worth following;
#   2. the sandwich rule (largest on labels, smallest + one random sub-network distilled from it in
#      place) at a lower peak LR, so sharing the weights costs the largest little.
# Run once as it stands on this 2-core machine (2 threads, 2026-12-03): stage 1 1,099 s wall / 2,040 CPU-s
# (largest 89.64 %), stage 2 357 s wall / 708 CPU-s; in all about 24 min wall and 2,758 CPU-s, ending at
# largest 89.42 % / smallest 81.50 % on the 10k test set (logs: bench/results/train_elastic_vit_fmnist28*.log).
# Every stage is resumable (rerun the same command after an interruption); a finished one is skipped.
set -euo pipefail
source "$(dirname "$0")/train_stages.sh"
stage elastic_vit fmnist28_elastic_vit_s1 --epochs 12 --teacher-epochs 12 --lr 2e-3 --log-every 100
stage elastic_vit fmnist28_elastic_vit --epochs 3 --lr 5e-4 --random 1 --log-every 100 \
    --init "$OUT/fmnist28_elastic_vit_s1.pt"
echo "[train_fmnist28_vit] done: $OUT/fmnist28_elastic_vit.pt; build its table with"
echo "  bash scripts/build_fmnist28_table.sh --vit $OUT/fmnist28_elastic_vit.pt"
