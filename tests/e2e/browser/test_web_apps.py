"""The web apps in headless Chromium: staff, hotline agent and patient, as their users meet them.

Each test logs in on the landing page as a demo user (the token goes to sessionStorage), then
works only through the page: clicks, keyboard, forms. A booking "from elsewhere" is made with
a plain HTTP call, the way the portal would make it. axe-core checks every screen these tests
reach (tests/e2e/browser/conftest.py), and the phone test checks each app at 390x844.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, timedelta
from typing import Any

import pytest

from common.adapters.firestore_store import APPOINTMENTS, VACCINATIONS
from tests.e2e.browser.conftest import (
    PESEL,
    PHONE,
    ROOT,
    STAFF_POINT,
    STAFF_POINT_POSTCODE,
    WROCLAW,
    WebStack,
    assert_accessible,
    assert_fits_the_width,
    expect,
    http,
    log_in,
    publish_today,
    screenshot,
)
from tests.support.points import audits, seed_visit

pytestmark = [pytest.mark.emulators, pytest.mark.browser]

STAFF_POINT_NAME = "Szpital Miejski we Wrocławiu"  # the demo data's pt-00001
ADULT_PRODUCTS = ["Comirnaty", "Spikevax", "Vaxzevria", "Jcovden", "Nuvaxovid"]


def _slot_is(slot_id: str) -> Any:
    from google.cloud import firestore

    return firestore.FieldFilter("slot_id", "==", slot_id)


def assert_no_pesel_leaked(page: Any, stack: WebStack, pesels: list[str]) -> None:
    """No PESEL in any URL the browser asked for, nor in its web storage."""
    for url in stack.requests:
        for pesel in pesels:
            assert pesel not in url, url
    storage = page.evaluate(
        "() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])"
    )
    for pesel in pesels:
        assert pesel not in storage


def parse_ics(text: str) -> list[dict[str, str]]:
    """RFC 5545, strictly enough for a test: CRLF lines of at most 75 octets, unfolded, and
    the events' properties (name without parameters -> value)."""
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    raw = text.split("\r\n")[:-1]
    for line in raw:
        assert len(line.encode("utf-8")) <= 75, line
    lines: list[str] = []
    for line in raw:
        if line.startswith((" ", "\t")):
            lines[-1] += line[1:]
        else:
            lines.append(line)
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-1] == "END:VCALENDAR"
    assert "VERSION:2.0" in lines and any(line.startswith("PRODID:") for line in lines)
    events: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    depth = 0
    for line in lines[1:-1]:
        name, _, value = line.partition(":")
        name = name.split(";")[0]
        if line == "BEGIN:VEVENT":
            current = {}
        elif line == "END:VEVENT":
            assert current is not None
            events.append(current)
            current = None
        elif line.startswith("BEGIN:"):
            depth += 1
        elif line.startswith("END:"):
            depth -= 1
        elif current is not None and depth == 0:
            current[name] = value
    return events


def utc_stamp(moment: Any) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def data_url_text(href: str) -> str:
    head, _, payload = href.partition(",")
    assert head == "data:text/calendar;charset=utf-8", head
    return urllib.parse.unquote(payload)


# -- the staff member ---------------------------------------------------------------------------


