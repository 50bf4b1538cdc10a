"""Peak memory of loading a large local JSONL file of preference pairs (`load_preference_data`).

    python benchmarks/large_file_load.py [--megabytes 1000] [--rows 200000] [--baseline] [--json PATH]

Writes a file of `--rows` standard-format pairs (about `--megabytes` MB) into a temporary directory, then loads it
in a fresh process and prints that process's peak RSS (`ru_maxrss`) next to the file size, and the same for a process
that only imports what the load imports (the baseline). `--baseline` also runs the pre-batching approach (every row
as a Python dict, then `datasets.Dataset.from_list`) for comparison.

The last line is machine-readable: `peak_rss_over_file: X` (the load's peak RSS minus the import baseline, divided
by the file size). `--json PATH` also writes the result (command, commit, machine, versions, every load's rows,
seconds and peak RSS) there; the results the docs quote are stored in docs/benchmarks/.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOAD = """
import resource, sys, time
from aligntune.data import load_preference_data
started = time.perf_counter()
data = load_preference_data(sys.argv[1])
print(len(data.dataset), time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
FROM_LIST = """
import json, resource, sys, time
import datasets
from aligntune.data import load_preference_data
started = time.perf_counter()
rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
dataset = datasets.Dataset.from_list(rows)
print(len(dataset), time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
IMPORTS = """
import resource
import datasets, pyarrow
from aligntune.data import load_preference_data
print(0, 0.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def write_pairs(path: Path, rows: int, row_bytes: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    words = [f"w{index}" for index in range(5000)]

    def text(n: int) -> str:
        out, size = [], 0
        while size < n:
            word = rng.choice(words)
            out.append(word)
            size += len(word) + 1
        return " ".join(out)

    third = row_bytes // 3
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(rows):
            handle.write(json.dumps({"prompt": text(third), "chosen": text(third), "rejected": text(third)}) + "\n")


def run(script: str, path: Path) -> tuple[int, float, int]:
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True)
    rows, seconds, kilobytes = out.stdout.split()
    return int(rows), float(seconds), int(kilobytes) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=1000)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--baseline", action="store_true", help="also measure the list-of-dicts approach")
    parser.add_argument("--json", metavar="PATH", help="also write the result (with machine, versions, command) here")
    args = parser.parse_args()
    from _record import Recorder

    recorder = Recorder("large_file_load")
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.jsonl"
        started = time.perf_counter()
        write_pairs(path, args.rows, int(args.megabytes * 1e6 / args.rows))
        size = path.stat().st_size
        print(f"file: {size / 1e6:.0f} MB, {args.rows} rows (written in {time.perf_counter() - started:.0f} s)")
        _, _, imports = run(IMPORTS, path)
        rows, seconds, peak = run(LOAD, path)
        runs["imports"] = {"description": "a process that only imports what the load imports",
                           "peak_rss_bytes": imports}
        runs["aligntune"] = {"description": "load_preference_data(path): rows read and converted 2,000 at a time",
                             "rows": rows, "seconds": seconds, "peak_rss_bytes": peak,
                             "peak_rss_over_file": (peak - imports) / size}
        print(f"imports only: peak RSS {imports / 1e6:.0f} MB")
        print(f"aligntune load: {rows} pairs in {seconds:.1f} s, peak RSS {peak / 1e6:.0f} MB "
              f"({(peak - imports) / size:.2f}x the file above the imports)")
        if args.baseline:
            rows, seconds, old = run(FROM_LIST, path)
            runs["list_of_dicts"] = {"description": "every row as a Python dict, then datasets.Dataset.from_list",
                                     "rows": rows, "seconds": seconds, "peak_rss_bytes": old,
                                     "peak_rss_over_file": (old - imports) / size}
            print(f"list of dicts + Dataset.from_list: {rows} pairs in {seconds:.1f} s, peak RSS {old / 1e6:.0f} MB "
                  f"({(old - imports) / size:.2f}x)")
        if args.json:
            recorder.write(args.json, settings={
                "megabytes": args.megabytes, "rows": args.rows, "file_bytes": size, "baseline": args.baseline,
                "data": "synthetic: random words from a 5,000-word list, seed 0 (written by the script)",
            }, runs=runs, headline={"peak_rss_over_file": (peak - imports) / size,
                                    "file_megabytes": size / 1e6, "load_seconds": runs["aligntune"]["seconds"],
                                    "peak_rss_gigabytes": peak / 1e9})
        print(f"peak_rss_over_file: {(peak - imports) / size:.2f}")


if __name__ == "__main__":
    main()
