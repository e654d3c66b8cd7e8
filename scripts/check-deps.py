#!/usr/bin/env python3
"""Checks the dependency rules of DESIGN.md against `cargo metadata`.

- portcullis-mask and portcullis-policy are embeddable without an async
  runtime: they never depend on tokio, nor on another Portcullis crate.
- A protocol crate (portcullis-pg, portcullis-k8s) knows nothing of policy,
  masking or audit, and the library crates do not depend on each other.

Only normal and build dependencies count (dev-dependencies may use the
testkit). Prints one line per broken rule; exits 1 if any rule is broken.
"""
import json
import subprocess
import sys

LIBS = {"portcullis-mask", "portcullis-policy", "portcullis-audit", "portcullis-pg", "portcullis-k8s"}
FORBIDDEN = {lib: LIBS - {lib} for lib in LIBS}
for runtime_free in ("portcullis-mask", "portcullis-policy"):
    FORBIDDEN[runtime_free] = FORBIDDEN[runtime_free] | {"tokio"}

def main() -> int:
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        check=True, capture_output=True, text=True).stdout)
    packages = {p["name"]: p for p in meta["packages"]}
    broken = []
    for lib, forbidden in sorted(FORBIDDEN.items()):
        if lib not in packages:
            broken.append(f"{lib}: missing from the workspace")
            continue
        for dep in packages[lib]["dependencies"]:
            if dep.get("kind") in (None, "build") and dep["name"] in forbidden:
                broken.append(f"{lib} depends on {dep['name']}, which DESIGN.md rules out")
    expected = LIBS | {"portcullis", "portcullis-testkit", "portcullis-benches"}
    for name in sorted(expected - packages.keys()):
        if name not in LIBS:
            broken.append(f"{name}: missing from the workspace")
    broken += embedder_trees()
    for line in broken:
        print(line)
    print(f"dependency rules: {len(broken)} broken")
    return 1 if broken else 0

# What an embedder who takes only one library gets: its whole normal dependency
# tree (as `cargo tree` resolves it for that crate alone, with the given
# features) must not contain an async runtime, an HTTP stack or a PostgreSQL
# client.
HEAVY = {"tokio", "hyper", "tokio-postgres", "postgres", "postgres-protocol", "axum", "tokio-rustls"}
EMBEDDERS = [
    ("portcullis-mask", [], HEAVY),
    ("portcullis-policy", [], HEAVY),
    # The sans-IO core of the protocol crate, without its tokio driver (it
    # keeps postgres-protocol, a sans-IO codec, for SCRAM).
    ("portcullis-pg", ["--no-default-features"], HEAVY - {"postgres-protocol"}),
    # The audit trail's sinks are async (tokio's sync, rt and time), but its
    # PostgreSQL and syslog sinks are features: the JSON Lines trail alone
    # pulls in no PostgreSQL client and no networking.
    ("portcullis-audit", [], HEAVY - {"tokio"}),
]

def embedder_trees():
    broken = []
    for crate, flags, heavy_set in EMBEDDERS:
        out = subprocess.run(
            ["cargo", "tree", "-p", crate, "-e", "normal", "--prefix", "none",
             "--format", "{p}", *flags],
            check=True, capture_output=True, text=True).stdout
        names = {line.split()[0] for line in out.splitlines() if line.strip()}
        for heavy in sorted(heavy_set & names):
            broken.append(f"{crate} {' '.join(flags)}: its dependency tree contains {heavy}")
    return broken

if __name__ == "__main__":
    sys.exit(main())
