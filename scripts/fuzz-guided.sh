#!/usr/bin/env bash
# Coverage-guided fuzzing on the stable toolchain (what `cargo fuzz` does on
# nightly): builds fuzz/ with libFuzzer's SanitizerCoverage instrumentation
# into target/fuzz-cov, then runs one target for a time, its corpus in a
# scratch folder, seeded from testdata/fuzz/<target>/ when there is one.
#
#   scripts/fuzz-guided.sh <target> [seconds] [corpus-dir]
#
# The libFuzzer log shows `cov:` and `ft:` growing (guidance at work) and
# ends with -print_final_stats. A crash leaves its input as
# <corpus-dir>/../crash-*; copy it (minimised with -minimize_crash=1) into
# testdata/fuzz/<target>/ so that `cargo test` replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?target: pg_codec pg_session policy mask k8s_websocket k8s_classify}
secs=${2:-1800}
corpus=${3:-/tmp/portcullis-fuzz/$target}
export CARGO_TARGET_DIR="$PWD/target/fuzz-cov"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cdebug-assertions -Coverflow-checks"
host=$(rustc -vV | sed -n 's/^host: //p')
# --target keeps the instrumentation off build scripts and proc macros.
cargo build --manifest-path fuzz/Cargo.toml --locked --release --target "$host"
mkdir -p "$corpus"
seeds=()
if [ -d "testdata/fuzz/$target" ]; then seeds=("testdata/fuzz/$target"); fi
# The masker's first input builds its whole catalogue (slow when instrumented).
timeout=20
if [ "$target" = mask ]; then timeout=300; fi
exec nice -n 19 "$CARGO_TARGET_DIR/$host/release/$target" \
  -max_total_time="$secs" -print_final_stats=1 -timeout="$timeout" -rss_limit_mb=2048 \
  -artifact_prefix="$(dirname "$corpus")/$target-" "$corpus" "${seeds[@]}"
