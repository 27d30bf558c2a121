"""One firebase-admin app per (name, project) and process, created safely from many threads.

`firebase_admin.initialize_app` raises ValueError when the name is already taken. A fresh
gateway worker answers its first crowd on 8 threads at once; with a plain `functools.cache`
two of them could both miss the cache, both initialise, and the loser's ValueError was read
as "the ID token is not valid": one patient in 5,000 got a 401 (CI, stop 17). So creation is
serialised here and a name already taken is simply looked up.
"""

from __future__ import annotations

import threading

import firebase_admin

_lock = threading.Lock()
_apps: dict[str, firebase_admin.App] = {}


def firebase_app(name: str, project_id: str) -> firebase_admin.App:
    """The process's firebase-admin app `name` for `project_id`, created on first use."""
    app = _apps.get(name)
    if app is not None:
        return app
    with _lock:
        app = _apps.get(name)
        if app is None:
            try:
                app = firebase_admin.get_app(name)
            except ValueError:
                app = firebase_admin.initialize_app(options={"projectId": project_id}, name=name)
            _apps[name] = app
        return app
