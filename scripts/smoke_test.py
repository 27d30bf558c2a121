"""Smoke test of a deployed API: GET the search endpoint of api/openapi.yaml with a real token.

The token comes from the environment: SMOKE_TEST_TOKEN holds the refresh token of a synthetic
test patient (Secret Manager, see docs/operations.md); with FIREBASE_API_KEY set it is
exchanged for a fresh ID token at the Secure Token API, without it it is used as an ID token.
Retries for a while, as a new API Gateway config takes a minute or two to serve.

Usage: python scripts/smoke_test.py --base-url https://<gateway host> [--attempts 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

OPENAPI = Path(__file__).resolve().parent.parent / "api" / "openapi.yaml"
SEARCH_FUNCTION = "search_slots"
SECURE_TOKEN_URL = "https://securetoken.googleapis.com/v1/token"


def search_path(openapi: Path = OPENAPI) -> str:
    spec = yaml.safe_load(openapi.read_text(encoding="utf-8"))
    for path, item in spec["paths"].items():
        operation = item.get("get") or {}
        if operation.get("x-function") == SEARCH_FUNCTION:
            return path
    raise SystemExit(f"api/openapi.yaml has no GET operation of {SEARCH_FUNCTION}")


def id_token() -> str:
    secret = os.environ.get("SMOKE_TEST_TOKEN", "").strip()
    if not secret:
        raise SystemExit("SMOKE_TEST_TOKEN is not set")
    api_key = os.environ.get("FIREBASE_API_KEY", "").strip()
    if not api_key:
        return secret
    body = urllib.parse.urlencode({"grant_type": "refresh_token", "refresh_token": secret})
    request = urllib.request.Request(
        f"{SECURE_TOKEN_URL}?key={urllib.parse.quote(api_key)}",
        data=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.load(response)["id_token"]


def check(base_url: str, token: str) -> tuple[bool, str]:
    query = urllib.parse.urlencode({"postcode": "00-001", "limit": 1})
    url = f"{base_url.rstrip('/')}{search_path()}?{query}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.load(response)
    except urllib.error.HTTPError as err:
        return False, f"{url}: HTTP {err.code} {err.read()[:300]!r}"
    except (urllib.error.URLError, OSError, ValueError) as err:
        return False, f"{url}: {err}"
    if not isinstance(body, dict) or "items" not in body:
        return False, f"{url}: unexpected body {str(body)[:300]}"
    return True, f"{url}: 200, {len(body['items'])} item(s)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Smoke test of the deployed API")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--attempts", type=int, default=10)
    parser.add_argument("--wait", type=float, default=15.0)
    args = parser.parse_args(argv)
    token = id_token()
    for attempt in range(1, args.attempts + 1):
        ok, message = check(args.base_url, token)
        print(f"attempt {attempt}: {message}")
        if ok:
            return 0
        time.sleep(args.wait)
    return 1


if __name__ == "__main__":
    sys.exit(main())