def test_staff_sees_the_point_checks_in_before_completing_and_learns_about_dose_two(
    page: Any, web_stack: WebStack, axe: str
) -> None:
    day = web_stack.now.date()
    log_in(page, web_stack, "staff-1")
    expect(page).to_have_url(re.compile(r"/staff\.html$"))
    # The point's name and address head the page, not its id; the header is all Polish.
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Punkt szczepień: {STAFF_POINT_NAME}"
    )
    expect(page.locator("#point-address")).to_contain_text("50-444 Wrocław")
    expect(page.locator("#who")).to_have_text("Zalogowano: Personel punktu pt-00001")
    # Every product list offers the point's two products, not the catalogue's six.
    for select in ("#pub-product", "#add-product", "#walkin-product", "#complete-product"):
        expect(page.locator(f"{select} option")).to_have_text(["Comirnaty", "Vaxzevria"])
    expect(page.locator("#day-empty")).to_be_visible()  # the demo calendar starts tomorrow

    # Publish today, 08:00-10:00, 30-minute slots of 2 seats.
    publish = page.locator("#publish")
    publish.get_by_label("Od dnia").fill(day.isoformat())
    publish.get_by_label("Do dnia").fill(day.isoformat())
    publish.get_by_label("Pierwszy termin o").fill("08:00")
    publish.get_by_label("Koniec przyjęć o").fill("10:00")
    publish.get_by_label("Długość terminu (minuty)").fill("30")
    publish.get_by_label("Miejsc w terminie").fill("2")
    publish.get_by_label("Szczepionka").select_option("comirnaty")
    publish.get_by_role("button", name="Publikuj").click()
    expect(page.locator("#status")).to_contain_text("Dodane terminy: 4, już istniejące: 0")
    slots = page.locator("#day-table tbody tr")
    expect(slots).to_have_count(4)
    first = slots.filter(has_text="08:00")
    expect(first.locator("td").nth(3)).to_have_text("0")  # booked
    expect(first.locator("td").nth(4)).to_have_text("2")  # free

    # Two patients book through the API (the portal, elsewhere): 08:00 and 08:30.
    booked = {}
    for uid, start in (("patient-anna", "0800"), ("patient-ewa", "0830")):
        slot_id = f"{STAFF_POINT}_{day:%Y%m%d}_{start}_comirnaty"
        status, body = http(web_stack, "POST", "/v1/appointments", uid, {"slot_id": slot_id})
        assert status == 201, body
        booked[uid] = body["appointments"][0]["appointment_id"]

    page.locator("#week-form").get_by_role("button", name="Pokaż", exact=True).click()
    expect(first.locator("td").nth(3)).to_have_text("1")
    expect(first.locator("td").nth(4)).to_have_text("1")
    first.scroll_into_view_if_needed()
    screenshot(page, "staff-calendar")
    assert_accessible(page, axe, "staff: calendar")

    # The day's visits: masked PESELs; before a check-in there is nothing to complete.
    page.get_by_role("button", name="Pokaż wizyty").click()
    visit = page.locator(f'#visits-table tr[data-appointment="{booked["patient-anna"]}"]')
    expect(visit).to_contain_text(PESEL["patient-anna"][:6] + "*****")
    expect(visit).to_contain_text("zarezerwowana")
    expect(visit.get_by_role("button", name=re.compile("^Zakończ wizytę"))).to_have_count(0)
    assert PESEL["patient-anna"] not in page.content()

    # Check-in: a mistyped PESEL is caught before any call, the right one checks in.
    visit.get_by_role("button", name=re.compile("^Zarejestruj przybycie")).click()
    dialog = page.locator("#checkin-dialog")
    expect(dialog).to_be_visible()
    assert_accessible(page, axe, "staff: check-in dialog")
    wrong = PESEL["patient-anna"][:-1] + str((int(PESEL["patient-anna"][-1]) + 1) % 10)
    dialog.get_by_label("PESEL z dowodu osobistego pacjenta").fill(wrong)
    dialog.get_by_role("button", name="Zarejestruj przybycie").click()
    expect(dialog.locator("#checkin-pesel-msg")).to_contain_text("cyfrę kontrolną")
    dialog.get_by_label("PESEL z dowodu osobistego pacjenta").fill(PESEL["patient-anna"])
    dialog.get_by_role("button", name="Zarejestruj przybycie").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#status")).to_contain_text("Zarejestrowano przybycie")
    expect(visit).to_contain_text("pacjent na miejscu")

    # Complete: product (the point's) and lot number (typed in lower case, sent in upper).
    visit.get_by_role("button", name=re.compile("^Zakończ wizytę")).click()
    dialog = page.locator("#complete-dialog")
    expect(dialog.get_by_label("Szczepionka")).to_have_value("comirnaty")
    expect(dialog.locator("#override-fields")).to_be_hidden()
    dialog.get_by_label("Numer serii").fill("ff1234")
    screenshot(page, "staff-complete-dialog")
    assert_accessible(page, axe, "staff: complete dialog")
    dialog.get_by_role("button", name="Zakończ wizytę").click()
    expect(dialog).to_be_hidden()
    expect(visit.locator(".visit-status")).to_have_text("zakończona — szczepienie podane")
    expect(visit.get_by_role("button")).to_have_count(0)
    # The calendar follows: the visit's seat still counts as booked (a completed visit).
    stored = web_stack.db.collection(APPOINTMENTS).document(booked["patient-anna"]).get()
    assert stored.to_dict()["status"] == "completed" and stored.to_dict()["lot_number"] == "FF1234"
    assert stored.to_dict()["checked_in_at"] is not None
    given = web_stack.db.collection(VACCINATIONS).document(booked["patient-anna"]).get().to_dict()
    assert given["dose"]["product_code"] == "comirnaty" and given["point_id"] == STAFF_POINT

    # No identity document: completing without a check-in needs a reason, and is audited.
    other = page.locator(f'#visits-table tr[data-appointment="{booked["patient-ewa"]}"]')
    other.get_by_role("button", name=re.compile("^Zarejestruj przybycie")).click()
    dialog = page.locator("#checkin-dialog")
    dialog.get_by_text("Pacjent nie ma dokumentu tożsamości?").click()
    dialog.get_by_role("button", name="Zakończ wizytę bez potwierdzenia tożsamości…").click()
    complete = page.locator("#complete-dialog")
    expect(complete.get_by_role("heading")).to_have_text(
        "Zapisz szczepienie bez potwierdzenia tożsamości"
    )
    complete.get_by_label("Numer serii").fill("FF1235")
    complete.get_by_role("button", name="Zakończ wizytę").click()
    expect(complete.locator(".dialog-error")).to_contain_text("Podaj powód")
    reason = "Pacjentka bez dokumentu, znana personelowi"
    complete.get_by_label(re.compile("^Powód zakończenia bez potwierdzenia")).fill(reason)
    complete.get_by_role("button", name="Zakończ wizytę").click()
    expect(complete).to_be_hidden()
    expect(page.locator("#status")).to_contain_text("bez potwierdzenia tożsamości")
    expect(other.locator(".visit-status")).to_have_text("zakończona bez potwierdzenia tożsamości")
    [entry] = audits(web_stack.db, "visit.complete_without_check_in")
    assert entry["details"] == {"check_in_override_reason": reason}
    visit.scroll_into_view_if_needed()
    screenshot(page, "staff-visits")

    # Yesterday's no-show of dose 1: the answer says dose 2 was cancelled, and when.
    yesterday = day - timedelta(days=1)
    dose2 = seed_visit(
        web_stack.db, PESEL["patient-jan"], point=STAFF_POINT, day=day + timedelta(days=34),
        product="comirnaty", dose_number=2,
    )  # fmt: skip
    dose1 = seed_visit(
        web_stack.db, PESEL["patient-jan"], point=STAFF_POINT, day=yesterday,
        product="comirnaty", linked=dose2,
    )  # fmt: skip
    web_stack.db.collection(APPOINTMENTS).document(dose2).update({"linked_appointment_id": dose1})
    page.locator("#visits-date").fill(yesterday.isoformat())
    page.get_by_role("button", name="Pokaż wizyty").click()
    missed = page.locator(f'#visits-table tr[data-appointment="{dose1}"]')
    missed.get_by_role("button", name=re.compile("^Nie przyszedł")).click()
    dialog = page.locator("#noshow-dialog")
    expect(dialog.locator("#noshow-effect")).to_contain_text("odwoła też zarezerwowaną dawkę 2")
    dialog.get_by_role("button", name="Nie przyszedł").click()
    expect(page.locator("#status")).to_contain_text("Dawka 2 tego pacjenta")
    expect(page.locator("#status")).to_contain_text("została odwołana")
    assert web_stack.db.collection(APPOINTMENTS).document(dose2).get().to_dict()["status"] == (
        "cancelled"
    )
    assert_no_pesel_leaked(page, web_stack, [PESEL["patient-anna"], PESEL["patient-jan"]])


