"""Print reference / kernel time ratios from a pytest-benchmark JSON file, as Markdown.

    python benchmarks/ratios.py benchmarks/kernels.json

If the file has the activation groups of test_kernels.py, a second table gives each
activation's kernel time per element and its ratio to tanh's, forward and backward.
"""

import json
import math
import re
import sys
from collections import defaultdict


def main(path):
    with open(path) as f:
        report = json.load(f)
    medians = defaultdict(dict)
    for bench in report["benchmarks"]:
        impl = bench["params"]["impl"]
        medians[bench["group"]][impl] = bench["stats"]["median"]
    print("| benchmark (float32) | kernel median (us) | reference median (us) | reference / kernel |")
    print("|---|---:|---:|---:|")
    for group, times in medians.items():
        if {"kernel", "reference"} <= set(times):
            kernel, ref = times["kernel"] * 1e6, times["reference"] * 1e6
            print(f"| {group} | {kernel:.1f} | {ref:.1f} | {ref / kernel:.1f}x |")
    activation_table(medians)
    info = report.get("machine_info", {})
    print()
    print(f"machine: {info.get('cpu', {}).get('brand_raw', '?')}, "
          f"python {info.get('python_version', '?')}; run at {report.get('datetime', '?')}")


def activation_table(medians):
    """Kernel medians of the groups "activation <direction> <name> (n, m)": ns per element and
    the ratio to tanh in the same direction."""
    times = defaultdict(dict)  # name -> direction -> ns per element
    for group, by_impl in medians.items():
        match = re.fullmatch(r"activation (forward|backward) (\w+) \((\d+), (\d+)\)", group)
        if match and "kernel" in by_impl:
            direction, name, n, m = match.groups()
            times[name][direction] = by_impl["kernel"] * 1e9 / (int(n) * int(m))
    tanh = times.get("tanh", {})
    if not {"forward", "backward"} <= set(tanh):
        return
    print()
    print("| activation (float32 kernels) | forward (ns/element) | / tanh "
          "| backward (ns/element) | / tanh |")
    print("|---|---:|---:|---:|---:|")
    for name, by_direction in times.items():
        cells = []
        for direction in ("forward", "backward"):
            value = by_direction.get(direction, math.nan)
            cells += [f"{value:.3f}", f"{value / tanh[direction]:.2f}x"]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/kernels.json")
