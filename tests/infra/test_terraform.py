"""Static checks of terraform/ against the code and common/declarations.yaml (no cloud access).

What needs a tool that may be missing (terraform, checkov) is skipped with the reason; the
Cloud Build pipeline has both.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from common.declarations import Declarations, Function, is_forbidden_role, load_declarations
from tests.infra._support import (
    ENVIRONMENTS,
    MODULES,
    OPENAPI,
    ROOT,
    STACK,
    TERRAFORM,
    blocks,
    declarations,
    decorator_kind,
    function_folders,
    module_dir_resources,
    names_used_by_code,
    parse_tf,
    tf_files,
    unquote,
)

CHECKOV_VERSION = "3.3.30"  # pinned here and in cloudbuild.yaml
TERRAFORM_BIN = shutil.which("terraform")
# Declared ahead of the code that will use them; each entry says why. When the code starts
# using one, the test below fails until the entry is removed.
DECLARED_NOT_YET_USED_QUEUES = {
    "outbox-relay": "for the Cloud Tasks relay of outbox events; the scheduled sweep does it today",
}
TRIGGER_SIGNATURE = {
    "http": "http",
    "scheduled": "http",
    "tasks": "http",
    "pubsub_push": "cloud_event",
    "identity_blocking": "http",
}
EXPECTED_MODULES = {
    "project_services",
    "identities",
    "secrets",
    "firestore",
    "function_source",
    "function",
    "messaging",
    "tasks",
    "scheduler",
    "api_gateway",
    "edge",
    "identity",
    "web_bucket",
    "monitoring",
}


def _tf_env() -> dict[str, str]:
    return {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}


# -- parsing and formatting -------------------------------------------------------------------
def test_there_is_terraform():
    assert len(tf_files()) > 20


@pytest.mark.parametrize("path", tf_files(), ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_every_tf_file_parses(path: Path):
    parsed = parse_tf(path)
    assert isinstance(parsed, dict)


@pytest.mark.skipif(TERRAFORM_BIN is None, reason="no terraform binary on PATH")
def test_terraform_fmt_check():
    result = subprocess.run(
        [TERRAFORM_BIN, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
        capture_output=True,
        text=True,
        env=_tf_env(),
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_modules_have_their_files_and_typed_validated_variables():
    assert {p.name for p in MODULES.iterdir() if p.is_dir()} >= EXPECTED_MODULES
    for module in [*sorted(p for p in MODULES.iterdir() if p.is_dir()), STACK]:
        for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf"):
            assert (module / name).is_file(), f"{module.name}/{name} is missing"
        for var, body in blocks(module / "variables.tf", "variable").items():
            assert "type" in body, f"{module.name}: variable {var} has no type"
            assert "description" in body, f"{module.name}: variable {var} has no description"
    validated = sum(
        "validation" in body
        for module in MODULES.iterdir()
        if module.is_dir()
        for body in blocks(module / "variables.tf", "variable").values()
    )
    assert validated >= 15


def _provider_pins(path: Path) -> dict[str, str]:
    pins = {}
    for block in parse_tf(path).get("terraform", []):
        for entry in block.get("required_providers", []):
            for name, spec in entry.items():
                if isinstance(spec, dict):
                    pins[unquote(name)] = unquote(spec["version"])
    return pins


def test_providers_are_pinned_and_environments_use_a_gcs_backend():
    for module in [*sorted(p for p in MODULES.iterdir() if p.is_dir()), STACK]:
        for name, version in _provider_pins(module / "versions.tf").items():
            assert version == "~> 6.0", f"{module.name}: {name} {version}"
    assert _provider_pins(STACK / "versions.tf") == {"google": "~> 6.0", "google-beta": "~> 6.0"}
    for env in ENVIRONMENTS:
        versions = TERRAFORM / "environments" / env / "versions.tf"
        assert _provider_pins(versions) == {"google": "~> 6.0", "google-beta": "~> 6.0"}
        backend = parse_tf(versions)["terraform"][0]["backend"][0]
        assert unquote(next(iter(backend))) == "gcs"
        variables = blocks(TERRAFORM / "environments" / env / "variables.tf", "variable")
        assert unquote(variables["region"]["default"]) == "europe-central2"


def _env_dir(env: str) -> Path:
    return TERRAFORM / "environments" / env


def test_environments_are_thin_callers_of_the_stack():
    """dev and prod: one `module "stack"` call, the same file; differences are variables."""
    mains = {env: (_env_dir(env) / "main.tf").read_text(encoding="utf-8") for env in ENVIRONMENTS}
    assert len(set(mains.values())) == 1, "dev and prod main.tf differ: make it a variable"
    stack_variables = blocks(STACK / "variables.tf", "variable")
    for env in ENVIRONMENTS:
        for path in _env_dir(env).glob("*.tf"):
            parsed = parse_tf(path)
            assert not {"resource", "data", "locals"} & set(parsed), f"{path}: belongs in the stack"
        modules = blocks(_env_dir(env) / "main.tf", "module")
        assert set(modules) == {"stack"}
        call = modules["stack"]
        assert unquote(call["source"]) == "../../stack"
        # Every setting of the stack is decided by the environment, from its own variables.
        passed = {k for k in call if not k.startswith("__")} - {"source"}
        assert passed == set(stack_variables), set(stack_variables) ^ passed
        env_variables = blocks(_env_dir(env) / "variables.tf", "variable")
        for name in passed:
            assert call[name] == f"${{var.{name}}}" and name in env_variables, (env, name)
        outputs = blocks(_env_dir(env) / "outputs.tf", "output")
        assert set(outputs) == set(blocks(STACK / "outputs.tf", "output"))


def test_the_stack_calls_every_module():
    calls = blocks(STACK / "main.tf", "module")
    sources = {unquote(b["source"]).removeprefix("../modules/") for b in calls.values()}
    assert sources == EXPECTED_MODULES
    assert "local.declarations.functions" in (STACK / "main.tf").read_text(encoding="utf-8")


def test_moved_blocks_lead_into_the_stack():
    """The state of the resources that lived in the environments follows them into the stack."""
    targets = {f"module.stack.module.{name}" for name in blocks(STACK / "main.tf", "module")}
    targets |= {
        f"module.stack.{t}.{n}" for p, t, n, _ in module_dir_resources() if p.parent == STACK
    }
    texts = {env: (_env_dir(env) / "moved.tf").read_text(encoding="utf-8") for env in ENVIRONMENTS}
    assert len(set(texts.values())) == 1
    for env in ENVIRONMENTS:
        moved = parse_tf(_env_dir(env) / "moved.tf").get("moved", [])
        assert moved
        for block in moved:
            source, target = block["from"], block["to"]
            assert target.strip("${}") in targets, (env, target)
            assert source.strip("${}") == target.strip("${}").removeprefix("module.stack."), block


def test_no_random_names():
    for path in tf_files():
        assert "random_" not in path.read_text(encoding="utf-8"), path


# -- checkov ------------------------------------------------------------------------------------
def _checkov() -> str | None:
    return os.environ.get("CHECKOV_BIN") or shutil.which("checkov")


def test_every_checkov_skip_is_justified():
    pattern = re.compile(r"#checkov:skip=(CKV2?_[A-Z0-9_]+)(:?)(.*)")
    for path in tf_files():
        for line in path.read_text(encoding="utf-8").splitlines():
            match = pattern.search(line)
            if match:
                assert match.group(2) == ":" and len(match.group(3).strip()) >= 20, (
                    f"{path}: {match.group(1)} is skipped without a reason"
                )


def test_checkov_is_pinned_in_the_pipeline():
    assert f"checkov=={CHECKOV_VERSION}" in (ROOT / "cloudbuild.yaml").read_text(encoding="utf-8")


@pytest.mark.skipif(_checkov() is None, reason="checkov not installed (set CHECKOV_BIN)")
def test_checkov_passes():
    result = subprocess.run([_checkov(), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == CHECKOV_VERSION
    result = subprocess.run(
        [
            _checkov(),
            *("-d", str(TERRAFORM), "--framework", "terraform", "--skip-download"),
            *("--quiet", "-o", "json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{c['check_id']} {c['resource']} {c['file_path']}"
        for report in reports
        for c in report.get("results", {}).get("failed_checks", [])
    ]
    assert failed == [] and result.returncode == 0, failed


# -- functions: code <-> declarations <-> Terraform ---------------------------------------------
def test_every_function_folder_is_declared_and_vice_versa():
    assert set(function_folders()) == set(declarations()["functions"])


@pytest.mark.parametrize("name", function_folders())
def test_trigger_matches_the_code(name: str):
    trigger = declarations()["functions"][name]["trigger"]
    assert decorator_kind(name) == TRIGGER_SIGNATURE[trigger], (
        f"functions/{name} is @functions_framework.{decorator_kind(name)}, "
        f"but declared as {trigger}"
    )


def test_the_stack_deploys_every_declared_function_with_its_folder_as_entry_point():
    call = blocks(STACK / "main.tf", "module")["function"]
    assert call["for_each"] == "${local.functions}"
    assert call["name"] == "${each.key}"
    assert call["trigger"] == "${each.value.trigger}"
    assert "${each.key}.zip" in call["source_zip"]
    assert "local.declarations.functions" in (STACK / "main.tf").read_text(encoding="utf-8")
    (function,) = [
        b for _, t, _, b in _module_resources("function") if t == "google_cloudfunctions2_function"
    ]
    assert function["build_config"][0]["entry_point"] == "${var.name}"
    assert function["name"] == "${local.resource_name}"


def test_every_declared_trigger_has_an_invoker_and_an_ingress():
    """Each trigger of common/declarations.py: accepted by the function module, mapped by the
    stack to the identity that calls it, and given an ingress setting."""
    triggers = set(TRIGGER_SIGNATURE)
    assert triggers == set(Function.model_fields["trigger"].annotation.__args__)
    stack = (STACK / "main.tf").read_text(encoding="utf-8")
    callers = re.search(r"caller_of_trigger = \{(.*?)\}", stack, re.DOTALL).group(1)
    assert set(re.findall(r"^\s*(\w+)\s*=", callers, re.MULTILINE)) == triggers
    function = (MODULES / "function" / "main.tf").read_text(encoding="utf-8")
    ingress = re.search(r"ingress = \{(.*?)\}\[var.trigger\]", function, re.DOTALL).group(1)
    assert set(re.findall(r"^\s*(\w+)\s*=", ingress, re.MULTILINE)) == triggers
    assert dict(re.findall(r'^\s*(\w+)\s*=\s*"(\w+)"', ingress, re.MULTILINE)) == {
        t: "ALLOW_ALL" if t in ("http", "identity_blocking") else "ALLOW_INTERNAL_ONLY"
        for t in triggers
    }
    variables = (MODULES / "function" / "variables.tf").read_text(encoding="utf-8")
    accepted = re.search(r'variable "trigger" \{.*?contains\(\[(.*?)\]', variables, re.DOTALL)
    assert set(re.findall(r'"(\w+)"', accepted.group(1))) == triggers


def _module_resources(module: str):
    return [r for r in module_dir_resources() if r[0].parent == MODULES / module]


def test_public_functions_are_exactly_the_openapi_backends():
    spec = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    x_functions = {
        op["x-function"]
        for item in spec["paths"].values()
        for method, op in item.items()
        if isinstance(op, dict) and "x-function" in op
    }
    public = {n for n, f in declarations()["functions"].items() if f.get("public")}
    assert x_functions == public
    for name in public:
        assert declarations()["functions"][name]["trigger"] == "http"


# -- messaging, queues, schedules: code <-> declarations ----------------------------------------
def test_topics_used_by_the_code_are_declared_and_vice_versa():
    decl = declarations()
    used = names_used_by_code()["topics"]
    assert "appointment-events" in used  # DomainEvent.topic
    assert used <= set(decl["topics"]), used - set(decl["topics"])
    dead_letter = {
        s["dead_letter_topic"] for s in decl["subscriptions"].values() if "dead_letter_topic" in s
    }
    assert set(decl["topics"]) == used | dead_letter


def test_subscriptions_match_topics_and_push_functions():
    decl = declarations()
    used = names_used_by_code()["topics"]
    dead_letter = {
        s["dead_letter_topic"] for s in decl["subscriptions"].values() if "dead_letter_topic" in s
    }
    pushed_to = set()
    for name, sub in decl["subscriptions"].items():
        assert sub["topic"] in used | dead_letter, f"{name} listens to a topic nobody publishes"
        if "push_function" in sub:
            target = sub["push_function"]
            assert target in function_folders(), f"{name} pushes to a missing function"
            assert decorator_kind(target) == "cloud_event"
            pushed_to.add(target)
            assert "dead_letter_topic" in sub, f"push subscription {name} has no dead-letter topic"
    for topic in dead_letter:  # every dead-letter topic can be read (and replayed) by an operator
        assert any(s["topic"] == topic for s in decl["subscriptions"].values()), topic
    cloud_event = {n for n in function_folders() if decorator_kind(n) == "cloud_event"}
    assert cloud_event == pushed_to


def test_queues_used_by_the_code_are_declared_and_vice_versa():
    declared = set(declarations()["queues"])
    used = names_used_by_code()["queues"]
    assert used <= declared, used - declared
    assert declared - used == set(DECLARED_NOT_YET_USED_QUEUES)


def test_schedules_target_scheduled_functions_and_vice_versa():
    decl = declarations()
    targets = {s["function"] for s in decl["schedules"].values()}
    scheduled = {n for n, f in decl["functions"].items() if f["trigger"] == "scheduled"}
    assert targets == scheduled
    for target in targets:
        assert target in function_folders() and decorator_kind(target) == "http"


def test_functions_publish_only_to_declared_topics_and_read_declared_secrets():
    decl = load_declarations()
    for name, function in decl.functions.items():
        assert set(function.publishes) <= set(decl.topics), name
        assert set(function.secrets) <= set(decl.secrets), name
    # Settings.from_env refuses to start without PESEL_HASH_KEY outside the emulators.
    assert all("PESEL_HASH_KEY" in f.secrets for f in decl.functions.values())


def test_check_references_rejects_undeclared_functions():
    raw = yaml.safe_load((ROOT / "common" / "declarations.yaml").read_text(encoding="utf-8"))
    raw["schedules"]["relay-outbox"]["function"] = "no_such_function"
    with pytest.raises(ValueError, match="unknown function"):
        Declarations.model_validate(raw).check_references()
    raw = yaml.safe_load((ROOT / "common" / "declarations.yaml").read_text(encoding="utf-8"))
    raw["subscriptions"]["outbox-audit-log"]["push_function"] = "relay_outbox"
    with pytest.raises(ValueError, match="not pubsub_push"):
        Declarations.model_validate(raw).check_references()


# -- Firestore: indexes and TTL the code needs -------------------------------------------------
def _firestore_call() -> dict:
    return blocks(STACK / "main.tf", "module")["firestore"]


def test_ordered_fields_of_the_code_are_indexed():
    call = _firestore_call()
    ordered = {unquote(v) for entry in [call["ordered_fields"]] for v in entry.values()}
    # The document name (paging a whole collection) is always indexed; other fields must be
    # kept indexed explicitly.
    assert names_used_by_code()["order_by"] - {"__name__"} <= ordered


# Who writes each TTL field (docs/retention.md says how long and why).
TTL_WRITERS = {
    "idempotency_keys": "common/services/idempotency.py",
    "integration_log": "common/services/integration_log.py",
    "quota_counters": "common/services/quotas.py",
    "queue_entries": "common/services/waiting_room.py",
    "holds": "common/services/holds.py",
    "seat_reservations": "common/services/reservations.py",
    "sms_dialogs": "common/services/sms_dialog.py",
    "sms_inbound": "common/services/sms_dialog.py",
    "notifications": "common/services/notifications.py",
    "phone_codes": "common/services/contacts.py",
    "phone_limits": "common/services/phone_limits.py",
    "callbacks": "common/services/callbacks.py",
    "p1_reports": "common/services/p1_reporting.py",
    "availability_deltas": "common/services/availability.py",
    "audit_log": "common/services/audit.py",
    "impact_jobs": "common/services/impact.py",
    "impact_cases": "common/services/impact.py",
    "replan_jobs": "common/services/replan.py",
    "replan_offers": "common/services/replan.py",
    "waitlist": "common/services/waitlist.py",
    "used_assertions": "common/services/sign_in.py",
}


def test_every_ttl_policy_names_the_code_that_writes_its_field_and_is_documented():
    policies = set(_firestore_call()["ttl_fields"])
    assert policies == set(TTL_WRITERS), {
        "TTL policies nobody checks": sorted(policies - set(TTL_WRITERS)),
        "writers without a TTL policy": sorted(set(TTL_WRITERS) - policies),
    }
    retention = (ROOT / "docs" / "retention.md").read_text(encoding="utf-8")
    for collection in policies:
        assert f"`{collection}`" in retention, f"docs/retention.md does not list {collection}"


@pytest.mark.parametrize(("collection", "module"), sorted(TTL_WRITERS.items()))
def test_ttl_fields_are_written_by_the_code(collection: str, module: str):
    field = unquote(_firestore_call()["ttl_fields"][collection])
    assert f'"{field}"' in (ROOT / module).read_text(encoding="utf-8")


# -- IAM: least privilege ------------------------------------------------------------------------
def _iam_resources():
    return [r for r in module_dir_resources() if "iam" in r[1]]


def test_no_broad_roles_and_no_public_members():
    assert _iam_resources()
    for path, rtype, name, body in _iam_resources():
        role = unquote(body.get("role", ""))
        assert not (role.startswith("roles/") and is_forbidden_role(role)), (path, name, role)
        member = str(body.get("member", "")) + str(body.get("members", ""))
        assert "allUsers" not in member and "allAuthenticatedUsers" not in member, (path, name)
        if rtype in {"google_project_iam_member", "google_project_iam_binding"}:
            # project-wide grants come only from the declarations, which are validated
            assert role == "${each.value}" and "var.project_roles" in body["for_each"]
    for path in tf_files():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r'role\s*=\s*"roles/(owner|editor)"', text), path
        assert "google_project_iam_policy" not in text and "google_project_iam_binding" not in text
    for name, function in load_declarations().functions.items():
        for role in function.project_roles:
            assert not is_forbidden_role(role), (name, role)


def test_every_function_has_its_own_service_account():
    resources = _module_resources("function")
    accounts = [b for _, t, _, b in resources if t == "google_service_account"]
    assert len(accounts) == 1 and accounts[0]["account_id"] == '"fn-${local.resource_name}"'
    (function,) = [b for _, t, _, b in resources if t == "google_cloudfunctions2_function"]
    service = function["service_config"][0]
    assert service["service_account_email"] == "${google_service_account.this.email}"


# -- API Gateway config rendering ----------------------------------------------------------------
@pytest.mark.skipif(TERRAFORM_BIN is None, reason="no terraform binary on PATH")
def test_openapi_render_gives_a_backend_to_every_operation(tmp_path: Path):
    public = sorted(n for n, f in declarations()["functions"].items() if f.get("public"))
    backends = {
        n: {"uri": f"https://{n.replace('_', '-')}-x.a.run.app", "deadline": 30} for n in public
    }
    root = {
        "module": {
            "render": {
                "source": str(MODULES / "openapi_render"),
                "openapi_path": str(OPENAPI),
                "identity_project_id": "demo-project",
                "backends": backends,
            }
        },
        "output": {
            "document": {"value": "${module.render.document}"},
            "missing": {"value": "${module.render.missing_backends}"},
        },
    }
    (tmp_path / "main.tf.json").write_text(json.dumps(root), encoding="utf-8")
    for args in (
        ["init", "-input=false", "-backend=false"],
        ["apply", "-auto-approve", "-input=false"],
    ):
        result = subprocess.run(
            [TERRAFORM_BIN, *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=_tf_env(),
            check=False,
        )
        assert result.returncode == 0, result.stderr
    out = subprocess.run(
        [TERRAFORM_BIN, "output", "-json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=_tf_env(),
        check=True,
    )
    outputs = json.loads(out.stdout)
    assert outputs["missing"]["value"] == []
    document = yaml.safe_load(outputs["document"]["value"])
    source = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    assert document["swagger"] == "2.0"
    assert set(document["paths"]) == set(source["paths"])
    for path, item in source["paths"].items():
        for method, op in item.items():
            rendered = document["paths"][path][method]
            assert "x-function" not in rendered
            backend = rendered["x-google-backend"]
            assert backend["address"] == backends[op["x-function"]]["uri"]
            assert backend["path_translation"] == "APPEND_PATH_TO_ADDRESS"
            assert backend["deadline"] == 30
            declared = {p["name"] for p in rendered["parameters"]}
            assert declared == set(re.findall(r"\{([^}/]+)\}", path))
    issuer = document["securityDefinitions"]["firebase"]["x-google-issuer"]
    assert issuer == "https://securetoken.google.com/demo-project"


# -- the public edge: per-client-address rate limit in front of the gateway --------------------
def _edge(rtype: str) -> dict[str, dict]:
    return {n: b for _, t, n, b in _module_resources("edge") if t == rtype}


def _ref(rtype: str, name: str, attribute: str = "id") -> str:
    return f"${{{rtype}.{name}.{attribute}}}"


def test_the_edge_throttles_each_client_ip_on_the_backend_that_fronts_the_api_gateway():
    """Issue 12: the public edge's Cloud Armor policy limits every client IP address, and it is
    the policy of the backend that the HTTPS entry point sends to, which is the API Gateway."""
    # The stack points the edge at the gateway it deploys, in the gateway's region.
    calls = blocks(STACK / "main.tf", "module")
    assert calls["edge"]["gateway_id"] == "${module.api_gateway.gateway_id}"
    assert calls["edge"]["gateway_region"] == calls["api_gateway"]["gateway_region"]
    # A serverless NEG whose deployment is that gateway...
    ((neg_name, neg),) = _edge("google_compute_region_network_endpoint_group").items()
    assert unquote(neg["network_endpoint_type"]) == "SERVERLESS"
    deployment = neg["serverless_deployment"][0]
    assert unquote(deployment["platform"]) == "apigateway.googleapis.com"
    assert deployment["resource"] == "${var.gateway_id}"
    assert neg["region"] == "${var.gateway_region}"
    # ... is the one group of the backend that carries the policy ...
    ((policy_name, policy),) = _edge("google_compute_security_policy").items()
    neg_ref = _ref("google_compute_region_network_endpoint_group", neg_name)
    fronting = {
        n: b
        for n, b in _edge("google_compute_backend_service").items()
        if [g["group"] for g in b["backend"]] == [neg_ref]
    }
    assert len(fronting) == 1, fronting
    ((backend_name, backend),) = fronting.items()
    assert unquote(backend["load_balancing_scheme"]) == "EXTERNAL_MANAGED"
    assert backend["security_policy"] in {
        _ref("google_compute_security_policy", policy_name, a) for a in ("id", "self_link")
    }
    # ... to which the HTTPS entry point sends every request (port 80 only redirects).
    rules = _edge("google_compute_global_forwarding_rule")
    proxies = _edge("google_compute_target_https_proxy")
    maps = _edge("google_compute_url_map")
    https = [r for r in rules.values() if unquote(r["port_range"]) == "443"]
    assert len(https) == 1 and unquote(https[0]["load_balancing_scheme"]) == "EXTERNAL_MANAGED"
    proxy = proxies[https[0]["target"].split(".")[1]]
    url_map = maps[proxy["url_map"].split(".")[1]]
    assert url_map["default_service"] == _ref("google_compute_backend_service", backend_name)
    assert not {k for k in url_map if k in ("host_rule", "path_matcher")}
    (http,) = [r for r in rules.values() if unquote(r["port_range"]) == "80"]
    http_proxy = _edge("google_compute_target_http_proxy")[http["target"].split(".")[1]]
    redirect = maps[http_proxy["url_map"].split(".")[1]]
    assert "default_service" not in redirect
    assert redirect["default_url_redirect"][0]["https_redirect"] is True
    # The rate rule: every address ("*"), keyed on the client IP, 429 past the threshold.
    rate_rules = [r for r in policy["rule"] if "rate_limit_options" in r]
    assert len(rate_rules) == 1
    (rule,) = rate_rules
    # throttle; with ip_ban a rate_based_ban, which throttles the same way below its ban
    assert rule["action"] in ('"throttle"', '${local.banning ? "rate_based_ban" : "throttle"}')
    assert unquote(rule["match"][0]["versioned_expr"]) == "SRC_IPS_V1"
    assert [unquote(r) for r in rule["match"][0]["config"][0]["src_ip_ranges"]] == ["*"]
    options = rule["rate_limit_options"][0]
    assert unquote(options["enforce_on_key"]) == "IP"
    assert unquote(options["conform_action"]) == "allow"
    assert unquote(options["exceed_action"]) == "deny(429)"
    threshold = options["rate_limit_threshold"][0]
    assert threshold["count"] == "${var.rate_limit.requests}"
    assert threshold["interval_sec"] == "${var.rate_limit.interval_sec}"
    # A conforming request is let through by the rate rule: a rule that refuses comes first.
    rate_priority = max(int(p) for p in re.findall(r"\d+", str(rule["priority"])))
    for other in policy["rule"]:
        if other is not rule and unquote(other["action"]).startswith("deny"):
            assert int(other["priority"]) < rate_priority, other
    # Defaults: 300 requests a minute per address, everywhere; no ban unless asked.
    edge_variables = blocks(MODULES / "edge" / "variables.tf", "variable")
    stack_variables = blocks(STACK / "variables.tf", "variable")
    assert edge_variables["rate_limit"]["default"] == {"requests": 300, "interval_sec": 60}
    assert stack_variables["edge_rate_limit"]["default"] == edge_variables["rate_limit"]["default"]
    assert edge_variables["ip_ban"]["default"] is None
    assert calls["edge"]["rate_limit"] == "${var.edge_rate_limit}"


# -- packaging ------------------------------------------------------------------------------
def _packager():
    sys.path.insert(0, str(TERRAFORM / "scripts"))
    try:
        import package_functions
    finally:
        sys.path.pop(0)
    return package_functions


def test_function_zips_have_main_at_the_root_and_are_reproducible(tmp_path: Path):
    packager = _packager()
    assert packager.discover() == function_folders()
    name = function_folders()[0]
    first = packager.build(name, tmp_path / "a").read_bytes()
    second = packager.build(name, tmp_path / "b").read_bytes()
    assert first == second
    archive = zipfile.ZipFile(tmp_path / "a" / f"{name}.zip")
    names = archive.namelist()
    assert "main.py" in names and "requirements.txt" in names and "common/__init__.py" in names
    # The function is built from the runtime lock: pinned, hashed, no local-stack tools.
    assert archive.read("requirements.txt") == (ROOT / "requirements.lock").read_bytes()
    assert "common/declarations.yaml" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_enqueuers_are_told_where_their_tasks_go() -> None:
    # ReminderScheduler targets SEND_REMINDER_URL; without it a deployed notify_patient would
    # aim its reminder tasks at the local gateway's address. Every Cloud Tasks target gets its
    # deterministic Cloud Run URL under <NAME>_URL.
    from common.declarations import load_declarations

    stack = (STACK / "main.tf").read_text(encoding="utf-8")
    targets = [n for n, f in load_declarations().functions.items() if f.trigger == "tasks"]
    assert targets
    for name in targets:
        url = (
            f'{name.upper()}_URL = "https://{name.replace("_", "-")}-'
            '${module.project_services.project_number}.${var.region}.run.app"'
        )
        assert url in stack, name


# -- identity: fail closed (docs/identity.md) ----------------------------------------------------
def test_no_function_can_be_given_emulator_mode_or_an_emulator_host():
    """LOCAL_STACK=1 and *_EMULATOR_HOST (with the Auth emulator's, firebase-admin accepts
    unsigned tokens) are the local stack's alone: the declarations refuse them, an
    environment's overrides cannot set variables at all, and the function module refuses them."""
    from pydantic import ValidationError

    from common.declarations import Function

    for name in ("LOCAL_STACK", "FIREBASE_AUTH_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST"):
        with pytest.raises(ValidationError):
            Function(trigger="http", env={name: "1"})
    for name, function in load_declarations().functions.items():
        assert not any(k == "LOCAL_STACK" or k.endswith("_EMULATOR_HOST") for k in function.env)
    overrides = (STACK / "variables.tf").read_text(encoding="utf-8")
    allowed = re.search(r'variable "function_overrides".*?contains\(\[(.*?)\]', overrides, re.S)
    assert "env" not in re.findall(r'"(\w+)"', allowed.group(1))
    module = (MODULES / "function" / "variables.tf").read_text(encoding="utf-8")
    block = re.search(r'variable "environment" \{.*?\n\}', module, re.S).group(0)
    assert '"LOCAL_STACK"' in block and '"_EMULATOR_HOST"' in block
    stack = (STACK / "main.tf").read_text(encoding="utf-8")
    assert "LOCAL_STACK" not in stack and "EMULATOR_HOST" not in stack