def test_staff_blocks_a_slot_and_sees_the_displaced_visit(page: Any, web_stack: WebStack) -> None:
    day = web_stack.now.date()
    publish_today(web_stack, "11:00", "11:15", 15, 1)
    slot_id = f"{STAFF_POINT}_{day:%Y%m%d}_1100_comirnaty"
    status, body = http(web_stack, "POST", "/v1/appointments", "patient-jan", {"slot_id": slot_id})
    assert status == 201, body
    log_in(page, web_stack, "staff-1")
    row = page.locator(f'#day-table tr[data-slot="{slot_id}"]')
    expect(row.locator("td").nth(3)).to_have_text("1")
    row.get_by_role("button", name=re.compile("^Zablokuj")).click()
    expect(page.locator("#status")).to_contain_text("Odwołanych wizyt: 1")
    displaced = page.locator("#displaced")
    expect(displaced).to_be_visible()
    expect(displaced.locator("tbody tr")).to_have_count(1)
    expect(displaced).to_contain_text(PESEL["patient-jan"][:6] + "*****")
    expect(row).to_contain_text("zablokowany")
    row.get_by_role("button", name=re.compile("^Odblokuj")).click()
    expect(row).to_contain_text("otwarty")
    expect(row.locator("td").nth(4)).to_have_text("1")


# -- the hotline agent --------------------------------------------------------------------------


