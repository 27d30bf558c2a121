"""Build one deployable zip per function: terraform/.build/functions/<name>.zip.

A Cloud Function's source must have `main.py` at its root; ours import the shared package
`common/`. Each zip therefore holds functions/<name>/* at the root (main.py, and a
requirements.txt of its own if the folder has one), common/ (without caches) and, as its
requirements.txt, the repository's requirements.lock: the runtime dependencies pinned with
their hashes (`make lock`), so the build installs exactly what the tests ran with (pip checks
every hash) and nothing of the local stack or the tests. The zips are byte-for-byte
reproducible (sorted entries, fixed timestamps and permissions), so their MD5 (the object name
in terraform/modules/function) changes only when the content does, and an unchanged function
gets no new revision.

Usage: python terraform/scripts/package_functions.py [--out DIR] [name ...]
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
COMMON = ROOT / "common"
# The runtime lock (hashed pins of requirements.txt), shipped as each function's requirements.txt.
REQUIREMENTS = ROOT / "requirements.lock"
DEFAULT_OUT = ROOT / "terraform" / ".build" / "functions"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
SKIP_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo"}


def discover(functions_dir: Path = FUNCTIONS) -> list[str]:
    """A function is a folder of functions/ with a main.py (the same rule as emulator/gateway)."""
    return sorted(p.parent.name for p in functions_dir.glob("*/main.py"))


def _files(base: Path) -> list[Path]:
    return sorted(
        p
        for p in base.rglob("*")
        if p.is_file()
        and not SKIP_PARTS.intersection(p.relative_to(base).parts)
        and p.suffix not in SKIP_SUFFIXES
    )


def entries(name: str) -> dict[str, Path]:
    """Archive name => source file, for one function."""
    folder = FUNCTIONS / name
    if not (folder / "main.py").is_file():
        raise SystemExit(f"functions/{name}/main.py does not exist")
    found: dict[str, Path] = {"requirements.txt": REQUIREMENTS}
    for path in _files(COMMON):
        found[f"common/{path.relative_to(COMMON).as_posix()}"] = path
    for path in _files(folder):  # the function's own files win (main.py, requirements.txt)
        found[path.relative_to(folder).as_posix()] = path
    return found


def build(name: str, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.zip"
    tmp = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for arcname, path in sorted(entries(name).items()):
            info = zipfile.ZipInfo(arcname, date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    tmp.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("names", nargs="*", help="functions to package (default: all)")
    args = parser.parse_args(argv)
    for name in args.names or discover():
        path = build(name, args.out)
        print(f"{name}: {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
