"""The patient document, `patients/{patient_key}`: what we keep about a person, and how.

    patient_key      HMAC of the PESEL (PESEL_HASH_KEY): the document id, and how every other
                     collection names the patient
    birth_date, sex  what eligibility, ages and lists need (a list shows `masked_pesel`, which
                     the birth date gives: YYMMDD*****)
    pesel_enc        the PESEL encrypted (common/adapters/vault.py, context pesel|<key>): read
                     back only to report a vaccination to P1 and to ask P1 for the patient's
                     profile; never a clear `pesel` field
    phone            the verified mobile number for confirmations and reminders, with
    phone_source     "p1" (the patient's IKP profile, through our P1 client), "patient" (given
                     by the patient, proved by a one-time code) or "hotline" (set by an agent
                     for a caller, audited with the reason)
    phone_verified_at, phone_updated_at; phone_checked_at (when P1 last had no number)

Documents written before this layout carry a clear `pesel`: it is still read (`facts_of`,
`pesel_of`), `identity_fields` removes it (DELETE_FIELD) whenever the P1 sync touches a
patient, and `migrate_clear_pesels` (scripts/migrate_clear_pesels.py) rewrites every one left,
in `patients`, `callbacks` and `sms_dialogs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from google.cloud.firestore_v1 import DELETE_FIELD

from common.adapters.firestore_store import PATIENTS
from common.adapters.vault import FieldVault, VaultError
from common.domain.calendar import WARSAW
from common.domain.errors import InvalidPeselError
from common.domain.pesel import Pesel, make_pesel, parse_pesel

PESEL_CONTEXT = "pesel|{key}"


@dataclass(frozen=True)
class PatientFacts:
    """What lists and rules need of a patient, without the PESEL: the same attributes as
    `Pesel` (masked, birth_date, sex), so `patient_summary` and the age rules take either."""

    birth_date: date
    sex: str

    @property
    def masked(self) -> str:
        return masked_pesel(self.birth_date)


def masked_pesel(birth_date: date) -> str:
    """YYMMDD***** (the month carries the century), which is all a list ever shows."""
    return make_pesel(birth_date, "F", 0)[:6] + "*" * 5


def pesel_context(patient_key: str) -> str:
    return PESEL_CONTEXT.format(key=patient_key)


def identity_fields(pesel: Pesel, patient_key: str, vault: FieldVault | None) -> dict[str, Any]:
    """The fields a write of the patient's identity sets (merge=True): never a clear PESEL;
    the encrypted one only with a vault (without one, nothing can report for them to P1)."""
    fields: dict[str, Any] = {
        "patient_key": patient_key,
        "birth_date": pesel.birth_date.isoformat(),
        "sex": pesel.sex,
        "pesel": DELETE_FIELD,  # a document of the older layout loses its clear PESEL
    }
    if vault is not None:
        fields["pesel_enc"] = vault.encrypt(pesel.value, pesel_context(patient_key))
    return fields


def new_patient_document(pesel: Pesel, patient_key: str, vault: FieldVault) -> dict[str, Any]:
    """A whole patient document (a plain `set`, for seeds and tests): `identity_fields`
    without the removal of an older layout's clear PESEL."""
    fields = identity_fields(pesel, patient_key, vault)
    fields.pop("pesel")
    return fields


def pesel_of(
    data: dict[str, Any] | None, patient_key: str, vault: FieldVault | None, today: date
) -> Pesel | None:
    """The patient's PESEL, decrypted (or from a document of the older layout); None when the
    document has none we can read."""
    if not data:
        return None
    raw: Any = None
    if isinstance(data.get("pesel_enc"), str) and vault is not None:
        try:
            raw = vault.decrypt(data["pesel_enc"], pesel_context(patient_key))
        except VaultError:
            raw = None
    if raw is None and isinstance(data.get("pesel"), str):
        raw = data["pesel"]
    if not isinstance(raw, str):
        return None
    try:
        return parse_pesel(raw, today)
    except InvalidPeselError:
        return None


def facts_of(data: dict[str, Any] | None, today: date) -> PatientFacts | None:
    """Birth date and sex from the document (or a legacy clear PESEL); None if unknown."""
    if not data:
        return None
    born, sex = data.get("birth_date"), data.get("sex")
    if isinstance(born, str) and sex in ("F", "M"):
        try:
            return PatientFacts(date.fromisoformat(born), sex)
        except ValueError:
            return None
    if isinstance(data.get("pesel"), str):
        try:
            pesel = parse_pesel(data["pesel"], today)
        except InvalidPeselError:
            return None
        return PatientFacts(pesel.birth_date, pesel.sex)
    return None


def migrate_clear_pesels(
    units: Any, vault: FieldVault, now: datetime, page: int = 200
) -> dict[str, int]:
    """Rewrite documents of the older layout that still hold a clear PESEL (one page of each
    collection per call; run until it reports zeros: scripts/migrate_clear_pesels.py).

    patients: encrypted (`identity_fields`); callbacks: masked; SMS dialogs: encrypted under
    the dialog's context (the conversation may still need it for its booking). Each document is
    one unit of work, guarded by its version: a concurrent change makes it run again."""
    from common.adapters.firestore_store import CALLBACKS, SMS_DIALOGS
    from common.domain.errors import DependencyUnavailableError

    def contended() -> Exception:
        return DependencyUnavailableError("a document kept changing; run the migration again")

    counts = {"patients": 0, "callbacks": 0, "sms_dialogs": 0, "unreadable": 0}
    today = now.astimezone(WARSAW).date()
    for collection in (PATIENTS, CALLBACKS, SMS_DIALOGS):
        for found in units.reader().query(collection, ("pesel", "!=", None), limit=page):

            def attempt(uow: Any, doc_id: str = found.id, name: str = collection) -> str:
                current = uow.get(name, doc_id)
                raw = current.data.get("pesel") if current is not None else None
                if not isinstance(raw, str):
                    return "done"
                try:
                    pesel = parse_pesel(raw, today)
                except InvalidPeselError:
                    uow.update(name, doc_id, {"pesel": DELETE_FIELD}, if_version=current.version)
                    return "unreadable"
                if name == PATIENTS:
                    fields = identity_fields(pesel, doc_id, vault)
                elif name == CALLBACKS:
                    fields = {"masked_pesel": pesel.masked, "pesel": DELETE_FIELD}
                else:
                    context = f"sms-dialog-pesel|{doc_id}"
                    fields = {
                        "pesel_enc": vault.encrypt(pesel.value, context),
                        "pesel": DELETE_FIELD,
                    }
                uow.update(name, doc_id, fields, if_version=current.version)
                return name

            outcome = units.run(attempt, gave_up=contended)
            if outcome in counts:
                counts[outcome] += 1
    return counts
