"""What the repository holds: sources, not installed packages, big binaries or key material.

npm packages (the Auth emulator's firebase-tools, the browser tests' axe-core) are installed
from their package-lock.json by `make install`; 19,000 files of them were once committed by
accident, with 5-8 MB WebAssembly blobs. Keys are generated per machine (`emulator/certs.py`
into the ignored `.local/pki`, the login-node simulator's in memory).
"""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.infra._support import ROOT

MAX_BYTES = 2_000_000  # the largest we keep: the postcode table (1.1 MB), served from memory
PRIVATE_KEY = re.compile(rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----\s*\n\s*[A-Za-z0-9+/]{20}")


@pytest.fixture(scope="module")
def tracked() -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    )
    return [name for name in listing.stdout.decode().split("\0") if name]


def test_no_installed_packages_are_committed(tracked: list[str]) -> None:
    committed = [n for n in tracked if "node_modules/" in n or n.startswith((".venv", ".local/"))]
    assert committed == [], committed[:10]


def test_no_file_is_big(tracked: list[str]) -> None:
    sizes = {n: (ROOT / n).stat().st_size for n in tracked if (ROOT / n).is_file()}
    big = {n: size for n, size in sizes.items() if size > MAX_BYTES}
    assert big == {}


def test_no_private_key_is_committed(tracked: list[str]) -> None:
    holding = [
        n for n in tracked if (ROOT / n).is_file() and PRIVATE_KEY.search((ROOT / n).read_bytes())
    ]
    assert holding == []
