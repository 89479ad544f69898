"""What every benchmark shares: the machine it ran on, the load, package versions, and timing.

Benchmarks state the machine and load next to their figures and report ratios against a floor
measured in the same run; these helpers keep that wording and method the same everywhere."""

from __future__ import annotations

import gc
import os
import platform
import resource
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import torch

# Benchmarks run from a checkout: make the package importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS = Path(__file__).resolve().parent / "results"


def core_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, str]:
    """The facts a reader needs to weigh a figure: CPU, cores, threads, load, versions."""
    return {
        "CPU": f"{cpu_model()} ({platform.machine()})",
        "cores available": str(core_count()),
        "torch threads": str(torch.get_num_threads()),
        "load average (1/5/15 min)": load_average(),
        "python / torch": f"{platform.python_version()} / {torch.__version__}",
        "GPU": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }


def machine_markdown(info: dict[str, str] | None = None) -> str:
    """`machine_info()` as a markdown list."""
    return "\n".join(f"- {key}: {value}" for key, value in (info or machine_info()).items())


def median_seconds(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """The median wall time of `fn()` over `repeats` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def live_tensors() -> int:
    """Tensors reachable by the garbage collector (a leak shows as growth)."""
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))


def rss_mb() -> float:
    """The process's resident memory now, in MiB (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20
