#!/usr/bin/env bash
# Instruction-count guard of the hot paths: runs the gungraun bench
# `benches/benches/instructions.rs` (the masker on clean and dense text,
# whole-buffer and streamed; `Policy::evaluate` on the pgbench select and the
# 3-table join; the PostgreSQL session's DataRow transform) under Valgrind's
# callgrind, and compares each benchmark's instruction count (callgrind's Ir)
# with the committed baseline `benches/instructions.baseline`. Instruction
# counts, not time: the same on every run of the same build on the same kind
# of machine, whatever the load. Fails (exit 1) when a count grew by more
# than 3 % or a benchmark has no baseline, and prints the table either way.
#
#   scripts/instructions.sh            # check against the baseline (CI)
#   scripts/instructions.sh --update   # move the baseline on purpose, then commit
#                                      # benches/instructions.baseline with the change
#
# Needs valgrind (installed with apt-get when missing) and gungraun-runner of
# the gungraun crate's version (installed with cargo when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends valgrind
fi
version=$(sed -n 's/^gungraun = { version = "=\([0-9.]*\)".*/\1/p' Cargo.toml)
if [ -z "$version" ]; then
  echo "instructions.sh: no pinned gungraun version in Cargo.toml" >&2
  exit 2
fi
if [ "$(gungraun-runner --version 2>/dev/null | awk '{print $2}')" != "$version" ]; then
  cargo install gungraun-runner --version "$version" --locked
fi

# gungraun writes callgrind's output per benchmark under this directory; clear
# it so that only this run's benchmarks are compared.
dir=target/gungraun/portcullis-benches/instructions
if [ -n "${CARGO_TARGET_DIR:-}" ]; then dir="$CARGO_TARGET_DIR/gungraun/portcullis-benches/instructions"; fi
rm -rf "$dir"
cargo bench -p portcullis-benches --locked --bench instructions
python3 scripts/instructions.py benches/instructions.baseline "$dir" "$@"
