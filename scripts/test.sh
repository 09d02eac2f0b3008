#!/usr/bin/env bash
# The whole test suite, as CI runs it. Installs what the tests need on a fresh machine
# (skipping what is already there), then: formatting, clippy with warnings as errors, rustdoc
# (broken links fail), every unit, integration, end-to-end and doc test, and the README's run
# command.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi
if command -v rustup >/dev/null 2>&1; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
  done
fi
cargo --version

step "test tools (installed once, reused)"
# Tools outside the clone, so CI runs on this machine reuse them.
tools="${WEIR_TOOLS_DIR:-$HOME/.cache/weir-tools}"
mkdir -p "$tools"
apt_install() {
  if [ "$(id -u)" = 0 ]; then
    { apt-get install -y -qq "$@" >/dev/null 2>&1; } || { apt-get update -qq >/dev/null && apt-get install -y -qq "$@" >/dev/null; }
  else
    sudo apt-get install -y -qq "$@" >/dev/null || { sudo apt-get update -qq >/dev/null && sudo apt-get install -y -qq "$@" >/dev/null; }
  fi
}
# kcat: an independent Kafka client the tests check weir against.
command -v kcat >/dev/null 2>&1 || { echo "installing kcat (Debian)"; apt_install kcat; }
# redis-server (started by the tests on free loopback ports) and redis-cli (reads back).
{ command -v redis-server && command -v redis-cli; } >/dev/null 2>&1 || { echo "installing redis-server (Debian)"; apt_install redis-server redis-tools; }
# Prometheus and promtool: every /metrics is checked with promtool, and a real Prometheus server
# scrapes a job through the coordinator's service discovery.
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || { echo "installing prometheus (Debian)"; apt_install prometheus; }
# pgrep and kill (the cluster tests kill job processes).
{ command -v pgrep && command -v kill; } >/dev/null 2>&1 || { echo "installing procps (Debian)"; apt_install procps; }
# noida-db: a Kafka-protocol broker (PyPI), started by the tests on free loopback ports.
if [ ! -x "$tools/venv/bin/noida-db" ]; then
  echo "installing noida-db (PyPI) into $tools/venv"
  command -v python3 >/dev/null 2>&1 || apt_install python3
  python3 -c 'import ensurepip' >/dev/null 2>&1 || apt_install python3-venv
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "noida-db==0.2.3"
fi
# PyIceberg (with pyarrow and SQLAlchemy for the SQLite catalog): the independent reader of the
# Iceberg tables weir writes.
if ! "$tools/venv/bin/python" -c 'import pyiceberg, pyarrow, sqlalchemy' >/dev/null 2>&1; then
  echo "installing pyiceberg (PyPI) into $tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "pyiceberg[sql-sqlite,pyarrow]==0.12.*"
fi
# moto's S3 server: the s3:// checkpoint store is tested against it.
if [ ! -x "$tools/venv/bin/moto_server" ]; then
  echo "installing moto[server] (PyPI) into $tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==5.1.*"
fi
export WEIR_MOTO_SERVER="$tools/venv/bin/moto_server"
export WEIR_PYTHON="$tools/venv/bin/python"
# The server itself, not the Python launcher: the launcher answers Ctrl-C by killing the
# server before it writes its data, and the tests restart brokers.
WEIR_NOIDA="$("$tools/venv/bin/python" -c 'from importlib.resources import files; print(files("noida_db").joinpath("noida-db"))')"
chmod +x "$WEIR_NOIDA"
export WEIR_NOIDA
echo "kcat: $(command -v kcat); redis: $(command -v redis-server); prometheus: $(command -v prometheus); broker: $WEIR_NOIDA; python: $WEIR_PYTHON"

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "docs (broken intra-doc links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "tests"
cargo test --workspace --locked --no-fail-fast

step "the hdfs:// checkpoint store (feature hdfs: builds hdfs-native; no NameNode can run here)"
cargo clippy -p weir-engine --features hdfs --all-targets --locked -- -D warnings
cargo test -p weir-engine --features hdfs --locked --lib store

step "the s3:// checkpoint store (feature s3), against moto's S3 server on loopback"
cargo clippy -p weir-engine -p weir-cluster --features weir-engine/s3 --all-targets --locked -- -D warnings
cargo test -p weir-engine --features s3 --locked --lib store
cargo test -p weir-cluster --features s3 --locked --test checkpoints checkpoints_in_s3

step "README run command (embedded default, no servers)"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
( cd "$out" && cargo run --quiet --locked --manifest-path "$OLDPWD/Cargo.toml" -p weir-cluster -- \
    run "$OLDPWD/jobs/examples/payments-per-minute.yaml" --progress never )
for f in payments_per_user_minute suspicious_users late_payments payments_dead_letter; do
  test -s "$out/out/$f.jsonl" || { echo "expected non-empty out/$f.jsonl" >&2; exit 1; }
done
echo "all checks passed"