def test_agent_books_after_a_review_moves_and_cancels_and_the_screen_keeps_up(
    page: Any, web_stack: WebStack, axe: str
) -> None:
    pesel = PESEL["patient-jan"]
    log_in(page, web_stack, "agent-1")
    expect(page).to_have_url(re.compile(r"/agent\.html$"))
    lookups_before = sum(1 for url in web_stack.requests if url.endswith("/v1/patients/lookup"))

    # A mistyped PESEL gets a friendly message and no call.
    page.locator("#lookup-pesel").fill(pesel[:-1] + str((int(pesel[-1]) + 3) % 10))
    page.locator("#lookup").get_by_label("Powód (zapisywany w dzienniku dostępu)").fill(
        "Pacjent dzwoni na infolinię"
    )
    page.get_by_role("button", name="Wyszukaj", exact=True).click()
    expect(page.locator("#lookup-pesel-msg")).to_contain_text("cyfrę kontrolną")
    expect(page.locator("#lookup-pesel")).to_have_attribute("aria-invalid", "true")
    assert (
        sum(1 for url in web_stack.requests if url.endswith("/v1/patients/lookup"))
        == lookups_before
    )

    page.locator("#lookup-pesel").fill(pesel)
    page.get_by_role("button", name="Wyszukaj", exact=True).click()
    patient = page.locator("#patient")
    expect(patient.get_by_role("heading", level=2)).to_contain_text(pesel[:6] + "*****")
    expect(page.locator("#referrals-table")).to_contain_text("aktywne")
    expect(page.locator("#appointments-table")).to_contain_text("Brak wizyt.")
    # Only the caller's vaccines (an adult: not the children's one), none "any".
    expect(page.locator("#search-product option")).to_have_text(ADULT_PRODUCTS)
    expect(page.locator("#product-hint")).to_contain_text("2 dawki")

    # Slots near the caller's postcode; the review before booking names both doses.
    search = page.locator("#search")
    search.get_by_label("Kod pocztowy").fill(STAFF_POINT_POSTCODE)
    search.get_by_label("Szczepionka").select_option("comirnaty")
    search.get_by_role("button", name="Szukaj").click()
    nearest = page.locator("#results article").first
    expect(nearest).to_have_attribute("data-point", STAFF_POINT)
    expect(nearest).to_contain_text("50-444 Wrocław")
    screenshot(page, "agent-search")
    assert_accessible(page, axe, "agent: search results")
    first_slot = nearest.locator("button.slot-button").first
    slot_id = first_slot.get_attribute("data-slot")
    first_slot.click()
    review = page.locator("#review-dialog")
    expect(review).to_be_visible()
    expect(review.locator(".review-dose1")).not_to_be_empty()
    expect(review.locator(".review-dose2")).not_to_be_empty()
    expect(review).to_contain_text(STAFF_POINT_NAME)
    expect(review).to_contain_text("rezerwujesz teraz obie dawki")
    screenshot(page, "agent-review")
    assert_accessible(page, axe, "agent: review dialog")
    review.get_by_role("button", name="Zarezerwuj").click()
    expect(page.locator("#status")).to_contain_text("Zarezerwowano")
    expect(page.locator("#status")).to_contain_text("Numer rezerwacji")
    booked = page.locator("#appointments-table tbody tr.status-booked")
    expect(booked).to_have_count(2)  # Comirnaty: both doses, at a named place
    expect(booked.first).to_contain_text(STAFF_POINT_NAME)
    expect(booked.first).not_to_contain_text(STAFF_POINT)
    # The results follow: no more "Book" for a patient who has this dose booked.
    expect(page.locator("#results button.slot-button")).to_have_count(0)
    expect(page.locator("#search-for")).to_contain_text("ma już wizytę")
    patient.scroll_into_view_if_needed()
    screenshot(page, "agent-patient")
    assert_accessible(page, axe, "agent: the patient with a booking")
    stored = [
        s.to_dict()
        for s in web_stack.db.collection(APPOINTMENTS).where(filter=_slot_is(slot_id)).stream()
    ]
    assert [(a["channel"], a["status"], a["dose_number"]) for a in stored] == [
        ("hotline", "booked", 1)
    ]

    # Move dose 1 to another time at the same point, through the day view and a review.
    booked.first.get_by_role("button", name=re.compile("^Przenieś")).click()
    expect(page.locator("#move-banner")).to_be_visible()
    search.get_by_role("button", name="Szukaj").click()
    nearest.get_by_role("button", name=re.compile("^Wybierz dzień i godzinę")).click()
    other = nearest.locator(".day-view button.slot-button", has_text="Przenieś tutaj").nth(3)
    new_slot = other.get_attribute("data-slot")
    other.click()
    expect(review).to_contain_text("Obecny termin")
    review.get_by_role("button", name="Przenieś wizytę").click()
    expect(page.locator("#status")).to_contain_text("Przeniesiono")
    expect(page.locator("#move-banner")).to_be_hidden()
    expect(page.locator("#results button.slot-button")).to_have_count(0)  # no stale "Move here"
    moved = web_stack.db.collection(APPOINTMENTS).where(filter=_slot_is(new_slot)).stream()
    assert [a.to_dict()["status"] for a in moved] == ["booked"]

    # Cancel (dose 1 takes dose 2 with it): the dialog says so, and starts on "keep".
    page.locator("#appointments-table tbody tr.status-booked").first.get_by_role(
        "button", name=re.compile("^Odwołaj")
    ).click()
    dialog = page.locator("#cancel-dialog")
    expect(dialog.locator("#cancel-effect")).to_contain_text("odwołuje też dawkę 2")
    expect(dialog.get_by_role("button", name="Nie odwołuj")).to_be_focused()
    expect(dialog.get_by_label("Powód (zapisywany w dzienniku dostępu)")).to_have_value(
        "Pacjent dzwoni na infolinię"
    )
    assert_accessible(page, axe, "agent: cancel dialog")
    dialog.get_by_role("button", name="Odwołaj wizytę").click()
    expect(page.locator("#status")).to_contain_text("Odwołano")
    expect(page.locator("#status")).to_contain_text(STAFF_POINT_NAME)
    expect(page.locator("#appointments-table tbody tr.status-booked")).to_have_count(0)
    assert_no_pesel_leaked(page, web_stack, [pesel])

    # End of call: nothing of the caller stays, the postcode and the results neither.
    page.get_by_role("button", name="Zakończ rozmowę (wyczyść dane)").click()
    expect(page.locator("#lookup-pesel")).to_have_value("")
    expect(page.locator("#search-postcode")).to_have_value("")
    expect(page.locator("#results article")).to_have_count(0)
    expect(page.locator("#patient")).to_be_hidden()
    assert pesel not in page.content()
    assert STAFF_POINT_POSTCODE not in page.locator("#search").inner_html()


