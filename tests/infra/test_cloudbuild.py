"""cloudbuild.yaml: parses, every step is named, the pipeline has its stages, files exist."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.infra._support import ENVIRONMENTS, ROOT

CLOUDBUILD = ROOT / "cloudbuild.yaml"
REQUIRED_STAGES = {
    "lint": "lint",
    "unit": "unit-tests",
    "emulator": "emulator-tests",
    "fmt": "terraform-fmt",
    "validate": "terraform-validate",
    "plan": "terraform-plan",
    "apply": "terraform-apply",
    "deploy": "deploy",
    "smoke": "smoke-test",
}
# Repository paths named in a step: scripts, folders and requirement files.
_PATH = re.compile(
    r"(?<![\w/.$-])((?:scripts|terraform|tests|api|common|functions|emulator)(?:/[\w.${}-]+)+"
    r"|requirements[\w-]*\.(?:txt|lock))"
)
# Cloud Build substitutions: $_NAME, ${_NAME}, built-ins; $$ escapes a shell variable.
_SUBSTITUTION = re.compile(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
_BUILT_INS = {"PROJECT_ID", "BUILD_ID", "PROJECT_NUMBER", "LOCATION", "BRANCH_NAME", "TAG_NAME"}
_BUILT_INS |= {"COMMIT_SHA", "SHORT_SHA", "REVISION_ID", "REPO_NAME", "REF_NAME", "TRIGGER_NAME"}


@pytest.fixture(scope="module")
def build() -> dict:
    return yaml.safe_load(CLOUDBUILD.read_text(encoding="utf-8"))


def _text(step: dict) -> str:
    return "\n".join(str(a) for a in [step.get("entrypoint", ""), *step.get("args", [])])


def test_every_step_has_a_unique_id(build):
    ids = [step.get("id") for step in build["steps"]]
    assert all(ids), "a step has no id"
    assert len(ids) == len(set(ids))


def test_the_pipeline_has_its_stages_in_order(build):
    ids = [step["id"] for step in build["steps"]]
    for stage, step_id in REQUIRED_STAGES.items():
        assert step_id in ids, f"no {stage} step ({step_id})"
    order = [
        ids.index(REQUIRED_STAGES[s]) for s in ("validate", "plan", "apply", "deploy", "smoke")
    ]
    assert order == sorted(order)


def test_wait_for_names_existing_steps(build):
    ids = {step["id"] for step in build["steps"]}
    for step in build["steps"]:
        for needed in step.get("waitFor", []):
            assert needed == "-" or needed in ids, (step["id"], needed)


def test_plan_waits_for_every_check(build):
    plan = next(s for s in build["steps"] if s["id"] == "terraform-plan")
    assert set(plan["waitFor"]) >= {"lint", "unit-tests", "emulator-tests", "terraform-validate"}


def test_substitutions_are_declared_and_shell_variables_escaped(build):
    declared = set(build.get("substitutions", {}))
    for step in build["steps"]:
        for name in _SUBSTITUTION.findall(_text(step)):
            assert name in declared or name in _BUILT_INS or name in step.get("secretEnv", []), (
                f"step {step['id']}: ${name} is neither a substitution nor escaped ($$)"
            )
    for name in declared:
        assert name.startswith("_")


def test_secrets_are_declared(build):
    available = {s["env"] for s in build.get("availableSecrets", {}).get("secretManager", [])}
    for step in build["steps"]:
        assert set(step.get("secretEnv", [])) <= available


def test_every_referenced_file_exists(build):
    found = set()
    for step in build["steps"]:
        for raw in _PATH.findall(_text(step)):
            for env in ENVIRONMENTS:
                path = raw.replace("${_ENV}", env).replace("$_ENV", env).rstrip(".,;")
                found.add(path)
                assert (ROOT / path).exists(), f"step {step['id']} names {path}, which is missing"
    assert "scripts/smoke_test.py" in found
    assert "terraform/scripts/package_functions.py" in found
    assert "terraform/environments/dev" in found and "terraform/environments/prod" in found
    assert "requirements-dev.lock" in found


def test_apply_only_on_the_deploy_branch(build):
    apply = next(s for s in build["steps"] if s["id"] == "terraform-apply")
    assert "${_DEPLOY_BRANCH}" in _text(apply) and "BRANCH_NAME" in _text(apply)
