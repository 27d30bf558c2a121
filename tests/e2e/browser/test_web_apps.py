"""The web apps in headless Chromium: staff, hotline agent and patient, as their users meet them.

Each test logs in on the landing page as a demo user (the token goes to sessionStorage), then
works only through the page: clicks, keyboard, forms. A booking "from elsewhere" is made with
a plain HTTP call, the way the portal would make it.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest

from common.adapters.firestore_store import APPOINTMENTS, VACCINATIONS
from emulator.seed.users import DEMO_USERS
from tests.e2e.browser.conftest import WebStack, screenshot

pytestmark = [pytest.mark.emulators, pytest.mark.browser]

PESEL = {u.uid: u.pesel for u in DEMO_USERS if u.pesel}
STAFF_POINT = "pt-00001"
STAFF_POINT_POSTCODE = "50-444"  # pt-00001 of the demo data is in Wrocław


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def http(stack: WebStack, method: str, path: str, uid: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {stack.token(uid)}", "Accept": "application/json"}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    if method != "GET":
        headers["Idempotency-Key"] = uuid.uuid4().hex
    request = urllib.request.Request(stack.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def _slot_is(slot_id: str) -> Any:
    from google.cloud import firestore

    return firestore.FieldFilter("slot_id", "==", slot_id)


def log_in(page: Any, stack: WebStack, uid: str) -> None:
    page.goto(stack.url + "/")
    label = stack.tokens[uid]["label"]
    page.get_by_role("button", name=f"Zaloguj jako: {label}").click()


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


# -- the staff member ---------------------------------------------------------------------------


def test_staff_publishes_a_day_sees_a_booking_arrive_and_completes_the_visit(
    page: Any, web_stack: WebStack
) -> None:
    day = web_stack.now.date()
    log_in(page, web_stack, "staff-1")
    expect(page).to_have_url(re.compile(r"/staff\.html$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(STAFF_POINT)
    expect(page.locator("#who")).to_contain_text("Staff of point pt-00001")
    # Today has no slots yet: the demo calendar starts tomorrow.
    expect(page.locator("#day-empty")).to_be_visible()

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

    # A patient books 08:00 through the API (the portal, elsewhere).
    slot_id = f"{STAFF_POINT}_{day:%Y%m%d}_0800_comirnaty"
    status, body = http(web_stack, "POST", "/v1/appointments", "patient-anna", {"slot_id": slot_id})
    assert status == 201, body
    appointment_id = body["appointments"][0]["appointment_id"]

    # Refresh the calendar: one seat booked, one free.
    page.locator("#week-form").get_by_role("button", name="Pokaż", exact=True).click()
    expect(first.locator("td").nth(3)).to_have_text("1")
    expect(first.locator("td").nth(4)).to_have_text("1")
    today_row = page.locator("#week-table tbody tr.selected")
    expect(today_row.locator("td").nth(0)).to_have_text("4")  # slots
    expect(today_row.locator("td").nth(2)).to_have_text("1")  # booked
    first.scroll_into_view_if_needed()
    screenshot(page, "staff-calendar")

    # The day's visits: the booking is there, with a masked PESEL only.
    page.get_by_role("button", name="Pokaż wizyty").click()
    visit = page.locator(f'#visits-table tr[data-appointment="{appointment_id}"]')
    masked = PESEL["patient-anna"][:6] + "*****"
    expect(visit).to_contain_text(masked)
    expect(visit).to_contain_text("zarezerwowana")
    assert PESEL["patient-anna"] not in page.content()

    # Check-in: a mistyped PESEL is caught before any call, the right one checks in.
    visit.get_by_role("button", name=re.compile("^Zarejestruj przybycie")).click()
    dialog = page.locator("#checkin-dialog")
    expect(dialog).to_be_visible()
    wrong = PESEL["patient-anna"][:-1] + str((int(PESEL["patient-anna"][-1]) + 1) % 10)
    dialog.get_by_label("PESEL z dowodu osobistego pacjenta").fill(wrong)
    dialog.get_by_role("button", name="Zarejestruj przybycie").click()
    expect(dialog.locator("#checkin-pesel-msg")).to_contain_text("cyfrę kontrolną")
    dialog.get_by_label("PESEL z dowodu osobistego pacjenta").fill(PESEL["patient-anna"])
    dialog.get_by_role("button", name="Zarejestruj przybycie").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#status")).to_contain_text("Zarejestrowano przybycie")
    expect(visit).to_contain_text("pacjent na miejscu")

    # Complete: product and lot number (typed in lower case, sent in upper case).
    visit.get_by_role("button", name=re.compile("^Zakończ wizytę")).click()
    dialog = page.locator("#complete-dialog")
    expect(dialog.get_by_label("Szczepionka")).to_have_value("comirnaty")
    dialog.get_by_label("Numer serii").fill("ff1234")
    screenshot(page, "staff-complete-dialog")
    dialog.get_by_role("button", name="Zakończ wizytę").click()
    expect(dialog).to_be_hidden()
    expect(visit.locator(".visit-status")).to_have_text("zakończona — szczepienie podane")
    expect(visit.get_by_role("button")).to_have_count(0)
    visit.scroll_into_view_if_needed()
    screenshot(page, "staff-visits")

    stored = web_stack.db.collection(APPOINTMENTS).document(appointment_id).get().to_dict()
    assert stored["status"] == "completed" and stored["lot_number"] == "FF1234"
    assert stored["checked_in_at"] is not None
    given = web_stack.db.collection(VACCINATIONS).document(appointment_id).get().to_dict()
    assert given["dose"]["product_code"] == "comirnaty" and given["point_id"] == STAFF_POINT
    assert_no_pesel_leaked(page, web_stack, [PESEL["patient-anna"]])


def test_staff_blocks_a_slot_and_sees_the_displaced_visit(page: Any, web_stack: WebStack) -> None:
    day = web_stack.now.date()
    status, body = http(
        web_stack,
        "POST",
        f"/v1/points/{STAFF_POINT}/calendar/publish",
        "staff-1",
        {
            "date_from": day.isoformat(),
            "date_to": day.isoformat(),
            "weekdays": list(range(7)),
            "opens": "11:00",
            "closes": "11:15",
            "slot_minutes": 15,
            "capacity": 1,
            "product": "comirnaty",
        },
    )
    assert status == 200, body
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


def test_agent_finds_a_patient_and_books_moves_and_cancels_for_them(
    page: Any, web_stack: WebStack
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

    # Slots near the caller's postcode; book the nearest point's first one.
    search = page.locator("#search")
    search.get_by_label("Kod pocztowy").fill(STAFF_POINT_POSTCODE)
    search.get_by_label("Szczepionka").select_option("comirnaty")
    search.get_by_role("button", name="Szukaj").click()
    nearest = page.locator("#results article").first
    expect(nearest).to_have_attribute("data-point", STAFF_POINT)
    screenshot(page, "agent-search")
    first_slot = nearest.locator("button.slot-button").first
    slot_id = first_slot.get_attribute("data-slot")
    first_slot.click()
    expect(page.locator("#status")).to_contain_text("Zarezerwowano")
    booked = page.locator("#appointments-table tbody tr.status-booked")
    expect(booked).to_have_count(2)  # Comirnaty: both doses
    expect(booked.first).to_contain_text(STAFF_POINT)
    patient.scroll_into_view_if_needed()
    screenshot(page, "agent-patient")

    stored = [
        s.to_dict()
        for s in web_stack.db.collection(APPOINTMENTS).where(filter=_slot_is(slot_id)).stream()
    ]
    assert [(a["channel"], a["status"], a["dose_number"]) for a in stored] == [
        ("hotline", "booked", 1)
    ]

    # Move dose 1 to another time at the same point.
    booked.first.get_by_role("button", name=re.compile("^Przenieś")).click()
    expect(page.locator("#move-banner")).to_be_visible()
    nearest.get_by_role("button", name=re.compile("^Więcej terminów")).click()
    other = nearest.locator("button.slot-button", has_text="Przenieś tutaj").nth(3)
    new_slot = other.get_attribute("data-slot")
    other.click()
    expect(page.locator("#status")).to_contain_text("Przeniesiono")
    expect(page.locator("#move-banner")).to_be_hidden()
    moved = web_stack.db.collection(APPOINTMENTS).where(filter=_slot_is(new_slot)).stream()
    assert [a.to_dict()["status"] for a in moved] == ["booked"]

    # Cancel (dose 1 takes dose 2 with it), with a reason.
    page.locator("#appointments-table tbody tr.status-booked").first.get_by_role(
        "button", name=re.compile("^Odwołaj")
    ).click()
    dialog = page.locator("#cancel-dialog")
    expect(dialog.get_by_label("Powód (zapisywany w dzienniku dostępu)")).to_have_value(
        "Pacjent dzwoni na infolinię"
    )
    dialog.get_by_role("button", name="Odwołaj wizytę").click()
    expect(page.locator("#status")).to_contain_text("Odwołano wizyty (liczba: 2)")
    expect(page.locator("#appointments-table tbody tr.status-booked")).to_have_count(0)
    assert_no_pesel_leaked(page, web_stack, [pesel])

    # End of call: the PESEL is gone from the page.
    page.get_by_role("button", name="Zakończ rozmowę (wyczyść dane)").click()
    expect(page.locator("#lookup-pesel")).to_have_value("")
    assert pesel not in page.content()


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


def test_patient_finds_a_slot_nearby_books_and_cancels(
    page: Any, web_stack: WebStack, browser_context: Any
) -> None:
    browser_context.grant_permissions(["geolocation"], origin=web_stack.url)
    browser_context.set_geolocation({"latitude": 51.1079, "longitude": 17.0385})  # Wrocław
    log_in(page, web_stack, "patient-ewa")
    expect(page).to_have_url(re.compile(r"/patient\.html$"))
    expect(page.locator("#mine-table")).to_contain_text("Nie masz jeszcze wizyt.")
    page.get_by_role("button", name="Użyj mojej lokalizacji").click()
    expect(page.locator("#location-msg")).to_contain_text("Szukam w pobliżu")
    nearest = page.locator("#results article").first
    expect(nearest).to_have_attribute("data-point", STAFF_POINT)
    nearest.scroll_into_view_if_needed()
    screenshot(page, "patient-search")
    nearest.locator("button.slot-button").first.click()
    expect(page.locator("#status")).to_contain_text("Zarezerwowano")
    rows = page.locator("#mine-table tbody tr.status-booked")
    expect(rows).to_have_count(2)
    rows.first.get_by_role("button", name=re.compile("^Odwołaj")).click()
    page.locator("#cancel-dialog").get_by_role("button", name="Odwołaj wizytę").click()
    expect(page.locator("#mine-table tbody tr.status-cancelled")).to_have_count(2)


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
