"""Errors scrub anything that looks like a PESEL, but never one of our ids."""

from __future__ import annotations

import uuid

from common.domain.errors import AlreadyBookedError, DomainError

PESEL = "44051401359"


def test_a_pesel_is_redacted_in_the_message_and_the_details() -> None:
    err = DomainError(f"no referral for {PESEL}", details={"pesel": PESEL, "list": [PESEL]})
    assert PESEL not in err.message and "[redacted]" in err.message
    assert err.details == {"pesel": "[redacted]", "list": ["[redacted]"]}


def test_an_id_with_eleven_digits_in_a_row_is_kept_whole() -> None:
    # The id of the walk-in test that failed one run in twenty: 11 digits inside the hex.
    appointment_id = "fdb201ca6c174a02846960593d4c0041"
    err = AlreadyBookedError(details={"appointment_id": appointment_id})
    assert err.details["appointment_id"] == appointment_id
    err = DomainError(f"appointment {appointment_id} is booked")
    assert appointment_id in err.message


def test_every_id_survives_and_a_pesel_beside_one_does_not() -> None:
    for _ in range(2000):
        appointment_id = uuid.uuid4().hex
        err = DomainError(f"{appointment_id} {PESEL}", details={"id": appointment_id})
        assert err.details["id"] == appointment_id
        assert err.message == f"{appointment_id} [redacted]"
