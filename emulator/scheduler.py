"""A local Cloud Scheduler: fires the jobs of common/declarations.yaml at their cron times.

Terraform deploys Cloud Scheduler jobs from the same `schedules:` section, so what runs
locally is what will run in production. A job is an HTTP POST to the function, with the
headers Cloud Scheduler sends.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import croniter

from common import structured_log as log
from common.declarations import Declarations, Schedule


def next_fire_time(schedule: Schedule, after: datetime) -> datetime:
    """The first cron time strictly after `after`, computed in the job's own time zone."""
    local = after.astimezone(ZoneInfo(schedule.time_zone))
    return croniter(schedule.schedule, local).get_next(datetime)


def fire(functions_base_url: str, job: str, schedule: Schedule, at: datetime) -> int:
    request = urllib.request.Request(  # noqa: S310 (local URL)
        f"{functions_base_url}/{schedule.function}",
        data=b"{}",
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-CloudScheduler": "true",
            "X-CloudScheduler-JobName": job,
            "X-CloudScheduler-ScheduleTime": at.isoformat(),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


class LocalScheduler:
    def __init__(
        self,
        declarations: Declarations,
        functions_base_url: str,
        clock: Callable[[], datetime],
    ) -> None:
        self._declarations = declarations
        self._base_url = functions_base_url
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="local-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        now = self._clock()
        due = {name: next_fire_time(s, now) for name, s in self._declarations.schedules.items()}
        while not self._stop.is_set():
            now = self._clock()
            for name, at in list(due.items()):
                if at <= now:
                    schedule = self._declarations.schedules[name]
                    status = fire(self._base_url, name, schedule, at)
                    log.info("scheduled job fired", job=name, status=status)
                    due[name] = next_fire_time(schedule, now)
            self._stop.wait(0.5)
