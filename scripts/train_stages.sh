# Sourced by scripts/train_fmnist28_*.sh: `stage FAMILY NAME ARGS...` runs one training schedule of a
# multi-stage recipe into $OUT/NAME.pt (log $OUT/NAME.log), unless that checkpoint is finished. A partial
# checkpoint (an interrupted stage, "partial" in its metadata) is resumed by the same command; one that
# does not load (another architecture) stops the recipe with one line, so it is never silently replaced.
# Sourcing it also sets the recipe up: the repository root as working directory, THREADS from the recipe's
# first argument (a file sourced without arguments sees the caller's; default one per core), OUT=out/train.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
THREADS=${1:-$(nproc)}
OUT=out/train
mkdir -p "$OUT"
stage_status() {  # absent | partial | finished
    [[ -f $1 ]] || { echo absent; return; }
    python3 -c 'import sys
from dynofa_ros.supernet import load_supernet
try:
    meta = load_supernet(sys.argv[1])[1]
except Exception as exc:
    sys.exit(f"FATAL: {exc}; move it away to train this stage again")
print("partial" if meta.get("partial") else "finished")' "$1"
}
stage() {
    local family=$1 name=$2 status; shift 2
    status=$(stage_status "$OUT/$name.pt") || exit 1
    if [[ $status == finished ]]; then
        echo "[train] $OUT/$name.pt is finished: stage skipped"
        return
    fi
    python3 scripts/train_supernet.py --family "$family" --preset fmnist28 --threads "$THREADS" \
        --out "$OUT/$name.pt" "$@" 2>&1 | tee -a "$OUT/$name.log"
}
