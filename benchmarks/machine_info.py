"""The one-line machine description the benchmarks print with their tables: CPU model,
CPU count and load average (benchmarks/README.md asks every table to name them)."""

from __future__ import annotations

import os
import platform
import subprocess


def machine() -> str:
    """``"<CPU model>, <n> CPUs; load average <1 min> <5 min>"``."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        cpu = f"{info.get('Model name', '?').strip()}, {info.get('CPU(s)', '?').strip()} CPUs"
    except OSError:
        cpu = platform.processor()
    return f"{cpu}; load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}"
