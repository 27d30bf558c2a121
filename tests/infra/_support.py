"""Helpers of the infrastructure tests: parsed Terraform, declarations and code scans."""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Any

import hcl2
import yaml

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
MODULES = TERRAFORM / "modules"
# Everything an environment deploys; terraform/environments/<env> only calls it.
STACK = TERRAFORM / "stack"
ENVIRONMENTS = ("dev", "prod")
FUNCTIONS = ROOT / "functions"
DECLARATIONS = ROOT / "common" / "declarations.yaml"
OPENAPI = ROOT / "api" / "openapi.yaml"
CODE_DIRS = (ROOT / "common", ROOT / "functions")


def tf_files() -> list[Path]:
    return sorted(p for p in TERRAFORM.rglob("*.tf") if ".terraform" not in p.parts)


def unquote(value: Any) -> Any:
    """python-hcl2 8 keeps the quotes of string literals and labels: drop them."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@functools.cache
def parse_tf(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return hcl2.load(handle)


def blocks(path: Path, kind: str) -> dict[str, dict[str, Any]]:
    """module/variable/output blocks of a file: label => body."""
    found: dict[str, dict[str, Any]] = {}
    for entry in parse_tf(path).get(kind, []):
        for label, body in entry.items():
            found[unquote(label)] = body
    return found


def resources(path: Path) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for entry in parse_tf(path).get("resource", []):
        for rtype, named in entry.items():
            for name, body in named.items():
                found.append((unquote(rtype), unquote(name), body))
    return found


def module_dir_resources() -> list[tuple[Path, str, str, dict[str, Any]]]:
    return [(p, t, n, b) for p in tf_files() for t, n, b in resources(p)]


@functools.cache
def declarations() -> dict[str, Any]:
    return yaml.safe_load(DECLARATIONS.read_text(encoding="utf-8"))


def function_folders() -> list[str]:
    return sorted(p.parent.name for p in FUNCTIONS.glob("*/main.py"))


def decorator_kind(name: str) -> str | None:
    """'http' or 'cloud_event': the functions_framework decorator of functions/<name>:<name>."""
    tree = ast.parse((FUNCTIONS / name / "main.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            for deco in node.decorator_list:
                target = deco.func if isinstance(deco, ast.Call) else deco
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "functions_framework"
                ):
                    return target.attr
    return None


def _code_trees() -> list[tuple[Path, ast.Module]]:
    files = sorted(p for d in CODE_DIRS for p in d.rglob("*.py") if "__pycache__" not in p.parts)
    return [(p, ast.parse(p.read_text(encoding="utf-8"))) for p in files]


def _literal(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


@functools.cache
def names_used_by_code() -> dict[str, set[str]]:
    """Topics, queues and Firestore order_by fields named by literals in common/ and functions/.

    Topics: a `topic` class attribute (DomainEvent.topic), a *_TOPIC constant, or the first
    argument of a .publish(...) call. Queues: a *_QUEUE constant, or the last argument of a
    queue_path(...) call / a `queue=` keyword.
    """
    used: dict[str, set[str]] = {"topics": set(), "queues": set(), "order_by": set()}
    for _, tree in _code_trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.AnnAssign | ast.Assign):
                targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
                value = _literal(node.value)
                for target in targets:
                    name = target.id if isinstance(target, ast.Name) else None
                    if value is None or name is None:
                        continue
                    if name == "topic" or name.endswith("_TOPIC"):
                        used["topics"].add(value)
                    if name.endswith("_QUEUE"):
                        used["queues"].add(value)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                attr = node.func.attr
                first = _literal(node.args[0]) if node.args else None
                last = _literal(node.args[-1]) if node.args else None
                if attr == "publish" and first:
                    used["topics"].add(first)
                if attr == "queue_path" and last:
                    used["queues"].add(last)
                if attr == "order_by" and first:
                    used["order_by"].add(first)
                for keyword in node.keywords:
                    if keyword.arg == "queue" and _literal(keyword.value):
                        used["queues"].add(_literal(keyword.value))
    return used
