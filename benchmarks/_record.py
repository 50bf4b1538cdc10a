"""What every benchmark stores next to its figures (`--json PATH`): the command, the code, the machine, the versions.

A result file is one JSON object:

    {"benchmark": "dpo_speed", "command": "python benchmarks/dpo_speed.py ...", "argv": [...],
     "git": {"commit": ..., "dirty": bool, "modified": [...]}, "started": ISO-8601 UTC, "finished": ...,
     "wall_seconds": ..., "machine": {"cpu": ..., "cpu_cores": ..., "memory_gib": ..., "gpu": ... or null, ...},
     "load_average": {"start": [1, 5, 15 min], "end": [...]}, "contention": {CPU other processes took meanwhile},
     "versions": {"python": ..., "torch": ..., ...},
     "environment": {relevant variables that were set}, "settings": {...}, "runs": {...}, "headline": {...}}

`runs` holds every run's figures and `headline` the ratios the docs quote. The stored results live in
docs/benchmarks/ (next to docs/performance.md, which quotes them); tests/test_benchmark_results.py checks that the
pages and the files agree.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "transformers", "trl", "datasets", "accelerate", "pyarrow", "tokenizers", "aligntune-core",
            "aligntune-backend-trl", "aligntune-data-hh-rlhf")
# Variables that change the figures if set (threads, allocator, devices, caches).
ENVIRONMENT = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MALLOC_MMAP_THRESHOLD_", "MALLOC_ARENA_MAX",
               "MALLOC_TRIM_THRESHOLD_",
               "CUDA_VISIBLE_DEVICES", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "ALIGNTUNE_CACHE_DIR")


def _git() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout

    try:
        status = git("status", "--porcelain", "--untracked-files=no").splitlines()
        modified = sorted(line[3:] for line in status)
        # Uncommitted changes to code (documentation and tests do not change the figures).
        code = [path for path in modified if not path.endswith(".md") and "/tests/" not in f"/{path}"]
        return {"commit": git("rev-parse", "HEAD").strip(), "dirty": bool(code), "modified": code}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None, "modified": []}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _gpu() -> str | None:
    try:
        import torch

        if torch.cuda.is_available():
            return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except ImportError:
        pass
    return None


def machine() -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu": _cpu_model(), "cpu_cores": os.cpu_count(), "cpu_cores_usable": usable, "memory_gib": _memory_gib(),
            "gpu": _gpu(), "os": platform.platform()}


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has been busy since boot (all processes, from /proc/stat), or None."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


class Contention:
    """How much CPU other processes took while a measurement ran: the machine's busy CPU time minus this process's
    and its finished children's. `fraction` is that over the wall time times the cores (0: the machine was ours)."""

    def __init__(self) -> None:
        import resource

        self._resource = resource
        self.start = (time.perf_counter(), busy_cpu_seconds(), self._own(), list(os.getloadavg()))

    def _own(self) -> float:
        usage = [self._resource.getrusage(who) for who in (self._resource.RUSAGE_SELF, self._resource.RUSAGE_CHILDREN)]
        return sum(u.ru_utime + u.ru_stime for u in usage)

    def stop(self) -> dict:
        wall, busy, own, load = self.start
        wall = time.perf_counter() - wall
        now = busy_cpu_seconds()
        mine = self._own() - own
        other = None if busy is None or now is None else max(0.0, now - busy - mine)
        return {"wall_seconds": round(wall, 2), "own_cpu_seconds": round(mine, 2),
                "other_cpu_seconds": None if other is None else round(other, 2),
                "other_cpu_fraction": None if other is None else round(other / (wall * (os.cpu_count() or 1)), 3),
                "load_average_start": load, "load_average_end": list(os.getloadavg())}


def relative(path: str | os.PathLike) -> str:
    """A data path as the docs write it (relative to the project root, e.g. `../shared/data/hh-rlhf`)."""
    try:
        return os.path.relpath(Path(path).resolve(), ROOT)
    except ValueError:
        return str(path)


class Recorder:
    """Started when the benchmark starts; `write` adds the end state and the figures."""

    def __init__(self, benchmark: str) -> None:
        self.benchmark = benchmark
        self.argv = list(sys.argv)
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.clock = time.perf_counter()
        self.load_start = list(os.getloadavg())
        self.contention = Contention()

    def write(self, path: str | os.PathLike, *, settings: dict, runs: dict, headline: dict) -> None:
        record = {
            "benchmark": self.benchmark,
            "command": shlex.join(["python", *self.argv]),
            "argv": self.argv,
            "git": _git(),
            "started": self.started.isoformat(timespec="seconds"),
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "wall_seconds": round(time.perf_counter() - self.clock, 1),
            "machine": machine(),
            "load_average": {"start": self.load_start, "end": list(os.getloadavg())},
            "contention": self.contention.stop(),
            "versions": versions(),
            "environment": {name: os.environ[name] for name in ENVIRONMENT if name in os.environ},
            "settings": settings,
            "runs": runs,
            "headline": headline,
        }
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(record, indent=1, sort_keys=False) + "\n", encoding="utf-8")
        print(f"result: {target}")
