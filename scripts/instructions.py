"""Compares gungraun's JSON summaries (one object per line) with a baseline.

Usage: instructions.py BASELINE SUMMARY_JSONL [--update]

The baseline is text, one `name instructions` pair per line. A benchmark
whose instruction count (callgrind's Ir) grew by more than LIMIT percent, or
that has no baseline, fails the check; `--update` writes the new counts
instead.
"""

import json
import sys

LIMIT = 3.0


def find_ir(node):
    """The first callgrind `Ir` count in a summary object (schema-agnostic:
    the Ir metric appears as a key `Ir` whose value holds the new count)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ir":
                count = new_value(value)
                if count is not None:
                    return count
            found = find_ir(value)
            if found is not None:
                return found
    elif isinstance(node, list):
        for value in node:
            found = find_ir(value)
            if found is not None:
                return found
    return None


def new_value(value):
    """The current run's count from an `Ir` entry (a number, or a metrics
    diff whose `metrics` holds `Left` = new, or `Both` = [new, old])."""
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, dict):
        metrics = value.get("metrics", value)
        for key in ("Left", "Both"):
            if key in metrics:
                inner = metrics[key]
                if isinstance(inner, list):
                    inner = inner[0]
                return new_value(inner)
        if "Int" in metrics:
            return int(metrics["Int"])
        if "Float" in metrics:
            return int(metrics["Float"])
    return None


def name_of(summary):
    parts = [summary.get("function_name") or "", summary.get("id") or ""]
    name = ".".join(p for p in parts if p)
    return name or summary.get("benchmark_file", "?")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    update = "--update" in sys.argv
    baseline_path, summary_path = args
    counts = {}
    with open(summary_path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            summary = json.loads(line)
            ir = find_ir(summary)
            if ir is None:
                sys.exit(f"no instruction count in the summary of {name_of(summary)}")
            counts[name_of(summary)] = ir
    if not counts:
        sys.exit("no benchmark summaries in the bench output")
    if update:
        with open(baseline_path, "w", encoding="utf-8") as f:
            f.write("# Instruction counts (callgrind Ir) of benches/benches/instructions.rs;\n")
            f.write("# checked by scripts/instructions.sh, moved by scripts/instructions.sh --update.\n")
            for name in sorted(counts):
                f.write(f"{name} {counts[name]}\n")
        print(f"wrote {len(counts)} counts to {baseline_path}")
        return
    baseline = {}
    try:
        with open(baseline_path, encoding="utf-8") as f:
            for line in f:
                if line.strip() and not line.startswith("#"):
                    name, count = line.split()
                    baseline[name] = int(count)
    except FileNotFoundError:
        pass
    failed = False
    print(f"{'benchmark':<24} {'baseline':>14} {'now':>14} {'change':>9}")
    for name in sorted(counts):
        now = counts[name]
        old = baseline.get(name)
        if old is None:
            print(f"{name:<24} {'-':>14} {now:>14,} {'new':>9}  FAIL: no baseline")
            failed = True
            continue
        change = 100.0 * (now - old) / old
        verdict = ""
        if change > LIMIT:
            verdict = f"  FAIL: more than {LIMIT:g} % more instructions"
            failed = True
        print(f"{name:<24} {old:>14,} {now:>14,} {change:>+8.2f}%{verdict}")
    for name in sorted(set(baseline) - set(counts)):
        print(f"{name:<24} {baseline[name]:>14,} {'-':>14} {'gone':>9}")
    if failed:
        print("instruction counts grew; if on purpose: scripts/instructions.sh --update")
        sys.exit(1)


if __name__ == "__main__":
    main()