def test_only_the_blocking_function_is_invokable_by_all_users():
    module = (MODULES / "function" / "main.tf").read_text(encoding="utf-8")
    assert 'each.value != "allUsers" || var.trigger == "identity_blocking"' in module
    stack = (STACK / "main.tf").read_text(encoding="utf-8")
    callers = re.search(r"caller_of_trigger = \{(.*?)\n  \}", stack, re.DOTALL).group(1)
    public = [
        t for t, c in re.findall(r'^\s*(\w+)\s*=\s*"(\w+)"', callers, re.M) if c == "allUsers"
    ]
    assert public == ["identity_blocking"]
    blocking = [
        n for n, f in load_declarations().functions.items() if f.trigger == "identity_blocking"
    ]
    assert blocking == ["authorize_sign_in"]


def test_identity_platform_is_configured_by_terraform():
    identity = (MODULES / "identity" / "main.tf").read_text(encoding="utf-8")
    for needed in (
        "google_identity_platform_config",
        "google_identity_platform_oauth_idp_config",
        'event_type   = "beforeCreate"',
        'event_type   = "beforeSignIn"',
        "id_token = true",
        "totp_provider_config",
    ):
        assert needed in identity, needed
    role = re.search(r"permissions = \[(.*?)\]", identity, re.S).group(1)
    assert set(re.findall(r'"([\w.]+)"', role)) <= {
        "firebaseauth.users.create",
        "firebaseauth.users.get",
        "firebaseauth.users.update",
    }