def test_agent_keeps_the_callback_list(page: Any, web_stack: WebStack) -> None:
    log_in(page, web_stack, "agent-1")
    page.get_by_text("Dodaj do listy oddzwonień").click()
    form = page.locator("#callback-form")
    form.get_by_label("PESEL").fill(PESEL["patient-ewa"])
    form.get_by_label("Telefon").fill("+48600123456")
    form.get_by_label("Preferowany kod pocztowy").fill("31-001")

    # The first attempt is lost on the way (a reset), the second meets a service shedding
    # load (503, Retry-After: 1): the app waits as told and sends the same request again with
    # the same Idempotency-Key, by itself (the API's client contract), saying so meanwhile.
    keys: list[str] = []

    def flaky(route: Any) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        keys.append(route.request.headers["idempotency-key"])
        if len(keys) == 1:
            route.abort("connectionreset")
        elif len(keys) == 2:
            route.fulfill(
                status=503,
                headers={"Retry-After": "1", "Content-Type": "application/json"},
                body='{"error": {"code": "overloaded", "message": "busy"}}',
            )
        else:
            route.continue_()

    page.route("**/v1/callbacks", flaky)
    form.get_by_role("button", name="Dodaj").click()
    expect(page.locator("#status")).to_contain_text("Ponawiamy automatycznie")
    expect(page.locator("#status")).to_contain_text("Dodano do listy oddzwonień")
    assert len(keys) == 3 and len(set(keys)) == 1
    page.unroute("**/v1/callbacks")
    row = page.locator("#callbacks-table tbody tr").filter(has_text="+48600123456")
    expect(row).to_contain_text(PESEL["patient-ewa"][:6] + "*****")
    row.get_by_role("button", name=re.compile("^Oddzwoniono")).click()
    page.locator("#done-dialog").get_by_label("Wynik").select_option("no_answer")
    page.locator("#done-dialog").get_by_role("button", name="Zapisz").click()
    expect(page.locator("#status")).to_contain_text("Zapisano wynik rozmowy")
    expect(page.locator("#callbacks-table")).to_contain_text("Lista jest pusta.")
    page.locator("#callbacks-status").select_option("done")
    page.get_by_role("button", name="Odśwież").click()
    expect(page.locator("#callbacks-table")).to_contain_text("nie odebrano")
    assert_no_pesel_leaked(page, web_stack, [PESEL["patient-ewa"]])


# -- the patient --------------------------------------------------------------------------------


