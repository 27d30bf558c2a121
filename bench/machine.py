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


# -- where the CPU went during a phase: per process group, from /proc ------------------------
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may hold spaces): field 3 onwards."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def parent_map() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields:
                parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(roots: list[int], parents: dict[int, int]) -> list[int]:
    """The roots and every process below them (pure: `parents` maps pid -> parent pid)."""
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, stack = [], list(roots)
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (its own threads; not its waited children)."""
    fields = _stat_fields(pid)
    if not fields:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class CpuShares:
    """Cores used by each named group of processes between start() and stop(), with the whole
    machine's busy cores from /proc/stat: `others` is what no group accounts for (other users
    of a shared machine, the kernel's own work)."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self._pids: dict[str, list[int]] = {}
        self._start: dict[int, float] = {}
        self._machine: tuple[float, float] | None = None
        self._wall = 0.0

    def start(self) -> CpuShares:
        """Each group is its roots and their descendants, less what an earlier group holds
        (so the bench process, last, is itself and what no other group claims: its threads)."""
        parents = parent_map()
        claimed: set[int] = set()
        self._pids = {}
        for name, roots in self.groups.items():
            pids = [p for p in descendants(roots, parents) if p not in claimed]
            claimed.update(pids)
            self._pids[name] = pids
        self._start = {pid: process_cpu_s(pid) for pids in self._pids.values() for pid in pids}
        self._machine = cpu_times()
        self._wall = time.monotonic()
        return self

    def stop(self, exited: dict[str, float] | None = None) -> dict[str, Any]:
        """`exited`: CPU seconds of processes that ended during the phase (from their
        rusage), by group name, instead of what /proc no longer shows."""
        wall = time.monotonic() - self._wall
        machine = cpu_times()
        if wall <= 0:
            return {}
        cores: dict[str, float] = {}
        for name, pids in self._pids.items():
            used = sum(max(0.0, process_cpu_s(p) - self._start.get(p, 0.0)) for p in pids)
            cores[name] = round(used / wall, 2)
        for name, seconds in (exited or {}).items():
            cores[name] = round(cores.get(name, 0.0) + seconds / wall, 2)
        result: dict[str, Any] = {"wall_s": round(wall, 1), "cores": cores}
        if self._machine and machine and machine[1] > self._machine[1]:
            cpus = os.cpu_count() or 1
            share = (machine[0] - self._machine[0]) / (machine[1] - self._machine[1])
            busy = share * cpus
            result["machine_busy_cores"] = round(busy, 2)
            result["cpus"] = cpus
            cores["others"] = round(max(0.0, busy - sum(cores.values())), 2)
        return result
