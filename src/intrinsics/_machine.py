"""The machine a figure was measured on: CPU model, cores, vector extensions, library versions.

One home for what benchmarks, the demo and the README's figures say about where they ran (the CPU
differs between machines, and speed and even float rounding with it).
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

__all__ = ["checkout_commit", "cpu_info", "describe_machine", "machine_line"]

# Extensions that change which matrix-multiply kernels run (and so speed and rounding).
_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "fma")


def cpu_info() -> tuple[str | None, list[str]]:
    """The CPU model and which of the vector extensions that change matrix-multiply kernels it has."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, []
    model, flags = None, []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key == "flags" and not flags:
            have = set(value.split())
            flags = [f for f in _FLAGS if f in have]
    return model, flags


def describe_machine() -> dict[str, Any]:
    """A JSON-ready record: ``cpu``, ``cores`` (usable by this process), ``cpu_flags``, ``os``, ``python``,
    ``numpy``, ``torch`` (versions; None when not installed) and ``date`` (UTC, ISO 8601)."""
    import numpy

    model, flags = cpu_info()
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        import torch

        torch_version: str | None = torch.__version__
    except ImportError:
        torch_version = None
    return {
        "cpu": model or platform.processor() or platform.machine(),
        "cores": int(cores),
        "cpu_flags": flags,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch_version,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def machine_line(m: dict[str, Any]) -> str:
    """``"AMD EPYC 7B13, 2 cores (avx2, fma), 2026-12-02"``: the machine as a figure's caption says it."""
    flags = f" ({', '.join(m['cpu_flags'])})" if m.get("cpu_flags") else ""
    return f"{m.get('cpu')}, {m.get('cores')} cores{flags}, {str(m.get('date', ''))[:10]}"


def checkout_commit(root: Path) -> str | None:
    """The git commit of the checkout at ``root`` (10 hex digits), with ``+changes`` where tracked files
    differ from it; None outside a checkout. What a recorded figure was measured with."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    try:
        sha = git("rev-parse", "--short=10", "HEAD")
        return sha + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return None