def test_patient_books_in_three_steps_moves_dose_two_and_cancels(
    page: Any, web_stack: WebStack, browser_context: Any, axe: str
) -> None:
    browser_context.grant_permissions(["geolocation"], origin=web_stack.url)
    browser_context.set_geolocation(WROCLAW)
    log_in(page, web_stack, "patient-ewa")
    expect(page).to_have_url(re.compile(r"/patient\.html$"))
    expect(page.locator("#mine-table")).to_contain_text("Nie masz jeszcze wizyt.")
    expect(page.locator("#who")).to_have_text("Zalogowano: Ewa, ur. 1980 (pacjentka)")

    # Only the vaccines Ewa (46) may have: the children's product is not offered at all.
    choices = page.locator("#eligibility input[type=radio]")
    expect(choices).to_have_count(5)
    expect(page.locator("#eligibility label")).to_have_text(
        [re.compile(f"^{n}") for n in ADULT_PRODUCTS]
    )
    expect(page.locator("#eligibility")).not_to_contain_text("dla dzieci")
    expect(page.get_by_label(re.compile("^Comirnaty"))).to_be_checked()
    expect(page.locator("#eligibility")).to_contain_text("2 dawki")

    # Search near here: nearest first, with address, distance and a map link.
    page.get_by_role("button", name="Użyj mojej lokalizacji").click()
    expect(page.locator("#location-msg")).to_contain_text("Szukam w pobliżu")
    nearest = page.locator("#results article").first
    expect(nearest).to_have_attribute("data-point", STAFF_POINT)
    expect(nearest.get_by_role("heading")).to_have_text(STAFF_POINT_NAME)
    map_link = nearest.get_by_role("link", name=f"Mapa: {STAFF_POINT_NAME}")
    expect(map_link).to_have_attribute(
        "href", re.compile(r"^https://www\.openstreetmap\.org/\?mlat=")
    )
    # The time-of-day filter: this point vaccinates in the mornings only.
    page.get_by_label("Pora dnia").select_option("evening")
    expect(nearest).to_contain_text("Brak wolnych terminów o tej porze dnia")
    page.get_by_label("Pora dnia").select_option("morning")
    expect(nearest.locator("button.slot-button").first).to_be_visible()
    nearest.scroll_into_view_if_needed()
    screenshot(page, "patient-search")
    assert_accessible(page, axe, "patient: search results")

    # Step 2: the review shows both doses, the place and what to bring; nothing booked yet.
    nearest.locator("button.slot-button").first.click()
    review = page.locator("#review")
    expect(review).to_be_visible()
    expect(review.get_by_role("heading", level=2)).to_have_text("Sprawdź i potwierdź rezerwację")
    expect(review.locator(".review-dose1")).not_to_be_empty()
    expect(review.locator(".review-dose2")).not_to_be_empty()
    expect(review).to_contain_text("rezerwujesz teraz obie dawki")
    expect(review).to_contain_text(STAFF_POINT_NAME)
    expect(review).to_contain_text("Dokument tożsamości")
    expect(page.locator("#search")).to_be_hidden()
    assert not any(url.endswith("/v1/appointments") for url in web_stack.requests)
    screenshot(page, "patient-review")
    assert_accessible(page, axe, "patient: review")

    # Step 3: the confirmation: reference, both visits, the place, .ics, the SMS.
    page.get_by_role("button", name="Potwierdzam rezerwację").click()
    done = page.locator("#confirmation")
    expect(done).to_be_visible()
    expect(done.locator("[data-reference]")).to_have_text(re.compile(r"^[0-9A-F]{4}-[0-9A-F]{4}$"))
    expect(done.locator(".confirm-visits li")).to_have_count(2)
    expect(done).to_contain_text("50-444 Wrocław")
    expect(done.get_by_role("link", name=f"Dojazd do: {STAFF_POINT_NAME}")).to_have_attribute(
        "href", re.compile(r"^https://www\.openstreetmap\.org/directions\?to=51\.")
    )
    expect(done.locator("blockquote.sms")).to_contain_text("e-Rejestracja: zarezerwowano")
    screenshot(page, "patient-confirmation")
    assert_accessible(page, axe, "patient: confirmation")
    key = web_stack.db.collection(APPOINTMENTS).stream()
    series = sorted(
        (a.to_dict() for a in key if a.to_dict()["status"] == "booked"),
        key=lambda a: a["dose_number"],
    )
    assert [a["dose_number"] for a in series] == [1, 2]
    reference = done.locator("[data-reference]").inner_text()
    assert series[0]["series_id"].upper().startswith(reference.replace("-", ""))
    events = parse_ics(data_url_text(done.locator("a.ics-link").get_attribute("href")))
    assert [e["DTSTART"] for e in events] == [utc_stamp(a["starts_at"]) for a in series]
    assert {e["UID"] for e in events} == {f"{a['appointment_id']}@e-rejestracja" for a in series}
    for event in events:
        assert STAFF_POINT_NAME in event["LOCATION"] and event["SUMMARY"].startswith("Szczepienie")
        assert event["GEO"].startswith("51.") and event["DTEND"] > event["DTSTART"]

    # My visits: the place by name; no second booking offered.
    page.get_by_role("button", name="Przejdź do moich wizyt").click()
    rows = page.locator("#mine-table tbody tr.status-booked")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text(STAFF_POINT_NAME)
    expect(rows.first).not_to_contain_text(STAFF_POINT)
    expect(page.locator("#eligibility")).to_contain_text("Masz już zarezerwowaną wizytę")
    expect(page.locator("#search-form")).to_be_hidden()
    screenshot(page, "patient-mine")

    # Move dose 2 (dose 1 stays): only days in its window after dose 1 are searched.
    rows.nth(1).get_by_role("button", name=re.compile("^Przenieś")).click()
    expect(page.locator("#move-banner")).to_contain_text("dawka 2")
    page.locator("#search-form").get_by_role("button", name="Szukaj").click()
    target = page.locator("#results article").first.locator("button.slot-button").first
    new_slot = target.get_attribute("data-slot")
    target.click()
    expect(page.locator("#review")).to_contain_text("Dawka 1 zostaje bez zmian")
    expect(page.locator("#review")).to_contain_text("Obecny termin")
    page.get_by_role("button", name="Potwierdzam zmianę terminu").click()
    expect(page.locator("#confirmation-heading")).to_have_text("Termin zmieniony")
    moved = web_stack.db.collection(APPOINTMENTS).document(series[1]["appointment_id"]).get()
    assert moved.to_dict()["slot_id"] == new_slot and new_slot != series[1]["slot_id"]
    first_dose = web_stack.db.collection(APPOINTMENTS).document(series[0]["appointment_id"]).get()
    assert first_dose.to_dict()["slot_id"] == series[0]["slot_id"]

    # Cancel dose 1: the dialog says dose 2 goes too, and starts on the safe button.
    page.get_by_role("button", name="Przejdź do moich wizyt").click()
    rows.first.get_by_role("button", name=re.compile("^Odwołaj")).click()
    dialog = page.locator("#cancel-dialog")
    expect(dialog.locator("#cancel-effect")).to_contain_text("odwołuje też dawkę 2")
    expect(dialog.get_by_role("button", name="Nie, zostaw wizytę")).to_be_focused()
    assert_accessible(page, axe, "patient: cancel dialog")
    dialog.get_by_role("button", name="Odwołaj wizytę").click()
    expect(page.locator("#mine-table tbody tr.status-cancelled")).to_have_count(2)
    expect(page.locator("#search-form")).to_be_visible()  # free to book again


