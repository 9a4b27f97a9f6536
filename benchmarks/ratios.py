"""Print reference / kernel time ratios from a pytest-benchmark JSON file, as Markdown.

    python benchmarks/ratios.py benchmarks/kernels.json
"""

import json
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
    info = report.get("machine_info", {})
    print()
    print(f"machine: {info.get('cpu', {}).get('brand_raw', '?')}, "
          f"python {info.get('python_version', '?')}; run at {report.get('datetime', '?')}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/kernels.json")
