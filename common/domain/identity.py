"""Who a patient is, as the national login node (login.gov.pl) asserts it.

The node authenticates the person (Profil Zaufany, e-dowód, bank login) and asserts their
PESEL at a level of assurance. Identity Platform federates with it as an OIDC provider; the
identity blocking function (functions/authorize_sign_in) verifies the node's ID token again
and turns it into the claims every function reads: `role=patient` and `pesel`
(docs/identity.md). The OIDC claims of the node's ID token (its bridge's contract): `sub`
(an opaque, stable subject), `pesel`, `acr` (the eIDAS level of assurance) and `jti`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from common.domain.errors import DomainError
from common.domain.pesel import is_valid_pesel

# eIDAS levels the node asserts; "low" (e.g. a plain e-mail login) never opens a patient's data.
ACCEPTED_ASSURANCE = frozenset(
    {
        "http://eidas.europa.eu/LoA/substantial",
        "http://eidas.europa.eu/LoA/high",
    }
)


class SignInRefusedError(DomainError):
    """This sign-in is refused."""

    code = "sign_in_refused"
    http_status = 403


@dataclass(frozen=True)
class PatientAssertion:
    subject: str
    pesel: str = field(repr=False)
    assurance: str
    assertion_id: str
    expires_at: int


def patient_from_claims(claims: dict[str, Any], today: date) -> PatientAssertion:
    """The patient of a verified login-node ID token, or SignInRefusedError."""
    subject, pesel, acr, jti = (claims.get(k) for k in ("sub", "pesel", "acr", "jti"))
    if not isinstance(subject, str) or not subject:
        raise SignInRefusedError("the login node's assertion names no subject")
    if acr not in ACCEPTED_ASSURANCE:
        raise SignInRefusedError("the login node's assertion is below the required assurance")
    if not (isinstance(pesel, str) and is_valid_pesel(pesel, today)):
        raise SignInRefusedError("the login node's assertion carries no valid PESEL")
    if not isinstance(jti, str) or not jti:
        raise SignInRefusedError("the login node's assertion has no id (jti)")
    return PatientAssertion(subject, pesel, acr, jti, int(claims["exp"]))


def patient_claims(assertion: PatientAssertion) -> dict[str, Any]:
    """The claims of the patient's ID tokens: session claims, never stored on the user."""
    return {"role": "patient", "pesel": assertion.pesel}