def test_errors_say_what_to_do_and_keep_the_code_for_support(
    page: Any, web_stack: WebStack, browser_context: Any
) -> None:
    browser_context.grant_permissions(["geolocation"], origin=web_stack.url)
    browser_context.set_geolocation(WROCLAW)
    log_in(page, web_stack, "patient-anna")
    # Every error code the API can answer has a message in both languages.
    codes = sorted(
        set(
            re.findall(
                r'code = "([a-z_]+)"',
                "".join(p.read_text() for p in (ROOT / "common").rglob("*.py")),
            )
        )
    )
    assert "already_booked" in codes and "check_in_required" in codes
    missing = page.evaluate(
        """async (codes) => { const m = await import('/i18n.js');
           return codes.flatMap((c) => ['pl', 'en'].filter((l) => !m.hasString(`error.${c}`, l))
             .map((l) => `${l}:${c}`)); }""",
        codes,
    )
    # A new error code needs its message: add error.<code> to web/i18n.js, in both languages.
    assert missing == [], f"error codes without a message in web/i18n.js: {missing}"

    page.get_by_role("button", name="Użyj mojej lokalizacji").click()
    page.locator("#results button.slot-button").first.click()

    def refuse(route: Any) -> None:
        route.fulfill(
            status=409,
            headers={"Content-Type": "application/json"},
            body=json.dumps(
                {
                    "error": {
                        "code": "already_booked",
                        "message": "this patient already has an active booking for this dose",
                    }
                }
            ),
        )

    page.route("**/v1/appointments", refuse)
    page.get_by_role("button", name="Potwierdzam rezerwację").click()
    error = page.locator("#error")
    main_text = error.locator(".error-text")
    expect(main_text).to_have_text(re.compile("^Masz już wizytę na tę dawkę.*„Przenieś”"))
    for raw in ("409", "already_booked", "Błąd", "patient", "booking"):
        assert raw not in main_text.inner_text()
    details = error.locator("details")
    expect(details.locator("summary")).to_have_text("Szczegóły dla pomocy technicznej")
    details.locator("summary").click()
    expect(details).to_contain_text("HTTP 409 · already_booked")
    # The message follows the language; the details stay the server's.
    page.get_by_role("button", name="Switch to English").click()
    expect(main_text).to_have_text(re.compile("^You already have an appointment for this dose"))
    expect(details.locator("summary")).to_have_text("Details for technical support")
    expect(page.locator("#review-heading")).to_have_text("Review and confirm the booking")
    expect(page.locator("#review")).not_to_contain_text("Dawka")
    page.get_by_role("button", name="Przełącz na język polski").click()
    page.unroute("**/v1/appointments")


# -- phone width ----------------------------------------------------------------------------------


def test_every_screen_fits_a_phone(
    page: Any, web_stack: WebStack, browser_context: Any, axe: str
) -> None:
    """390x844: no horizontal scrolling on any screen, tables as cards, axe still clean."""
    page.set_viewport_size(PHONE)
    day = web_stack.now.date()
    publish_today(web_stack, "08:00", "09:00", 30, 2)
    slot = f"{STAFF_POINT}_{day:%Y%m%d}_0800_comirnaty"
    status, body = http(web_stack, "POST", "/v1/appointments", "patient-anna", {"slot_id": slot})
    assert status == 201, body

    def check(where: str, shot: str | None = None) -> None:
        page.wait_for_load_state("networkidle")
        assert_fits_the_width(page, where)
        assert_accessible(page, axe, where)
        if shot:
            screenshot(page, shot)

    log_in(page, web_stack, "staff-1")
    page.get_by_role("button", name="Pokaż wizyty").click()
    expect(page.locator("#visits-table tbody tr")).to_have_count(1)
    page.evaluate("() => window.scrollTo(0, 0)")
    check("staff at 390 px", "staff-phone")
    page.locator("#visits-table").scroll_into_view_if_needed()
    check("staff visits at 390 px", "staff-visits-phone")
    page.locator("#visits-table").get_by_role("button", name=re.compile("^Zarejestruj")).click()
    check("staff check-in dialog at 390 px")
    page.keyboard.press("Escape")

    log_in(page, web_stack, "agent-1")
    page.locator("#lookup-pesel").fill(PESEL["patient-anna"])
    page.locator("#lookup-reason").fill("Pacjent dzwoni na infolinię")
    page.get_by_role("button", name="Wyszukaj", exact=True).click()
    expect(page.locator("#appointments-table tbody tr.status-booked")).to_have_count(2)
    page.locator("#search-postcode").fill(STAFF_POINT_POSTCODE)
    page.locator("#search").get_by_role("button", name="Szukaj").click()
    expect(page.locator("#results article").first).to_be_visible()
    page.locator("#appointments-table").scroll_into_view_if_needed()
    check("agent at 390 px", "agent-phone")

    browser_context.grant_permissions(["geolocation"], origin=web_stack.url)
    browser_context.set_geolocation(WROCLAW)
    log_in(page, web_stack, "patient-anna")
    expect(page.locator("#mine-table tbody tr.status-booked")).to_have_count(2)
    check("patient's visits at 390 px", "patient-mine-phone")
    rows = page.locator("#mine-table tbody tr.status-booked")
    rows.first.get_by_role("button", name=re.compile("^Przenieś")).click()
    page.get_by_role("button", name="Użyj mojej lokalizacji").click()
    expect(page.locator("#results article").first).to_be_visible()
    page.locator("#results").scroll_into_view_if_needed()
    check("patient's search at 390 px", "patient-search-phone")
    page.locator("#results button.slot-button").first.click()
    expect(page.locator("#review")).to_be_visible()
    check("patient's review at 390 px", "patient-review-phone")
    page.get_by_role("button", name="Potwierdzam zmianę terminu").click()
    expect(page.locator("#confirmation")).to_be_visible()
    check("patient's confirmation at 390 px", "patient-confirmation-phone")
    page.get_by_role("button", name="Przejdź do moich wizyt").click()
    rows.first.get_by_role("button", name=re.compile("^Odwołaj")).click()
    check("patient's cancel dialog at 390 px")


