#!/usr/bin/env bash
# Instruction-count guard of the masker's hot paths (clean, dense, streaming):
# runs the gungraun bench `benches/benches/mask_instructions.rs` under
# Valgrind's callgrind and compares each benchmark's instruction count (Ir)
# with the committed baseline `benches/instructions.baseline`. Fails (exit 1)
# when a count grew by more than 3 % or a benchmark has no baseline, and
# prints the diff either way.
#
#   scripts/instructions.sh            # check against the baseline
#   scripts/instructions.sh --update   # move the baseline on purpose (commit it)
#
# Needs valgrind and gungraun-runner of the gungraun crate's version; installs
# the runner with cargo if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^gungraun = { version = "=\([0-9.]*\)".*/\1/p' Cargo.toml)
if ! command -v valgrind >/dev/null 2>&1; then
  echo "instructions.sh: valgrind is not installed (apt-get install valgrind)" >&2
  exit 2
fi
if [ "$(gungraun-runner --version 2>/dev/null | awk '{print $2}')" != "$version" ]; then
  cargo install gungraun-runner --version "$version" --locked
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
cargo bench -p portcullis-benches --locked --bench mask_instructions -- \
  --output-format=json >"$out"
python3 scripts/instructions.py benches/instructions.baseline "$out" "$@"
