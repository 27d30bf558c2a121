"""Every `validation` of every Terraform variable, evaluated by Terraform on what is passed.

A real `terraform plan` needs the google provider, which this check must do without (no
registry access on a developer's machine). So, for each environment, the plan is made on a
provider-free copy of terraform/ laid out in a temporary directory at the same relative paths,
and with the same line numbers, as the real files (the repository's other top-level folders
are symlinked beside it, so common/declarations.yaml and api/openapi.yaml are read as in a
real plan):

* every `variable` block is kept verbatim: type, default, nullable and every validation;
* the environment root keeps its `module "stack"` call and outputs; its values are its
  terraform.tfvars, or terraform.tfvars.example where there is none (as in CI, where the
  pipeline passes project_id and notification_email on the command line); its backend,
  provider requirements, provider configurations and moved blocks are left out;
* every module keeps its `module` calls, and its `locals` when it calls modules (the stack
  computes each argument from common/declarations.yaml there; api_gateway passes its
  variables on to openapi_render); its resources and data sources are left out, and each of
  its outputs becomes a placeholder: a value made of its own variables where PLACEHOLDERS has
  one (so that a validation fed by it is evaluated, e.g. the invokers of a function or the
  gateway's backends), otherwise an unknown value, as a real plan has for a resource
  attribute;
* a module without resources (openapi_render) is kept whole.

`terraform init -backend=false` and `terraform plan` then evaluate every validation of every
instance of every module call (one per declared function, ...) on the values the real plan
passes. Terraform, not Python, computes the arguments (locals, for_each, try() defaults,
merge() of the overrides, the module-to-module wiring): a Python re-implementation of the
stack's expressions would be a second copy that can drift from them. A rejected value fails
the test with the module, the variable, the value and the call that passed it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.infra._support import (
    ENVIRONMENTS,
    MODULES,
    ROOT,
    STACK,
    TERRAFORM,
    blocks,
    declarations,
)

TERRAFORM_BIN = shutil.which("terraform")
pytestmark = pytest.mark.skipif(TERRAFORM_BIN is None, reason="no terraform binary on PATH")

# Blocks that need a provider, a backend or a state; everything else is kept.
LEFT_OUT = {"resource", "data", "terraform", "provider", "moved", "import", "removed", "check"}
# Output placeholders (Terraform expressions over the module's own variables), for outputs
# that reach a validated variable; any other output of a module with resources is unknown.
PLACEHOLDERS = {
    # The edge's serverless NEG points at the gateway by its id.
    "api_gateway": {"gateway_id": '"${var.api_id}-gw"'},
    "function": {
        "uri": '"https://${replace(var.name, "_", "-")}-placeholder-lm.a.run.app"',
        "service": 'replace(var.name, "_", "-")',
        "name": 'replace(var.name, "_", "-")',
        "service_account_email": (
            '"fn-${replace(var.name, "_", "-")}@${var.project_id}.iam.gserviceaccount.com"'
        ),
        "timeout_seconds": "var.timeout_seconds",
    },
    "identities": {
        "emails": (
            '{ for k, id in var.callers : k => "${id}@${var.project_id}.iam.gserviceaccount.com" }'
        ),
        "ids": (
            '{ for k, id in var.callers : k => "projects/${var.project_id}/serviceAccounts/'
            '${id}@${var.project_id}.iam.gserviceaccount.com" }'
        ),
    },
}
UNKNOWN = "jsondecode(timestamp())"  # unknown during plan, of no particular type

_BLOCK = re.compile(r'^([a-z_]+)((?:\s+"[^"]*")*)\s*\{\s*$')
_SOURCE = re.compile(r'^\s*source\s*=\s*"([^"]+)"', re.MULTILINE)
_RULE = re.compile(r"This was checked by the validation rule at (\S+?):(\d+),")
_VARIABLE = re.compile(r'^variable\s+"([^"]+)"')


def _tf_env() -> dict[str, str]:
    return {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}


def _top_level_blocks(text: str) -> list[tuple[str, list[str], int, int]]:
    """(kind, labels, first line, last line) of each top-level block, 0-based.

    Relies on `terraform fmt` (checked by test_terraform_fmt_check): a top-level block opens
    at column 0 with `kind "label" {` and closes with a `}` line of its own.
    """
    lines = text.splitlines()
    found = []
    i = 0
    while i < len(lines):
        match = _BLOCK.match(lines[i])
        if not match:
            i += 1
            continue
        end = i
        while lines[end].rstrip() != "}":
            end += 1
        found.append((match.group(1), re.findall(r'"([^"]*)"', match.group(2)), i, end))
        i = end + 1
    return found


def _provider_free(src: Path, dst: Path) -> None:
    """Copy the .tf files of one module or root as described in the module docstring."""
    files = {p.name: p.read_text(encoding="utf-8") for p in sorted(src.glob("*.tf"))}
    parsed = {name: _top_level_blocks(text) for name, text in files.items()}
    kinds = {kind for blocks in parsed.values() for kind, *_ in blocks}
    has_resources = bool(kinds & {"resource", "data"})
    calls_modules = "module" in kinds
    placeholders = PLACEHOLDERS.get(src.name, {}) if src.parent == MODULES else {}
    dst.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        lines = text.splitlines()
        for kind, labels, first, last in parsed[name]:
            keep = kind not in LEFT_OUT
            if kind == "locals" and has_resources and not calls_modules:
                keep = False  # they serve the resources (and may read a data source)
            if not keep:
                lines[first : last + 1] = [""] * (last + 1 - first)
            elif kind == "output" and has_resources:
                value = placeholders.get(labels[0], UNKNOWN)
                # Same line count, so diagnostics point at the real file's lines.
                lines[first : last + 1] = [f'output "{labels[0]}" {{ value = {value} }}'] + [""] * (
                    last - first
                )
        (dst / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _tfvars(env_dir: Path) -> Path:
    real = env_dir / "terraform.tfvars"
    return real if real.is_file() else env_dir / "terraform.tfvars.example"


def build_mirror(base: Path) -> Path:
    """A provider-free copy of terraform/ under base/terraform; returns base."""
    for entry in ROOT.iterdir():
        if entry.name != "terraform" and not entry.name.startswith("."):
            (base / entry.name).symlink_to(entry)
    dirs = [p for p in sorted(MODULES.iterdir()) if p.is_dir()] + [STACK]
    dirs += [TERRAFORM / "environments" / env for env in ENVIRONMENTS]
    for src in dirs:
        _provider_free(src, base / src.relative_to(ROOT))
    for env in ENVIRONMENTS:
        env_dir = TERRAFORM / "environments" / env
        target = base / env_dir.relative_to(ROOT) / "terraform.tfvars"
        shutil.copyfile(_tfvars(env_dir), target)
    return base


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [TERRAFORM_BIN, *args], cwd=cwd, capture_output=True, text=True, env=_tf_env(), check=False
    )


def _repo_path(base: Path, env_dir: Path, filename: str) -> str:
    return os.path.relpath(os.path.normpath(env_dir / filename), base)


def _variable_at(path: Path, line: int) -> str:
    lines = path.read_text(encoding="utf-8").splitlines()[:line]
    for text in reversed(lines):
        match = _VARIABLE.match(text)
        if match:
            return match.group(1)
    return "?"


def describe(diagnostic: dict, base: Path, env_dir: Path) -> str:
    """One line: which module's variable rejected what value, passed where."""
    detail = diagnostic.get("detail", "")
    snippet = diagnostic.get("snippet") or {}
    start = (diagnostic.get("range") or {}).get("start", {})
    filename = (diagnostic.get("range") or {}).get("filename")
    where = f"{_repo_path(base, env_dir, filename)}:{start.get('line')}" if filename else "?"
    values = "; ".join(f"{v['traversal']} {v['statement']}" for v in snippet.get("values", []))
    rule = _RULE.search(detail)
    if not rule:
        return f"{diagnostic.get('summary')}: {detail.strip()} ({where})"
    path = _repo_path(base, env_dir, rule.group(1))
    variable = _variable_at(base / path, int(rule.group(2)))
    caller = snippet.get("context") or "the root (terraform.tfvars)"
    return (
        f"module {Path(path).parent}, variable {variable!r}: {values or 'the value'} is rejected"
        f" ({detail[: rule.start()].strip()}); passed by {caller} at {where}"
        f" `{snippet.get('code', '').strip()}`; validation at {path}:{rule.group(2)}"
    )