# -- keyboard, labels, languages ------------------------------------------------------------------


def _tab_to(page: Any, selector: str, limit: int = 80) -> None:
    """Press Tab until the element matching `selector` has the focus (keyboard only)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement?.matches(s) ?? false", selector):
            outline = page.evaluate(
                "() => { const s = getComputedStyle(document.activeElement);"
                " return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2; }"
            )
            assert outline, f"{selector} has the focus but no visible focus outline"
            return
    raise AssertionError(f"{selector} cannot be reached with Tab")


def test_keyboard_only(page: Any, web_stack: WebStack) -> None:
    page.goto(web_stack.url + "/")
    # The skip link comes first and moves the focus to the main content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.classList.contains('skip-link')")
    _tab_to(page, 'button[data-uid="staff-1"]')
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/staff\.html$"))
    _tab_to(page, "#visits-form button[type=submit]")
    page.keyboard.press("Space")
    expect(page.locator("#visits-caption")).to_contain_text("liczba: 0")
    _tab_to(page, "#lang-toggle")  # wraps around to the header
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Vaccination point")

    page.goto(web_stack.url + "/")
    _tab_to(page, 'button[data-uid="agent-1"]')
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/agent\.html$"))
    _tab_to(page, "#lookup-pesel")
    page.keyboard.type(PESEL["patient-anna"])
    page.keyboard.press("Tab")
    page.keyboard.type("Caller asks about the visit")
    page.keyboard.press("Enter")
    expect(page.locator("#patient-heading")).to_contain_text("440514*****")
    _tab_to(page, "#callbacks-filter button[type=submit]")
    page.keyboard.press("Enter")
    expect(page.locator("#callbacks-table")).to_contain_text("The list is empty.")


_UNNAMED_FIELDS = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter((f) => f.type !== 'hidden')
  .filter((f) => {
    const byFor = f.id && document.querySelector(`label[for="${CSS.escape(f.id)}"]`);
    const wrapped = f.closest('label');
    const aria = (f.getAttribute('aria-label') || '').trim();
    const labelledby = (f.getAttribute('aria-labelledby') || '').split(/\\s+/)
      .map((id) => document.getElementById(id)).filter(Boolean);
    const text = (n) => (n && n.textContent.trim()) || '';
    return !(text(byFor) || text(wrapped) || aria || labelledby.some(text));
  })
  .map((f) => f.id || f.name || f.outerHTML)"""

_UNNAMED_BUTTONS = """() => [...document.querySelectorAll('button, a[href]')]
  .filter((b) => !(b.textContent.trim() || (b.getAttribute('aria-label') || '').trim()))
  .map((b) => b.outerHTML)"""

_TABLES_WITHOUT_HEADERS = """() => [...document.querySelectorAll('table')]
  .filter((t) => !t.querySelector('th')).map((t) => t.id)"""

_UNTRANSLATED = """() => [...document.querySelectorAll('body *')]
  .filter((n) => n.children.length === 0)
  .map((n) => n.textContent.trim())
  .filter((s) => /^(common|staff|agent|patient|index|search|status|code)\\.[a-z_]+$/.test(s))"""


PAGES = [
    (None, "/"),
    ("staff-1", "/staff.html"),
    ("agent-1", "/agent.html"),
    ("patient-anna", "/patient.html"),
]


def test_every_field_has_a_name_and_every_string_both_languages(
    page: Any, web_stack: WebStack
) -> None:
    for uid, path in PAGES:
        if uid:
            log_in(page, web_stack, uid)
        else:
            page.goto(web_stack.url + path)
            page.evaluate("() => localStorage.removeItem('erej.lang')")
            page.reload()
            expect(page.locator("#users button").first).to_be_visible()
            screenshot(page, "index")
        expect(page).to_have_url(re.compile(re.escape(path) + "$"))
        page.wait_for_load_state("networkidle")
        for language in ("pl", "en"):
            assert page.evaluate("document.documentElement.lang") == language, path
            assert page.evaluate(_UNNAMED_FIELDS) == [], path
            assert page.evaluate(_UNNAMED_BUTTONS) == [], path
            assert page.evaluate(_TABLES_WITHOUT_HEADERS) == [], path
            assert page.evaluate(_UNTRANSLATED) == [], path
            assert page.locator("h1").count() == 1, path
            assert page.locator("main").count() == 1, path
            assert page.locator("header").count() >= 1, path
            if language == "pl":
                page.get_by_role("button", name="Switch to English").click()
        if path == "/staff.html":
            screenshot(page, "staff-english")
        # Back to Polish for the next page's log-in.
        page.get_by_role("button", name="Przełącz na język polski").click()
    missing = page.evaluate("async () => (await import('/i18n.js')).missingTranslations()")
    assert missing == []
