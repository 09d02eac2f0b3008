#!/usr/bin/env bash
# The whole test suite, as CI runs it. Installs what the tests need on a fresh machine
# (skipping what is already there), then: formatting, clippy with warnings as errors, every
# unit, integration, end-to-end and doc test, and the README's run command.
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

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
cargo test --workspace --locked --no-fail-fast

step "README run command (embedded default, no servers)"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
( cd "$out" && cargo run --quiet --locked --manifest-path "$OLDPWD/Cargo.toml" -p weir-cluster -- \
    run "$OLDPWD/jobs/examples/payments-per-minute.yaml" --progress never )
for f in payments_per_user_minute suspicious_users late_payments payments_dead_letter; do
  test -s "$out/out/$f.jsonl" || { echo "expected non-empty out/$f.jsonl" >&2; exit 1; }
done
echo "all checks passed"
