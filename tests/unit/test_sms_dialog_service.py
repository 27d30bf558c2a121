"""SmsDialogService against the in-memory unit of work.

In-test stand-ins: the SMS gateway (one message per client_message_id), search (a fixed list
of slots), the booking (a commit through the same units, with the idempotency record in it,
so "books once" is the store's create precondition, not a counter) and the idempotency
look-up. The reply goes through the real SmsSender. Checked: the conversation's decisions, one
reply and one booking per message under redelivery, claims already taken (inbound and dialog),
Firestore down at each step, and the gateway or the booking down (the error, nothing done).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from common.adapters.firestore_store import (
    APPOINTMENTS,
    REFERRALS,
    SMS_DIALOGS,
    SMS_INBOUND,
)
from common.adapters.sms_client import SmsInbound
from common.adapters.vault import FieldVault
from common.domain.calendar import SlotRef
from common.domain.errors import (
    AlreadyBookedError,
    DependencyUnavailableError,
    SlotUnavailableError,
    SmsDialogBusyError,
    ValidationFailedError,
)
from common.domain.pesel import make_pesel, parse_pesel, pesel_key
from common.domain.rulebook import load_rule_book
from common.services.booking import BookAppointment
from common.services.idempotency import (
    Idempotency,
    IdempotencyScope,
    StoredResponse,
)
from common.services.notifications import SmsSender, phone_key, short_hash
from common.services.phone_limits import PhoneLimits
from common.services.sms_dialog import SmsDialogService
from tests.support.fake_store import FakeFirestore, FakeUnitsOfWork

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
SECRET = b"unit-test-secret"
VAULT = FieldVault({"t": b"v" * 32}, "t")
PHONE = "+48600200001"
PESEL = make_pesel(date(1944, 5, 14), "M", 135)
POINT = "pt-00001"
SLOTS = [f"{POINT}_20261210_{hhmm}_comirnaty" for hhmm in ("1000", "1100", "1200")]


class FakeGateway:
    def __init__(self) -> None:
        self.messages: dict[str, dict[str, str]] = {}
        self.calls = 0
        self.down = False

    def send(self, to: str, text: str, client_message_id: str) -> str:
        self.calls += 1
        if self.down:
            raise DependencyUnavailableError("SMS gateway is unavailable (connection)")
        known = self.messages.setdefault(
            client_message_id, {"to": to, "text": text, "id": f"SMS-{len(self.messages) + 1}"}
        )
        return known["id"]

    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages.values()]


class FakeSearch:
    """The nearest free slots, nearest first; an unknown postcode is a validation error."""

    def __init__(self, slot_ids: list[str]) -> None:
        self.slot_ids = list(slot_ids)

    def search(self, query: Any, now: datetime) -> dict[str, Any]:
        if query.postcode != "31-001":
            raise ValidationFailedError("unknown postcode")
        slots = []
        for slot_id in self.slot_ids:
            ref = SlotRef.parse(slot_id)
            slots.append(
                {
                    "slot_id": slot_id,
                    "point_id": ref.point_id,
                    "product": ref.product,
                    "starts_at": ref.starts_at.isoformat(),
                }
            )
        point = {"name": "Punkt Dluga", "street": "ul. Dluga 1", "postcode": "31-001"}
        return {"items": [{"point": point, "earliest_slots": slots}], "next_cursor": None}


class FakeBooking:
    """Books in one commit with the idempotency record, as BookingService does."""

    def __init__(self, units: FakeUnitsOfWork) -> None:
        self.units = units
        self.calls = 0
        self.fault: Exception | None = None
        self.taken: set[str] = set()
        self.after_commit: Callable[[], None] | None = None

    def book(self, cmd: BookAppointment, now: datetime, idem: IdempotencyScope | None):
        self.calls += 1
        if self.fault is not None:
            raise self.fault
        if cmd.slot_id in self.taken:
            raise SlotUnavailableError("all seats of this slot are taken")
        ref = SlotRef.parse(cmd.slot_id)
        appointment_id = uuid.uuid4().hex
        body = {
            "appointments": [
                {
                    "appointment_id": appointment_id,
                    "starts_at": ref.starts_at.isoformat(),
                    "product": ref.product,
                    "dose_number": 1,
                }
            ]
        }

        def attempt(uow):
            uow.create(
                APPOINTMENTS,
                appointment_id,
                {"slot_id": cmd.slot_id, "channel": cmd.channel, "actor": cmd.actor.uid},
            )
            return uow.respond(StoredResponse(201, body))

        result = self.units.run(attempt, idem=idem, gave_up=lambda: RuntimeError("busy"))
        if self.after_commit is not None:
            hook, self.after_commit = self.after_commit, None
            hook()
        return result


class FakeContacts:
    """Whose verified number is whose (ContactService.phone_of); P1 down on demand."""

    def __init__(self) -> None:
        self.phones: dict[str, str] = {}
        self.asked: list[str] = []
        self.down = False

    def phone_of(self, patient_key: str, now: datetime, pesel: Any = None) -> str | None:
        self.asked.append(patient_key)
        if self.down:
            raise DependencyUnavailableError("P1 is unavailable (timeout)")
        return self.phones.get(patient_key)


def key_of(pesel: str) -> str:
    return pesel_key(parse_pesel(pesel, NOW.date()), SECRET)


class World:
    def __init__(self) -> None:
        self.units = FakeUnitsOfWork(now=lambda: NOW)
        self.store: FakeFirestore = self.units.store
        self.gateway = FakeGateway()
        self.search = FakeSearch(SLOTS)
        self.booking = FakeBooking(self.units)
        self.contacts = FakeContacts()
        self.dialog = SmsDialogService(
            self.units,
            load_rule_book(),
            self.booking,  # type: ignore[arg-type]
            self.search,  # type: ignore[arg-type]
            Idempotency(self.units),
            SmsSender(self.units, self.gateway, VAULT),  # type: ignore[arg-type]
            SECRET,
            vault=VAULT,
            contacts=self.contacts,
            limits=PhoneLimits(SECRET),
        )
        key = pesel_key(parse_pesel(PESEL, NOW.date()), SECRET)
        # The patient texts from their own verified number (the usual case).
        self.contacts.phones[key] = PHONE
        self.store.put(
            REFERRALS,
            "REF-1",
            {"patient_key": key, "referral": {"status": "active", "valid_to": "2027-06-01"}},
        )

    def sms(
        self, text: str, message_id: str | None = None, at: datetime = NOW, phone: str = PHONE
    ) -> str:
        inbound = SmsInbound.model_validate(
            {
                "message_id": message_id or uuid.uuid4().hex,
                "from": phone,
                "text": text,
                "received_at": at,
            }
        )
        return self.dialog.receive(inbound, at)

    def state(self, phone: str = PHONE) -> dict[str, Any]:
        return self.store.data(SMS_DIALOGS, phone_key(phone, SECRET)) or {}

    def inbound(self, message_id: str) -> dict[str, Any] | None:
        return self.store.data(SMS_INBOUND, short_hash("sms-inbound", message_id))

    def appointments(self) -> list[dict[str, Any]]:
        return list(self.store.collection(APPOINTMENTS).values())


@pytest.fixture
def world() -> World:
    return World()


def before_commit_of(store: FakeFirestore, collection: str, action: Callable[[], None]) -> None:
    """Run `action` once, right before the first commit that writes to `collection` (what a
    concurrent request does between our reads and our commit)."""
    real_commit = store.commit
    pending = [True]

    def commit(writes, now):
        if pending[0] and any(key[0] == collection for _, key, _, _ in writes):
            pending[0] = False
            action()
        return real_commit(writes, now)

    store.commit = commit  # type: ignore[method-assign]


# -- the conversation --------------------------------------------------------------------------
def test_pesel_and_postcode_get_the_nearest_slot_and_a_redelivery_the_same_single_reply(
    world: World,
):
    assert world.sms(f"{PESEL} 31-001", message_id="m1") == "offered"
    assert world.sms(f"{PESEL} 31-001", message_id="m1") == "duplicate"
    (reply,) = world.gateway.texts()
    assert reply.startswith("Proponowany termin: 10.12.2026 godz. 10:00") and PESEL not in reply
    state = world.state()
    assert state["state"] == "offered" and state["offer"]["slot_id"] == SLOTS[0]
    assert world.inbound("m1")["status"] == "done" and world.gateway.calls == 1


def test_nie_offers_the_next_slot_not_offered_before(world: World):
    world.sms(f"{PESEL} 31-001")
    assert world.sms("NIE") == "offered"
    assert world.state()["offer"]["slot_id"] == SLOTS[1]
    assert world.state()["offered"] == SLOTS[:2]
    world.sms("NIE")
    assert world.sms("NIE") == "no_slots"
    assert world.state()["state"] == "idle"


def test_tak_books_once_however_often_it_arrives(world: World):
    world.sms(f"{PESEL} 31-001")
    assert world.sms("TAK", message_id="tak-1") == "booked"
    assert world.sms("TAK", message_id="tak-1") == "duplicate"
    assert world.sms("TAK") == "already_booked"
    assert world.sms("NIE") == "already_booked"  # a NIE delivered late skips nothing
    (appointment,) = world.appointments()
    assert appointment["slot_id"] == SLOTS[0] and appointment["channel"] == "sms"
    state = world.state()
    assert state["state"] == "booked" and state["pesel_enc"] is None  # kept no longer
    replies = world.gateway.texts()
    assert len(replies) == 4 and replies[1].startswith("Zarezerwowano: szczepienie Comirnaty")


def test_an_expired_offer_books_nothing(world: World):
    world.sms(f"{PESEL} 31-001")
    later = NOW + timedelta(minutes=10, seconds=1)
    assert world.sms("TAK", at=later) == "expired"
    assert world.sms("TAK", at=later) == "no_offer"
    assert world.booking.calls == 0 and world.appointments() == []


def test_refusals_before_any_offer(world: World):
    assert world.sms("44051401358 31-001") == "invalid_pesel"
    assert world.sms(f"{PESEL} 99-999") == "bad_postcode"
    other = make_pesel(date(1950, 1, 1), "F", 7)
    world.contacts.phones[key_of(other)] = PHONE  # a relative's on the same phone
    assert world.sms(f"{other} 31-001") == "no_referral"
    assert world.sms("dzien dobry") == "help"
    assert all(other not in text for text in world.gateway.texts())


def test_a_slot_taken_since_the_offer_offers_the_next_at_once(world: World):
    world.sms(f"{PESEL} 31-001")
    world.booking.taken.add(SLOTS[0])
    assert world.sms("TAK") == "offered"
    assert world.gateway.texts()[-1].startswith("Ten termin zostal wlasnie zajety. Proponowany")
    assert world.state()["offer"]["slot_id"] == SLOTS[1] and world.appointments() == []
    assert world.sms("TAK") == "booked"


def test_a_refusal_by_the_booking_rules_ends_the_offer(world: World):
    world.sms(f"{PESEL} 31-001")
    world.booking.fault = AlreadyBookedError("already booked")
    assert world.sms("TAK") == "already_booked"
    assert world.state()["state"] == "idle" and world.appointments() == []


# -- claims already taken ---------------------------------------------------------------------
def test_a_message_in_hand_elsewhere_is_busy_and_a_dead_claim_is_taken_over(world: World):
    inbound_id = short_hash("sms-inbound", "m1")
    world.store.put(SMS_INBOUND, inbound_id, {"status": "processing", "claimed_at": NOW})
    with pytest.raises(SmsDialogBusyError):
        world.sms(f"{PESEL} 31-001", message_id="m1")
    assert world.gateway.calls == 0 and world.state() == {}
    world.store.put(
        SMS_INBOUND, inbound_id, {"status": "processing", "claimed_at": NOW - timedelta(seconds=31)}
    )
    assert world.sms(f"{PESEL} 31-001", message_id="m1") == "offered"
    assert world.inbound("m1")["status"] == "done"


def test_a_copy_claimed_between_our_read_and_our_commit_is_busy(world: World):
    inbound_id = short_hash("sms-inbound", "m1")
    before_commit_of(
        world.store,
        SMS_INBOUND,
        lambda: world.store.put(
            SMS_INBOUND, inbound_id, {"status": "processing", "claimed_at": NOW}
        ),
    )
    with pytest.raises(SmsDialogBusyError):
        world.sms(f"{PESEL} 31-001", message_id="m1")
    assert world.gateway.calls == 0 and world.state() == {}
    # Our failed attempt did not release the other copy's claim.
    assert world.inbound("m1")["status"] == "processing"


def test_a_nie_racing_a_tak_decides_again_on_the_booking(world: World):
    """The NIE read `offered`; the TAK's phase 1 lands before the NIE commits: the NIE's
    stale version makes it read again, find the booking in hand, and answer busy."""
    world.sms(f"{PESEL} 31-001")
    key = phone_key(PHONE, SECRET)
    state = world.state()
    before_commit_of(
        world.store,
        SMS_DIALOGS,
        lambda: world.store.put(
            SMS_DIALOGS,
            key,
            {**state, "state": "booking", "booking_by": "tak-1", "booking_since": NOW},
        ),
    )
    with pytest.raises(SmsDialogBusyError):
        world.sms("NIE", message_id="nie-1")
    assert world.state()["offer"] == state["offer"]  # no offer skipped
    assert world.inbound("nie-1") is None  # released: the gateway delivers it again later


def test_a_stop_landing_before_the_tak_commits_books_nothing(world: World):
    """The TAK read `offered`; a STOP ends the conversation before the TAK's phase 1 commits:
    the stale version makes the TAK read again and find no offer."""
    world.sms(f"{PESEL} 31-001")
    key = phone_key(PHONE, SECRET)
    stopped = {**world.state(), "state": "idle", "offer": None, "outcome": "stopped"}
    before_commit_of(world.store, SMS_DIALOGS, lambda: world.store.put(SMS_DIALOGS, key, stopped))
    assert world.sms("TAK") == "no_offer"
    assert world.booking.calls == 0 and world.appointments() == []


def test_a_booking_finished_by_another_message_meanwhile_is_not_overwritten(world: World):
    """Between our booking and its end, another message took the booking over (after 30 s)
    and finished it: ours decides again on that, instead of writing over it."""
    world.sms(f"{PESEL} 31-001")
    key = phone_key(PHONE, SECRET)

    def other_finished() -> None:
        done = {**world.state(), "state": "booked", "last_message_id": "tak-2"}
        world.store.put(SMS_DIALOGS, key, {**done, "last_reply": "their reply"})

    world.booking.after_commit = other_finished
    assert world.sms("TAK", message_id="tak-1") == "already_booked"
    assert world.state()["last_message_id"] == "tak-1" and len(world.appointments()) == 1


def test_a_booking_left_by_a_crashed_attempt_is_finished_by_the_next_message(world: World):
    world.sms(f"{PESEL} 31-001")
    key = phone_key(PHONE, SECRET)
    crashed = {**world.state(), "state": "booking", "booking_by": "dead", "booking_since": NOW}
    world.store.put(SMS_DIALOGS, key, crashed)
    with pytest.raises(SmsDialogBusyError):
        world.sms("TAK")  # still fresh: maybe not dead
    later = NOW + timedelta(seconds=31)
    assert world.sms("TAK", at=later) == "booked"
    assert len(world.appointments()) == 1 and world.state()["state"] == "booked"


# -- Firestore down ---------------------------------------------------------------------------
def test_firestore_down_at_the_first_commit_writes_and_sends_nothing(world: World):
    world.store.fail_next_commits = 1
    with pytest.raises(gexc.ServiceUnavailable):
        world.sms(f"{PESEL} 31-001", message_id="m1")
    assert world.store.collection(SMS_INBOUND) == {} and world.state() == {}
    assert world.gateway.calls == 0
    assert world.sms(f"{PESEL} 31-001", message_id="m1") == "offered"
    assert len(world.gateway.texts()) == 1


def test_firestore_down_after_the_booking_finishes_it_on_the_retry_once(world: World):
    world.sms(f"{PESEL} 31-001")
    world.booking.after_commit = lambda: setattr(world.store, "fail_next_commits", 1)
    with pytest.raises(gexc.ServiceUnavailable):
        world.sms("TAK", message_id="tak-1")
    assert world.state()["state"] == "booking" and len(world.appointments()) == 1
    assert world.inbound("tak-1") is None  # released, not done
    assert len(world.gateway.texts()) == 1  # no confirmation yet
    assert world.sms("TAK", message_id="tak-1") == "booked"  # the gateway's retry
    assert len(world.appointments()) == 1 and world.booking.calls == 1  # replayed by key
    assert len([t for t in world.gateway.texts() if t.startswith("Zarezerwowano")]) == 1
    assert len(world.gateway.texts()) == 2


# -- the peers down ---------------------------------------------------------------------------
def test_gateway_down_leaves_the_message_undone_and_its_retry_replies_once(world: World):
    world.gateway.down = True
    with pytest.raises(DependencyUnavailableError):
        world.sms(f"{PESEL} 31-001", message_id="m1")
    assert world.inbound("m1") is None  # not done: the gateway delivers it again
    assert world.gateway.texts() == []
    world.gateway.down = False
    assert world.sms(f"{PESEL} 31-001", message_id="m1") == "replayed"
    assert len(world.gateway.texts()) == 1 and world.inbound("m1")["status"] == "done"
    assert world.state()["offer"]["slot_id"] == SLOTS[0]  # decided once, not offered twice


def test_booking_unavailable_keeps_the_booking_in_hand_for_the_retry(world: World):
    world.sms(f"{PESEL} 31-001")
    world.booking.fault = DependencyUnavailableError("Firestore is slow")
    with pytest.raises(DependencyUnavailableError):
        world.sms("TAK", message_id="tak-1")
    assert world.state()["state"] == "booking" and world.appointments() == []
    assert world.inbound("tak-1") is None and len(world.gateway.texts()) == 1
    world.booking.fault = None
    assert world.sms("TAK", message_id="tak-1") == "booked"
    assert len(world.appointments()) == 1


# -- who is texting (issue 13: the SMS channel booked for strangers) ---------------------------
STRANGER = "+48600999111"


def _code_sent_to(world: World, phone: str) -> str | None:
    """The code in the last SMS texted to `phone`, if any."""
    texts = [m["text"] for m in world.gateway.messages.values() if m["to"] == phone]
    codes = [t.split("kod ", 1)[1][:6] for t in texts if "kod " in t]
    return codes[-1] if codes else None


def test_a_stranger_gets_the_same_answer_whatever_the_pesel_and_books_nothing(world: World):
    no_referral = make_pesel(date(1950, 1, 1), "F", 7)
    no_phone = make_pesel(date(1951, 2, 2), "M", 9)
    world.store.put(
        REFERRALS,
        "REF-2",
        {
            "patient_key": key_of(no_phone),
            "referral": {"status": "active", "valid_to": "2027-06-01"},
        },
    )
    outcomes = [world.sms(f"{p} 31-001", phone=STRANGER) for p in (PESEL, no_referral, no_phone)]
    assert outcomes == ["code_sent"] * 3
    replies = [m["text"] for m in world.gateway.messages.values() if m["to"] == STRANGER]
    assert len(replies) == 3 and len(set(replies)) == 1  # not one letter differs
    assert "kod" in replies[0] and all(p not in replies[0] for p in (PESEL, no_phone))
    assert world.state(STRANGER)["state"] == "awaiting_code"
    assert world.state(STRANGER).get("offer") is None and world.booking.calls == 0
    # Only the patient who has a number got a code, on that number, naming the asking phone.
    (to_owner,) = [m["text"] for m in world.gateway.messages.values() if m["to"] == PHONE]
    assert "111" in to_owner and STRANGER not in to_owner
    # A TAK from the stranger books nothing.
    assert world.sms("TAK", phone=STRANGER) == "no_offer" and world.appointments() == []


def test_the_code_sent_to_the_patients_number_binds_the_conversation(world: World):
    assert world.sms(f"{PESEL} 31-001", phone=STRANGER) == "code_sent"
    code = _code_sent_to(world, PHONE)
    assert code is not None and code not in str(world.store.collection("notifications"))
    assert world.sms(f"KOD {code}", phone=STRANGER) == "offered"
    assert world.state(STRANGER)["verified_for"] == key_of(PESEL)
    assert world.sms("TAK", phone=STRANGER) == "booked"
    (appointment,) = world.appointments()
    assert appointment["channel"] == "sms"
    # The same conversation may start again for that patient without a new code...
    assert world.sms(f"{PESEL} 31-001", phone=STRANGER) != "code_sent"
    # ...and STOP ends what it proved.
    world.sms("STOP", phone=STRANGER)
    assert world.sms(f"{PESEL} 31-001", phone=STRANGER) == "code_sent"


def test_wrong_codes_get_one_answer_and_five_end_the_attempt(world: World):
    world.sms(f"{PESEL} 31-001", phone=STRANGER)
    code = _code_sent_to(world, PHONE)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    answers = [world.sms(f"KOD {wrong}", phone=STRANGER) for _ in range(5)]
    assert answers == ["code_wrong"] * 5
    assert world.state(STRANGER)["state"] == "idle"
    assert world.sms(f"KOD {code}", phone=STRANGER) == "no_code"  # too late now
    replies = {m["text"] for m in world.gateway.messages.values() if m["to"] == STRANGER}
    assert len(replies) == 2  # "code sent", then always the same refusal
    assert world.booking.calls == 0


def test_a_code_never_sent_fails_like_a_wrong_one(world: World):
    nobody = make_pesel(date(1950, 1, 1), "F", 7)  # no phone anywhere: no code was sent
    assert world.sms(f"{nobody} 31-001", phone=STRANGER) == "code_sent"
    assert world.sms("KOD 123456", phone=STRANGER) == "code_wrong"


def test_an_expired_code_does_not_bind(world: World):
    world.sms(f"{PESEL} 31-001", phone=STRANGER)
    code = _code_sent_to(world, PHONE)
    later = NOW + timedelta(minutes=10, seconds=1)
    assert world.sms(f"KOD {code}", phone=STRANGER, at=later) == "code_wrong"
    assert world.state(STRANGER)["state"] == "idle" and world.booking.calls == 0


def test_a_sender_trying_many_pesels_is_stopped_and_told_once(world: World):
    people = [make_pesel(date(1950, 1, 1 + n), "F", n) for n in range(8)]
    outcomes = [world.sms(f"{p} 31-001", phone=STRANGER) for p in people]
    assert outcomes == ["code_sent"] * 5 + ["rate_limited"] * 3
    replies = [m["text"] for m in world.gateway.messages.values() if m["to"] == STRANGER]
    assert len(replies) == 6 and "Zbyt wiele" in replies[-1]  # told once, then silence
    later = NOW + timedelta(hours=1)
    assert world.sms(f"{people[0]} 31-001", phone=STRANGER, at=later) == "code_sent"


def test_the_patients_number_gets_at_most_three_codes_an_hour(world: World):
    senders = [f"+4860099900{n}" for n in range(5)]
    for sender in senders:
        assert world.sms(f"{PESEL} 31-001", phone=sender) == "code_sent"  # the same answer
    to_owner = [m for m in world.gateway.messages.values() if m["to"] == PHONE]
    assert len(to_owner) == 3


def test_p1_down_when_the_patients_number_is_needed_leaves_the_message_for_the_retry(
    world: World,
):
    world.contacts.down = True
    with pytest.raises(DependencyUnavailableError):
        world.sms(f"{PESEL} 31-001", message_id="m1", phone=STRANGER)
    assert world.inbound("m1") is None and world.gateway.calls == 0
    world.contacts.down = False
    assert world.sms(f"{PESEL} 31-001", message_id="m1", phone=STRANGER) == "code_sent"


def test_the_code_is_texted_again_when_the_first_send_failed(world: World):
    """The gateway was down after the dialog moved: the redelivered message sends both the
    reply and the patient's code, once each."""
    calls = {"n": 0}
    real_send = world.gateway.send

    def flaky(to: str, text: str, client_message_id: str) -> str:
        calls["n"] += 1
        if to == PHONE and calls["n"] == 2:  # the code to the patient, the first time
            raise DependencyUnavailableError("SMS gateway is unavailable (timeout)")
        return real_send(to, text, client_message_id)

    world.gateway.send = flaky  # type: ignore[method-assign]
    with pytest.raises(DependencyUnavailableError):
        world.sms(f"{PESEL} 31-001", message_id="m1", phone=STRANGER)
    assert world.sms(f"{PESEL} 31-001", message_id="m1", phone=STRANGER) == "replayed"
    assert len([m for m in world.gateway.messages.values() if m["to"] == PHONE]) == 1
    assert len([m for m in world.gateway.messages.values() if m["to"] == STRANGER]) == 1
