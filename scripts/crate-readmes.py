#!/usr/bin/env python3
"""Each crate's README.md is its crate documentation (the `//!` lines that open
its lib.rs or main.rs), so crates.io and docs.rs say the same thing.

    python3 scripts/crate-readmes.py          # rewrite the READMEs
    python3 scripts/crate-readmes.py --check  # exit 1 if any is stale (CI)

Rustdoc-only syntax is translated for plain Markdown: intra-doc links
([`Type`]) become code spans, and doc-test attributes on code fences
(```no_run, ```ignore, …) become ```rust.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRATES = ["mask", "policy", "audit", "protocol-pg", "protocol-k8s", "gateway-bin", "testkit"]
FENCE_ATTRS = re.compile(r"^```(no_run|ignore|should_panic|compile_fail|edition\d+|rust,[a-z_,]+)\s*$")
INTRA_LINK = re.compile(r"\[`([^`]+)`\](?!\()")
HIDDEN_LINE = re.compile(r"^# |^#$")


def crate_doc(crate_dir: pathlib.Path) -> str:
    for name in ("src/lib.rs", "src/main.rs"):
        src = crate_dir / name
        if src.exists():
            break
    else:
        raise SystemExit(f"{crate_dir}: no lib.rs or main.rs")
    lines = []
    for line in src.read_text().splitlines():
        if line.startswith("//!"):
            lines.append(line[4:] if line.startswith("//! ") else line[3:])
        elif lines or line.strip() == "":
            if lines:
                break
        else:
            break
    out, in_code, rust = [], False, False
    for line in lines:
        fence = line.strip()
        if fence.startswith("```"):
            if not in_code:
                in_code = True
                # rustdoc reads a bare fence, or one with test attributes, as Rust.
                rust = fence in ("```", "```rust") or bool(FENCE_ATTRS.match(fence))
                out.append("```rust" if rust else line)
            else:
                in_code = False
                out.append("```")
            continue
        if in_code and rust and HIDDEN_LINE.match(line.strip()):
            continue  # rustdoc's hidden lines
        out.append(line if in_code else INTRA_LINK.sub(r"`\1`", line))
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    check = "--check" in sys.argv
    stale = []
    for c in CRATES:
        d = ROOT / "crates" / c
        want = crate_doc(d)
        readme = d / "README.md"
        have = readme.read_text() if readme.exists() else None
        if have != want:
            if check:
                stale.append(str(readme.relative_to(ROOT)))
            else:
                readme.write_text(want)
                print(f"wrote {readme.relative_to(ROOT)}")
    if stale:
        print("stale (run python3 scripts/crate-readmes.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