def plan_errors(base: Path, env: str) -> list[str]:
    """terraform init + plan of one environment's provider-free copy: its error messages."""
    env_dir = base / "terraform" / "environments" / env
    init = _run(["init", "-input=false", "-backend=false", "-no-color"], env_dir)
    if init.returncode != 0:
        return [f"terraform init failed: {init.stderr or init.stdout}"]
    plan = _run(["plan", "-input=false", "-lock=false", "-refresh=false", "-json"], env_dir)
    diagnostics = [
        json.loads(line)["diagnostic"]
        for line in plan.stdout.splitlines()
        if line.startswith("{") and json.loads(line).get("type") == "diagnostic"
    ]
    errors = [describe(d, base, env_dir) for d in diagnostics if d.get("severity") == "error"]
    if plan.returncode != 0 and not errors:
        errors.append(f"terraform plan failed: {plan.stderr or plan.stdout}")
    return [f"{env}: {e}" for e in errors]


def _called_modules(directory: Path) -> set[Path]:
    """Module directories reached from a root or module through its module calls."""
    reached: set[Path] = set()
    for path in directory.glob("*.tf"):
        for source in _SOURCE.findall(path.read_text(encoding="utf-8")):
            if source.startswith("."):
                target = (directory / source).resolve()
                reached |= {target} | _called_modules(target)
    return reached


