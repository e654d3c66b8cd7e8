#!/usr/bin/env python3
"""The MSRV the workspace declares (`rust-version` in Cargo.toml) must hold.

No toolchain but the machine's one can be fetched here, so the compiler is not
run at the MSRV. What is checked instead, each able to fail:

- every package in the locked dependency graph (normal, build and dev) that
  declares a `rust-version` declares one no newer than ours: a dependency
  bump that raises the floor fails here;
- every workspace crate inherits the workspace's `rust-version`;
- clippy's `incompatible_msrv` lint (on by default; the workspace's clippy
  run reads the MSRV from `rust-version`) flags standard-library APIs
  stabilised after it.
"""
import json
import subprocess
import sys


def version(v):
    return tuple(int(x) for x in v.split(".")) + (0,) * (3 - len(v.split(".")))


def main():
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked"],
        check=True, capture_output=True, text=True).stdout)
    members = set(meta["workspace_members"])
    ours = {p["rust_version"] for p in meta["packages"] if p["id"] in members}
    problems = []
    if len(ours) != 1 or None in ours:
        problems.append(f"workspace crates declare different rust-versions: {sorted(map(str, ours))}")
    msrv = max((v for v in ours if v), key=version, default=None)
    if msrv is None:
        print("msrv: no rust-version declared")
        return 1
    newest = ("", "0")
    for p in meta["packages"]:
        rv = p.get("rust_version")
        if not rv or p["id"] in members:
            continue
        if version(rv) > version(newest[1]):
            newest = (f"{p['name']} {p['version']}", rv)
        if version(rv) > version(msrv):
            problems.append(f"{p['name']} {p['version']} needs Rust {rv}, above our MSRV {msrv}")
    for line in problems:
        print(line)
    print(f"msrv {msrv}: highest dependency floor {newest[1]} ({newest[0]}); {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
