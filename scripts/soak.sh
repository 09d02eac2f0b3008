#!/usr/bin/env bash
# The exactly-once crash test, longer and repeated, to run by hand:
#   scripts/soak.sh [ROUNDS] [KILLS]      (default 5 rounds of 30 kills)
# Each round kills the Kafka → Kafka + Redis fraud job KILLS times with SIGKILL at random
# moments (a new seed per round), restarts it with --restore latest at 1-3 workers, and checks
# the topics and Redis keys against a run that never failed. Needs what scripts/test.sh
# installs (kcat, redis-server, the noida-db broker).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
kills="${2:-30}"
tools="${WEIR_TOOLS_DIR:-$HOME/.cache/weir-tools}"
WEIR_NOIDA="${WEIR_NOIDA:-$("$tools/venv/bin/python" -c 'from importlib.resources import files; print(files("noida_db").joinpath("noida-db"))')}"
export WEIR_NOIDA
for round in $(seq 1 "$rounds"); do
  seed=$((1000 + round))
  echo "==> round $round of $rounds: $kills kills, seed $seed"
  WEIR_SOAK_KILLS="$kills" WEIR_SOAK_SEED="$seed" \
    cargo test --quiet -p weir-cluster --test exactly_once killed_ten_times -- --nocapture
done
echo "soak passed: $rounds rounds of $kills kills"