# -- tests ------------------------------------------------------------------------------------
def test_every_module_is_reached_from_every_environment():
    modules = {p.resolve() for p in MODULES.iterdir() if p.is_dir()} | {STACK.resolve()}
    for env in ENVIRONMENTS:
        reached = _called_modules(TERRAFORM / "environments" / env)
        assert reached == modules, f"{env}: not called, so not checked: {modules - reached}"


def test_placeholders_name_real_outputs():
    for module, outputs in PLACEHOLDERS.items():
        assert set(outputs) <= set(blocks(MODULES / module / "outputs.tf", "output")), module


def test_every_validation_accepts_what_the_environments_pass(tmp_path: Path):
    base = build_mirror(tmp_path)
    with ThreadPoolExecutor(max_workers=len(ENVIRONMENTS)) as pool:
        errors = [
            e for found in pool.map(lambda env: plan_errors(base, env), ENVIRONMENTS) for e in found
        ]
    assert errors == [], "\n".join(errors)


def test_a_rejected_value_is_reported_with_module_variable_and_value(tmp_path: Path):
    """The check checks: the function module made to refuse a trigger that is declared."""
    trigger = Counter(f["trigger"] for f in declarations()["functions"].values()).most_common()[-1][
        0
    ]
    base = build_mirror(tmp_path)
    variables = base / "terraform" / "modules" / "function" / "variables.tf"
    text = variables.read_text(encoding="utf-8")
    broken, count = re.subn(
        r'(variable "trigger" \{.*?condition\s*=\s*)[^\n]*',
        lambda m: f'{m.group(1)}var.trigger != "{trigger}"',
        text,
        count=1,
        flags=re.DOTALL,
    )
    assert count == 1
    variables.write_text(broken, encoding="utf-8")
    errors = plan_errors(base, ENVIRONMENTS[0])
    assert errors, "a validation that rejects a declared trigger went unnoticed"
    assert all(
        "module terraform/modules/function, variable 'trigger'" in e and f'"{trigger}"' in e
        for e in errors
    ), "\n".join(errors)
