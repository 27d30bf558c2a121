"""The machine a run came from, collected automatically into the results."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_SDK_ROOTS = (Path("/usr/lib/google-cloud-sdk"), Path("/usr/share/google-cloud-sdk"))


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _sdk_roots() -> list[Path]:
    roots = list(_SDK_ROOTS)
    gcloud = shutil.which("gcloud")
    if gcloud:
        real = Path(os.path.realpath(gcloud)).parent.parent
        roots[:0] = [real, real / "lib" / "google-cloud-sdk"]
    return roots


def _component_version(component: str) -> str | None:
    for root in _sdk_roots():
        snapshot = root / ".install" / f"{component}.snapshot.json"
        if snapshot.exists():
            try:
                data = json.loads(snapshot.read_text())
                for item in data.get("components", []):
                    if item.get("id") == component:
                        return str(item["version"]["version_string"])
            except (OSError, ValueError, KeyError):
                return None
    return None


def _gcloud_version() -> str | None:
    for root in _sdk_roots():
        version = root / "VERSION"
        if version.exists():
            return version.read_text().strip()
    return None


def _java_version() -> str | None:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=10)
        return (out.stderr or out.stdout).splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def busy_share(start: tuple[float, float] | None, end: tuple[float, float] | None) -> float | None:
    """Share of all CPUs busy between two cpu_times() readings (everyone's load, ours included)."""
    if not start or not end or end[1] <= start[1]:
        return None
    return round((end[0] - start[0]) / (end[1] - start[1]), 3)


def own_cpu_s() -> float:
    usage = os.times()
    return usage.user + usage.system + usage.children_user + usage.children_system


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "collected_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "nproc": affinity or os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "gcloud": _gcloud_version(),
        "firestore_emulator": _component_version("cloud-firestore-emulator"),
        "pubsub_emulator": _component_version("pubsub-emulator"),
        "java": _java_version(),
        "loadavg_at_start": loadavg(),
    }
