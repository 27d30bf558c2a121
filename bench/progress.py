"""One progress line on stderr: rewritten in place on a terminal, a line every 5 s in a log."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, interval_s: float | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = interval_s if interval_s is not None else (0.25 if self.tty else 5.0)
        self.started = time.monotonic()
        self._last = 0.0
        self._width = 0
        self._lock = threading.Lock()

    def _stamp(self) -> str:
        elapsed = int(time.monotonic() - self.started)
        return f"[{elapsed // 60:02d}:{elapsed % 60:02d}]"

    def update(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last < self.interval_s:
                return
            self._last = now
            line = f"{self._stamp()} {text}"
            if self.tty:
                pad = max(0, self._width - len(line))
                self.stream.write("\r" + line + " " * pad)
                self._width = len(line)
            else:
                self.stream.write(line + "\n")
            self.stream.flush()

    def done(self, text: str) -> None:
        with self._lock:
            line = f"{self._stamp()} {text}"
            if self.tty:
                pad = max(0, self._width - len(line))
                self.stream.write("\r" + line + " " * pad + "\n")
                self._width = 0
            else:
                self.stream.write(line + "\n")
            self.stream.flush()
            self._last = 0.0


def counter_text(label: str, done: int, total: int) -> str:
    share = 100 * done / total if total else 100.0
    return f"{label}: {done:,}/{total:,} ({share:.0f}%)"
