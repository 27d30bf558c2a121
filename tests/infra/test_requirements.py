"""The dependency locks: requirements*.lock pin requirements*.txt, with hashes (`make lock`).

requirements.txt (runtime) and requirements-dev.txt (tests, tools, local stack; includes the
runtime list) are the human-edited inputs. requirements.lock is what every function is
deployed with (terraform/scripts/package_functions.py ships it as the function's
requirements.txt); requirements-dev.lock is what `make install` and the pipeline install with
--require-hashes. A .txt edited without `make lock` fails here.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.infra._support import CODE_DIRS, ROOT

RUNTIME_TXT = ROOT / "requirements.txt"
DEV_TXT = ROOT / "requirements-dev.txt"
RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
PAIRS = [(RUNTIME_TXT, RUNTIME_LOCK), (DEV_TXT, DEV_LOCK)]
# Needed by the local stack only (emulator/), never by a function: dev requirements only.
LOCAL_STACK_ONLY = {"croniter"}


@dataclass
class Locked:
    requirement: Requirement
    hashes: list[str]
    via: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return canonicalize_name(self.requirement.name)

    @property
    def version(self) -> str:
        (spec,) = self.requirement.specifier
        return spec.version


def inputs(path: Path) -> dict[str, Requirement]:
    """Top-level requirements of a .txt, following `-r other.txt`."""
    found: dict[str, Requirement] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            found.update(inputs(path.parent / line[3:].strip()))
            continue
        assert not line.startswith("-"), f"{path.name}: option {line!r} belongs in `make lock`"
        requirement = Requirement(line)
        found[canonicalize_name(requirement.name)] = requirement
    return found


def lock(path: Path) -> list[Locked]:
    """The entries of a lock written by `uv pip compile --generate-hashes` (pip's format)."""
    entries: list[Locked] = []
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    in_via = False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            comment = stripped.lstrip("#").strip()
            if entries and comment.startswith("via"):
                in_via = True
                rest = comment[3:].strip()
                if rest:
                    entries[-1].via.append(rest)
            elif entries and in_via and comment:
                entries[-1].via.append(comment)
            continue
        in_via = False
        spec, *hashes = re.split(r"\s+--hash=", stripped)
        assert not spec.startswith("-"), f"{path.name}: unexpected option {spec!r}"
        entries.append(Locked(Requirement(spec.strip()), [h.strip() for h in hashes]))
    return entries


def _versions(entries: list[Locked]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for entry in entries:
        found.setdefault(entry.name, set()).add(entry.version)
    return found


def test_the_inputs_pin_exact_versions():
    for path in (RUNTIME_TXT, DEV_TXT):
        for name, requirement in inputs(path).items():
            specs = list(requirement.specifier)
            assert len(specs) == 1 and specs[0].operator == "==", f"{path.name}: {name} not =="


@pytest.mark.parametrize("path", [RUNTIME_LOCK, DEV_LOCK], ids=lambda p: p.name)
def test_every_locked_package_is_pinned_with_hashes(path: Path):
    entries = lock(path)
    assert len(entries) > 20
    for entry in entries:
        specs = list(entry.requirement.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{path.name}: {entry.requirement}"
        assert entry.hashes and all(
            re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in entry.hashes
        ), f"{path.name}: {entry.name} has no sha256 hash"


@pytest.mark.parametrize(("txt", "locked"), PAIRS, ids=lambda p: p.name)
def test_the_lock_pins_every_input_at_its_version(txt: Path, locked: Path):
    versions = _versions(lock(locked))
    for name, requirement in inputs(txt).items():
        (spec,) = requirement.specifier
        assert versions.get(name) == {spec.version}, (
            f"{txt.name} pins {name}=={spec.version}, {locked.name} has {versions.get(name)}:"
            " run `make lock`"
        )


@pytest.mark.parametrize(("txt", "locked"), PAIRS, ids=lambda p: p.name)
def test_the_lock_holds_nothing_the_inputs_no_longer_need(txt: Path, locked: Path):
    """Each entry is an input or is needed by one (the `# via` annotations of the lock)."""
    entries = lock(locked)
    top = set(inputs(txt))
    needed = {e.name for e in entries if e.name in top}
    changed = True
    while changed:
        parents_of = {e.name: {canonicalize_name(v) for v in e.via} for e in entries}
        grown = {name for name, parents in parents_of.items() if parents & needed} | needed
        changed, needed = grown != needed, grown
    stale = {e.name for e in entries} - needed
    assert not stale, f"{locked.name} holds {sorted(stale)}, needed by no input: run `make lock`"


def test_the_functions_get_the_versions_the_tests_ran_with():
    dev = _versions(lock(DEV_LOCK))
    for entry in lock(RUNTIME_LOCK):
        assert entry.version in dev.get(entry.name, set()), (
            f"requirements.lock pins {entry.name}=={entry.version}, the dev lock"
            f" {dev.get(entry.name)}: run `make lock`"
        )


def test_local_stack_tools_are_not_shipped_with_the_functions():
    runtime = set(inputs(RUNTIME_TXT)) | {e.name for e in lock(RUNTIME_LOCK)}
    dev = set(inputs(DEV_TXT)) & {e.name for e in lock(DEV_LOCK)}
    for name in LOCAL_STACK_ONLY:
        assert name not in runtime, f"{name} is for the local stack only: requirements-dev.txt"
        assert name in dev
    for directory in CODE_DIRS:  # so the shipped code never imports one of them
        for path in directory.rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                for name in names:
                    assert name.split(".")[0] not in LOCAL_STACK_ONLY, f"{path} imports {name}"


def test_installs_use_the_locks_with_hashes():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "pip install --quiet --require-hashes -r requirements-dev.lock" in makefile
    build = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text(encoding="utf-8"))
    installs = [
        line
        for step in build["steps"]
        for arg in step.get("args", [])
        for line in str(arg).splitlines()
        if "pip install" in line and " -r " in line
    ]
    assert installs
    for line in installs:
        assert "--require-hashes -r requirements-dev.lock" in line, line
