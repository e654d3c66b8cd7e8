#!/usr/bin/env bash
# API compatibility of the library crates against the last release tag
# (`vX.Y.Z`), with cargo-semver-checks (installed from crates.io when
# missing). None of the crates has been published or tagged yet; until one
# is, there is nothing to compare against and this says so.
set -euo pipefail
cd "$(dirname "$0")/.."

baseline="${SEMVER_BASELINE:-$(git tag --list 'v[0-9]*' --sort=-v:refname | head -n 1)}"
if [ -z "$baseline" ]; then
  echo "semver: no release tag (v*) yet, so no baseline to check the libraries' API against"
  exit 0
fi
if ! cargo semver-checks --version >/dev/null 2>&1; then
  cargo install --locked cargo-semver-checks
fi
libs=(portcullis-mask portcullis-policy portcullis-audit portcullis-pg portcullis-k8s)
args=()
for l in "${libs[@]}"; do args+=(-p "$l"); done
echo "semver: ${libs[*]} against $baseline"
cargo semver-checks check-release "${args[@]}" --baseline-rev "$baseline"
