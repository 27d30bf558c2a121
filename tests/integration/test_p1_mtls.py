"""P1 over mutual TLS (issue 13, item 7): P1 knows us by our client certificate.

A local CA (emulator/certs.py, generated into the test's temporary folder: no key is ever
committed) signs the P1 simulator's server certificate and our client certificate. The
simulator requires a client certificate of that CA: a call without one is refused in the
handshake, with one it is served; the functions reach it with P1_CLIENT_CERT / P1_CLIENT_KEY
(paths locally, PEM contents as Secret Manager hands them in production) and P1_CA_CERT, and
no bearer token.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import requests
from werkzeug.test import Client

from common import wiring
from common.adapters.firestore_store import PATIENTS, REFERRALS
from common.adapters.http_errors import PeerAuthError
from common.adapters.p1_client import P1Client
from common.adapters.vault import FieldVault
from common.domain.pesel import make_pesel
from emulator.certs import Pki, generate_pki
from emulator.faults import RunningServer
from emulator.p1 import start_p1
from tests.support.stack import firestore_client, gateway, today_warsaw


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return generate_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def p1(pki: Pki) -> Iterator[RunningServer]:
    with start_p1(pki=pki) as server:
        yield server


def _without_certificate(pki: Pki) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(pki.ca)
    return session


def test_a_call_without_a_client_certificate_is_refused_and_one_with_it_is_served(
    p1: RunningServer, pki: Pki
):
    assert p1.base_url.startswith("https://")
    url = f"{p1.base_url}/p1/v1/referrals"
    with pytest.raises(requests.exceptions.SSLError):
        _without_certificate(pki).get(url, timeout=5)
    # A certificate of another CA is refused just the same.
    other = generate_pki(Path(str(pki.folder) + "-other"))
    stranger = _without_certificate(pki)
    stranger.cert = (str(other.client_cert), str(other.client_key))
    with pytest.raises(requests.exceptions.SSLError):
        stranger.get(url, timeout=5)
    # A bearer token is no way in either (the simulator's old local token).
    with pytest.raises(requests.exceptions.SSLError):
        _without_certificate(pki).get(
            url, headers={"Authorization": "Bearer local-p1-token"}, timeout=5
        )
    # Our client without its certificate: a PeerAuthError (a 4xx-like refusal, not "retry").
    bare = P1Client(p1.base_url, None)
    bare._session.verify, bare._session.trust_env = str(pki.ca), False
    with pytest.raises(PeerAuthError) as refused:
        bare.referrals_since(None)
    assert refused.value.code == "tls_handshake_failed"
    # With it: served.
    client = P1Client.mutual_tls(
        p1.base_url, str(pki.client_cert), str(pki.client_key), str(pki.ca)
    )
    assert client.referrals_since(None) == ([], "0")
    context = pki.client_context()
    with urllib.request.urlopen(url, timeout=5, context=context) as answer:
        assert answer.status == 200


def test_our_client_checks_p1s_certificate_too(p1: RunningServer, pki: Pki):
    """Mutual: P1's certificate must be signed by the CA we were given (not any CA)."""
    other = generate_pki(Path(str(pki.folder) + "-ca2"))
    client = P1Client.mutual_tls(
        p1.base_url, str(pki.client_cert), str(pki.client_key), str(other.ca)
    )
    with pytest.raises(PeerAuthError):
        client.referrals_since(None)


def test_from_env_takes_pem_contents_and_refuses_to_run_without_a_certificate(
    p1: RunningServer, pki: Pki
):
    pem = {
        "P1_BASE_URL": p1.base_url,
        "P1_CLIENT_CERT": pki.client_cert.read_text(),
        "P1_CLIENT_KEY": pki.client_key.read_text(),
        "P1_CA_CERT": pki.ca.read_text(),
    }
    assert P1Client.from_env(pem).referrals_since(None) == ([], "0")
    production = {"P1_BASE_URL": p1.base_url, "P1_TOKEN": "a-token"}  # no emulator mode
    with pytest.raises(RuntimeError, match="P1_CLIENT_CERT"):
        P1Client.from_env(production)
    with pytest.raises(RuntimeError, match="https"):
        P1Client.from_env({**pem, "P1_BASE_URL": p1.base_url.replace("https", "http")})


def test_the_functions_reach_p1_over_mutual_tls(
    project: str, p1: RunningServer, pki: Pki, monkeypatch: pytest.MonkeyPatch
):
    """sync_p1_referrals through the dev gateway: referrals in over mutual TLS, with the
    PESEL kept encrypted; without the certificate the function refuses to call P1."""
    pesel = make_pesel(date(1950, 3, 3), "F", 17)
    state = p1.app.extensions["p1"]
    state.issue([pesel], "primary", today_warsaw(), 90)
    monkeypatch.setenv("P1_BASE_URL", p1.base_url)
    monkeypatch.delenv("P1_TOKEN", raising=False)
    for name, value in pki.client_env().items():
        monkeypatch.setenv(name, value)
    wiring.reset()
    synced = Client(gateway()).post("/_functions/sync_p1_referrals", json={})
    assert synced.status_code == 200, synced.get_json()
    assert synced.get_json()["written"] == 1
    db = firestore_client(project)
    (referral,) = [d.to_dict() for d in db.collection(REFERRALS).stream()]
    patient = db.collection(PATIENTS).document(referral["patient_key"]).get().to_dict()
    assert pesel not in str(patient) and patient["pesel_enc"].startswith("v1:")
    assert (
        FieldVault.from_env().decrypt(patient["pesel_enc"], f"pesel|{referral['patient_key']}")
        == pesel
    )
    # Without the certificate (a deployment missing its secret): no call to P1 at all.
    monkeypatch.delenv("P1_CLIENT_CERT")
    wiring.reset()
    refused = Client(gateway()).post("/_functions/sync_p1_referrals", json={})
    assert refused.status_code >= 500
