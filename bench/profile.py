"""Where the gateway's CPU goes under load: py-spy samples of every worker, summarised.

`python -m bench --profile` records the gateway (the gunicorn master and its workers,
`--subprocesses`) with py-spy for a measured phase (search at the highest connection count,
and the peak mix), without pausing it (`--nonblocking`), sampling only the thread that holds
the GIL (`--gil`: the Python CPU of each worker), and keeps the functions that were on CPU
most often, by self time (the leaf frame) and by inclusive time (anywhere on the
stack). py-spy is not a project dependency: `make bench-tools` installs it apart, in
.venv/bench-tools, where it may; without it the profile is skipped with a note.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CANDIDATES = (ROOT / ".venv" / "bench-tools" / "bin" / "py-spy", ROOT / ".venv" / "bin" / "py-spy")
_LINE_NUMBER = re.compile(r":\d+\)$")
PROJECT_DIRS = ("common/", "functions/", "emulator/")


def find_py_spy() -> str | None:
    for candidate in CANDIDATES:
        if candidate.exists():
            return str(candidate)
    return shutil.which("py-spy")


def start(py_spy: str, pid: int, seconds: float, out: Path, rate: int = 100):
    argv = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--nonblocking",
        "--gil",  # only the thread holding the GIL: where the Python CPU goes
        "--rate",
        str(rate),
        "--duration",
        str(max(1, round(seconds))),
        "--format",
        "raw",
        "--output",
        str(out),
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _function(frame: str) -> str:
    """'search (common/services/search.py:301)' -> 'search (common/services/search.py)'."""
    frame = frame.strip()
    for marker in ("/site-packages/", "/work/main/", str(ROOT) + "/"):
        if marker in frame:
            name, _, path = frame.partition(" (")
            frame = f"{name} ({path.split(marker, 1)[1]}"
    return _LINE_NUMBER.sub(")", frame)


def summarize(collapsed: Iterable[str], top: int = 15) -> dict[str, Any]:
    """Collapsed stacks ('frame;frame;leaf COUNT' lines, py-spy's raw format) -> the
    functions most often on CPU, self (leaf) and inclusive, as shares of all samples."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [_function(f) for f in stack.split(";") if "(" in f]
        if not frames:
            continue
        total += samples
        self_counts[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples

    def ranked(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": name, "share": round(n / total, 3), "samples": n}
            for name, n in counter.most_common(top)
        ]

    ours = Counter({k: n for k, n in inclusive.items() if _is_ours(k)})
    return {
        "samples": total,
        "self": ranked(self_counts),
        "inclusive": ranked(inclusive),
        "inclusive_ours": ranked(ours),
    }


def _is_ours(function: str) -> bool:
    """A frame of this repository's code (the services, the functions, the gateway)."""
    _, _, path = function.partition(" (")
    return path.startswith(PROJECT_DIRS)


def finish(process: subprocess.Popen[str], out: Path, top: int = 15) -> dict[str, Any]:
    try:
        _, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    if not out.exists():
        return {"error": (err or "py-spy wrote nothing")[-400:]}
    with out.open(encoding="utf-8", errors="replace") as handle:
        summary = summarize(handle, top)
    summary["raw"] = str(out)
    return summary
