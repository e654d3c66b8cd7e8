"""Compares the instruction counts of the gungraun bench `instructions` with
a committed baseline.

Usage: instructions.py BASELINE GUNGRAUN_DIR [--update]

Reads callgrind's own output files, which gungraun writes per benchmark as
GUNGRAUN_DIR/<group>/<function>.<id>/callgrind.<function>.<id>.out, and takes
the `Ir` (instructions executed) figure of each file's `summary:` line (only
the benchmark function is collected, the setup is not). The baseline is text,
one `<group>/<function>.<id> instructions` pair per line. A benchmark whose
count grew by more than LIMIT percent, or that has no baseline, fails the
check; `--update` writes the new counts instead.
"""

import pathlib
import platform
import subprocess
import sys

LIMIT = 3.0


def instructions(path):
    """The Ir total of a callgrind output file."""
    events = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("summary:") and events:
                values = line.split()[1:]
                return int(values[events.index("Ir")])
    sys.exit(f"no instruction count (Ir summary) in {path}")


def machine():
    """What the counts depend on besides our code: the compiler and the CPU
    features the SIMD searchers pick at run time."""
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    wanted = {"sse4_2", "avx", "avx2", "bmi2", "avx512f", "avx512bw", "avx512vl"}
                    flags = ",".join(sorted(wanted & set(line.split(":", 1)[1].split())))
                    break
    except OSError:
        pass
    return f"{rustc}; {platform.machine()} {flags}"


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    update = "--update" in sys.argv
    baseline_path, root = args[0], pathlib.Path(args[1])
    counts = {}
    for out in sorted(root.glob("*/*/callgrind.*.out")):
        name = f"{out.parent.parent.name}/{out.parent.name}"
        counts[name] = instructions(out)
    if not counts:
        sys.exit(f"no callgrind output under {root}")
    if update:
        with open(baseline_path, "w", encoding="utf-8") as f:
            f.write("# Instruction counts (callgrind Ir) of benches/benches/instructions.rs;\n")
            f.write("# checked by scripts/instructions.sh, moved by scripts/instructions.sh --update.\n")
            f.write(f"# machine: {machine()}\n")
            for name in sorted(counts):
                f.write(f"{name} {counts[name]}\n")
        print(f"wrote {len(counts)} counts to {baseline_path}")
        return
    baseline = {}
    recorded = None
    try:
        with open(baseline_path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("# machine: "):
                    recorded = line[len("# machine: "):].strip()
                if line.strip() and not line.startswith("#"):
                    name, count = line.split()
                    baseline[name] = int(count)
    except FileNotFoundError:
        pass
    failed = False
    width = max(len(n) for n in set(counts) | set(baseline))
    print(f"{'benchmark':<{width}} {'baseline':>14} {'now':>14} {'change':>9}")
    for name in sorted(counts):
        now = counts[name]
        old = baseline.get(name)
        if old is None:
            print(f"{name:<{width}} {'-':>14} {now:>14,} {'new':>9}  FAIL: no baseline")
            failed = True
            continue
        change = 100.0 * (now - old) / old
        verdict = ""
        if change > LIMIT:
            verdict = f"  FAIL: more than {LIMIT:g} % more instructions"
            failed = True
        print(f"{name:<{width}} {old:>14,} {now:>14,} {change:>+8.2f}%{verdict}")
    for name in sorted(set(baseline) - set(counts)):
        print(f"{name:<{width}} {baseline[name]:>14,} {'-':>14} {'gone':>9}")
    here = machine()
    if failed and recorded != here:
        # Another compiler or CPU features give other counts: compare only
        # like with like. Say so loudly; the table above is still the figure.
        print(f"WARNING: the baseline was taken on \"{recorded}\", this is \"{here}\": "
              "not compared (run scripts/instructions.sh --update on this kind of machine)")
        return
    if failed:
        print("instruction counts grew; if on purpose: scripts/instructions.sh --update, commit the baseline")
        sys.exit(1)


if __name__ == "__main__":
    main()
