#!/usr/bin/env bash
# Runs every check the project has: the command README.md gives and CI runs.
# On a fresh Debian/Ubuntu machine with Rust installed it first installs what
# the tests need (PostgreSQL server and clients, asciinema) with apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s (at %dm%02ds)\n' "$*" $((SECONDS / 60)) $((SECONDS % 60)); }

# --- What the tests need from the system -----------------------------------
missing=()
have_initdb=false
if command -v initdb >/dev/null 2>&1; then have_initdb=true; fi
for d in /usr/lib/postgresql/*/bin; do
  if [ -x "$d/initdb" ]; then have_initdb=true; fi
done
$have_initdb || missing+=(postgresql)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v asciinema >/dev/null 2>&1 || missing+=(asciinema)
command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ] || missing+=(rsyslog)
command -v script >/dev/null 2>&1 || missing+=(bsdutils)
[ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null 2>&1 || missing+=(pgbouncer)
# The transparency tests' client libraries (scripts/install-clients.sh).
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# The approval page's browser test (crates/gateway-bin/tests/web.rs).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# psycopg and asyncpg (PyPI) and node-postgres (npm) for
# crates/gateway-bin/tests/clients.rs, in a project-local directory.
step "client libraries for the transparency tests"
bash scripts/install-clients.sh
export PORTCULLIS_CLIENTS_DIR
PORTCULLIS_CLIENTS_DIR="$(cd "${PORTCULLIS_CLIENTS_DIR:-${CARGO_TARGET_DIR:-target}/clients}" && pwd)"
step "playwright-core for the approval page's browser test"
bash scripts/install-web-test.sh
export PORTCULLIS_WEB_TEST_DIR
PORTCULLIS_WEB_TEST_DIR="$(cd "${PORTCULLIS_WEB_TEST_DIR:-${CARGO_TARGET_DIR:-target}/web-test}" && pwd)"

# --- The checks ---------------------------------------------------------------
step "cargo fmt"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "the load harness, smoke run (direct, PgBouncer and the gateway; fails on errors, never on slowness)"
cargo run --locked -q -p portcullis-benches --bin load -- --smoke

step "the libraries' examples, run as their docs show"
bash scripts/run-examples.sh

step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "cargo bench --no-run"
cargo bench --workspace --no-run --locked

# Instruction counts of the hot paths (masker, policy decision, DataRow
# transform) under callgrind, against benches/instructions.baseline: fails
# when one grew by more than 3 %. Reuses the bench build above; installs
# valgrind and gungraun-runner when missing. To move the baseline on purpose:
#   scripts/instructions.sh --update   (and commit benches/instructions.baseline)
step "instruction counts of the hot paths (fails on > 3 % growth)"
bash scripts/instructions.sh

# Fuzz targets (fuzz/, a cargo-fuzz package outside the workspace): built
# with the stable toolchain (libFuzzer's own main, without the coverage
# instrumentation `cargo fuzz` adds on nightly), then the Kubernetes frame
# decoder and request classifier targets each run a bounded number of
# generated inputs (unguided without that instrumentation: a smoke run that
# fails on a panic, not a search). Their seeds, and mutations of them, are
# replayed by `cargo test -p portcullis-k8s --test fuzz_replay`.
step "fuzz targets: build all; short runs of the Kubernetes frame decoder and request classifier"
cargo build --manifest-path fuzz/Cargo.toml --locked
fuzz_bin="${CARGO_TARGET_DIR:-fuzz/target}/debug"
for target in k8s_websocket k8s_classify; do
  "$fuzz_bin/$target" -runs=300000 -max_len=4096 -seed=1
done

step "dependency rules (and what an embedder of one library compiles)"
python3 scripts/check-deps.py

step "each library without default features (the sans-IO cores without tokio)"
for crate in portcullis-mask portcullis-policy portcullis-audit portcullis-pg portcullis-k8s portcullis; do
  cargo check -p "$crate" --no-default-features --locked
done

step "the declared MSRV holds for every dependency"
python3 scripts/msrv.py

step "the libraries' API against the last release tag"
bash scripts/semver.sh

step "crate READMEs are the crate docs"
python3 scripts/crate-readmes.py --check

step "every published crate packages (metadata, versions of its dependencies)"
cargo package --workspace --exclude portcullis-benches --no-verify --locked --allow-dirty >/dev/null

step "all checks passed"
