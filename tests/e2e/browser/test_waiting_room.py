"""The waiting room of a cohort opening in the web apps (web/queue.js, docs/fair-opening.md).

An admin publishes an opening for a demo patient's cohort through the API; the stack's clock
(WebStack.move_to: every function reads wiring.now) walks it through its phases: announced, the
waiting room, the queue after the moment, the turn. The page's own timers run on Playwright's
fake clock (page.clock), so "the page looks again in 30 s" takes no 30 s: the test jumps the
browser's clock forward and watches the page notice by itself.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest

from common.domain.calendar import WARSAW
from tests.e2e.browser.conftest import (
    PESEL,
    PHONE,
    STAFF_POINT_POSTCODE,
    VIEWPORT,
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

pytestmark = [pytest.mark.emulators, pytest.mark.browser]

NOTICED = 15_000  # ms for the page to notice a change by itself (one poll) on a busy machine


def publish_opening(
    stack: WebStack, opening_id: str, born_from: int, born_to: int, opens_at: datetime
) -> dict[str, Any]:
    """An admin announces the opening: a 30-minute room, one admission a minute, 10-minute turns."""
    status, body = http(
        stack,
        "PUT",
        f"/v1/openings/{opening_id}",
        "admin-1",
        {
            "born_from": born_from,
            "born_to": born_to,
            "opens_at": opens_at.isoformat(),
            "window_minutes": 30,
            "turn_minutes": 10,
            "admit_per_minute": 1,
        },
    )
    assert status == 201, body
    return body["opening"]


def hhmm(moment: datetime) -> str:
    return moment.astimezone(WARSAW).strftime("%H:%M")


def queue_checks(requests: list[tuple[str, str, str | None]], opening_id: str) -> int:
    """How many times the page asked where its ticket stands."""
    path = f"/v1/openings/{opening_id}/queue"
    return sum(1 for method, url, _ in requests if method == "GET" and url.endswith(path))


_HIDE = """(hidden) => {
  Object.defineProperty(document, 'hidden', {configurable: true, get: () => hidden});
  Object.defineProperty(document, 'visibilityState', {configurable: true,
    get: () => (hidden ? 'hidden' : 'visible')});
  document.dispatchEvent(new Event('visibilitychange'));
}"""


def test_patient_waits_in_the_room_sees_the_place_then_the_turn_and_books(
    page: Any, web_stack: WebStack, browser_context: Any, axe: str
) -> None:
    opening_id = "seniorzy-i-40-latkowie"
    start = web_stack.now  # 06:00 today, Warsaw
    opens = start + timedelta(minutes=45)  # the room opens at 06:15
    publish_today(web_stack, "08:00", "10:00", 30, 2)
    # Antoni (born 1944) and Ewa (born 1980) are in the cohort; Janina (2002) is not.
    publish_opening(web_stack, opening_id, 1940, 1985, opens)
    requests: list[tuple[str, str, str | None]] = []
    page.on(
        "request", lambda r: requests.append((r.method, r.url, r.headers.get("x-queue-ticket")))
    )
    page.clock.install()  # the page's timers on a clock the test may jump forward
    browser_context.grant_permissions(["geolocation"], origin=web_stack.url)
    browser_context.set_geolocation(WROCLAW)
    log_in(page, web_stack, "patient-anna")

    # Announced: when the room opens and when booking opens; nothing to join yet.
    panel = page.locator("#queue-me")
    expect(panel.get_by_role("heading", level=2)).to_have_text("Otwarcie zapisów — poczekalnia")
    expect(panel).to_contain_text("urodzeni w latach 1940–1985")
    expect(panel.locator(".queue-facts")).to_contain_text(hhmm(opens - timedelta(minutes=30)))
    expect(panel.locator(".queue-facts")).to_contain_text(hhmm(opens))
    expect(panel.locator(".queue-state")).to_contain_text("Poczekalnia otworzy się")
    expect(panel.get_by_role("button")).to_have_count(0)
    assert_accessible(page, axe, "patient: an opening announced")

    # The room opens: the page notices by itself (it looks at the openings once a minute).
    web_stack.move_to(start + timedelta(minutes=20))
    page.clock.fast_forward("01:05")
    join = panel.get_by_role("button", name="Wejdź do poczekalni")
    expect(join).to_be_visible(timeout=NOTICED)
    live = panel.locator(".queue-live")
    expect(live).to_contain_text("Poczekalnia jest otwarta")
    # Ewa joins from elsewhere (the portal): before the moment nobody has a place, only a room.
    status, body = http(web_stack, "POST", f"/v1/openings/{opening_id}/queue", "patient-ewa", {})
    assert status == 200 and body["position"]["position"] is None, body
    join.click()
    expect(panel.locator(".queue-in_room dd")).to_have_text("2")
    expect(panel.locator(".queue-state")).to_contain_text(
        f"O {hhmm(opens)} kolejność zostanie wylosowana"
    )
    expect(panel.locator(".queue-position")).to_have_count(0)  # no place before the draw
    expect(live).to_contain_text("Jesteś w poczekalni")
    expect(panel).to_be_focused()
    assert_accessible(page, axe, "patient: in the waiting room")
    panel.scroll_into_view_if_needed()
    screenshot(page, "patient-queue-room")
    ticket = page.evaluate(f"() => sessionStorage.getItem('erej.queue.patient-anna.{opening_id}')")
    assert ticket and PESEL["patient-anna"] not in ticket

    # A reload keeps the place: the ticket is in the tab, no second join.
    joins = sum(1 for m, u, _ in requests if m == "POST" and u.endswith("/queue"))
    page.reload()
    expect(panel.locator(".queue-in_room dd")).to_have_text("2")
    assert sum(1 for m, u, _ in requests if m == "POST" and u.endswith("/queue")) == joins

    # Nobody looking, nobody asking: a hidden tab polls nothing; shown again, it asks at once.
    page.evaluate(_HIDE, True)
    asked = queue_checks(requests, opening_id)
    page.clock.fast_forward("05:00")
    page.wait_for_timeout(300)
    assert queue_checks(requests, opening_id) == asked
    with page.expect_request(re.compile(rf".*/v1/openings/{opening_id}/queue$")):
        page.evaluate(_HIDE, False)
        page.clock.fast_forward("00:03")

    # Waiting: choosing a slot is allowed, confirming it is not (yet).
    page.get_by_role("button", name="Użyj mojej lokalizacji").click()
    page.locator("#results button.slot-button").first.click()
    confirm = page.get_by_role("button", name="Potwierdzam rezerwację")
    expect(confirm).to_be_disabled()
    expect(page.locator("#review-queue-note")).to_contain_text("gdy nadejdzie Twoja kolej")

    # The moment passes: the order is drawn, and the page shows the place by itself.
    web_stack.move_to(opens + timedelta(seconds=5))
    page.clock.fast_forward("00:40")
    place = panel.locator(".queue-position dd")
    expect(place).to_have_text(re.compile(r"^[12]$"), timeout=NOTICED)
    position = int(place.inner_text())
    expect(panel.locator(".queue-ahead dd")).to_have_text(str(position - 1))
    expect(panel.locator(".queue-wait dd")).to_have_text(
        "mniej niż minuta" if position == 1 else "ok. 2 min"
    )
    expect(live).to_contain_text(f"Twoje miejsce w kolejce: {position}.")
    expect(confirm).to_be_disabled()
    assert_accessible(page, axe, "patient: a place in the queue")
    panel.scroll_into_view_if_needed()
    screenshot(page, "patient-queue-position")
    page.get_by_role("button", name="Switch to English").click()
    expect(panel.locator(".queue-position dt")).to_have_text("Your place in the queue")
    expect(panel.locator(".queue-state")).to_contain_text("You are in the queue")
    page.get_by_role("button", name="Przełącz na język polski").click()

    # On a phone: the panel fits 390 px.
    page.set_viewport_size(PHONE)
    page.evaluate("() => window.scrollTo(0, 0)")
    assert_fits_the_width(page, "patient: the waiting room at 390 px")
    screenshot(page, "patient-queue-phone")
    page.set_viewport_size(VIEWPORT)

    # A busy service says when to ask again (429, Retry-After: 20): the page waits that long.
    busy: list[int] = []

    def shed(route: Any) -> None:
        if not busy:
            busy.append(1)
            route.fulfill(
                status=429,
                headers={"Retry-After": "20", "Content-Type": "application/json"},
                body='{"error": {"code": "rate_limited", "message": "slow down"}}',
            )
        else:
            route.continue_()

    page.route(re.compile(rf".*/v1/openings/{opening_id}/queue$"), shed)
    with page.expect_response(lambda r: r.status == 429):
        page.clock.fast_forward("00:40")
    expect(panel.locator(".queue-problem")).to_contain_text("Spróbujemy ponownie za")
    asked = queue_checks(requests, opening_id)
    page.clock.fast_forward("00:12")
    page.wait_for_timeout(300)
    assert queue_checks(requests, opening_id) == asked  # not before Retry-After
    page.unroute(re.compile(rf".*/v1/openings/{opening_id}/queue$"))

    # The turn comes (one admission a minute: place p at the moment + p minutes).
    admitted_at = opens + timedelta(minutes=position)
    web_stack.move_to(admitted_at + timedelta(seconds=10))
    page.clock.fast_forward("00:40")
    until = hhmm(admitted_at + timedelta(minutes=10))
    expect(panel.locator(".queue-state")).to_have_text(
        f"Twoja kolej! Masz czas do {until}, aby zarezerwować termin:"
        " wybierz go poniżej i potwierdź.",
        timeout=NOTICED,
    )
    expect(panel.locator(".queue-problem")).to_have_count(0)
    expect(live).to_contain_text("Twoja kolej!")
    expect(confirm).to_be_enabled()
    expect(page.locator("#review-queue-note")).to_have_count(0)
    assert_accessible(page, axe, "patient: the turn")
    panel.scroll_into_view_if_needed()
    screenshot(page, "patient-queue-turn")

    # Booking goes through with the ticket; the room is gone once the visit is booked.
    confirm.click()
    expect(page.locator("#confirmation-heading")).to_have_text("Wizyta zarezerwowana")
    bookings = [r for r in requests if r[0] == "POST" and r[1].endswith("/v1/appointments")]
    assert bookings and all(r[2] == ticket for r in bookings)
    searches = [r for r in requests if r[0] == "GET" and "/v1/slots?" in r[1]]
    assert searches and all(r[2] == ticket for r in searches)
    expect(page.locator("#queue-me")).to_have_count(0)


def test_agent_joins_the_caller_and_books_on_the_callers_turn(
    page: Any, web_stack: WebStack, axe: str
) -> None:
    opening_id = "rocznik-2002"
    pesel = PESEL["patient-jan"]  # Janina, born 2002
    start = web_stack.now
    opens = start + timedelta(minutes=20)  # its room is open already (since 05:50)
    publish_today(web_stack, "08:00", "10:00", 30, 2)
    publish_opening(web_stack, opening_id, 2000, 2005, opens)
    requests: list[tuple[str, str, str | None]] = []
    page.on(
        "request", lambda r: requests.append((r.method, r.url, r.headers.get("x-queue-ticket")))
    )
    page.clock.install()
    log_in(page, web_stack, "agent-1")
    page.locator("#lookup-pesel").fill(pesel)
    page.locator("#lookup-reason").fill("Pacjentka dzwoni w sprawie zapisów")
    page.get_by_role("button", name="Wyszukaj", exact=True).click()
    panel = page.locator("#queue-caller")
    expect(panel.locator(".queue-subject")).to_have_text(
        f"Rozmówca: {pesel[:6]}*****, ur. 2002, kobieta"
    )
    expect(panel.locator(".queue-state")).to_contain_text("Poczekalnia jest otwarta")

    # Booking before the moment is refused, saying when it opens; the room is right there.
    search = page.locator("#search")
    search.get_by_label("Kod pocztowy").fill(STAFF_POINT_POSTCODE)
    search.get_by_label("Szczepionka").select_option("comirnaty")
    search.get_by_role("button", name="Szukaj").click()
    page.locator("#results article").first.locator("button.slot-button").first.click()
    review = page.locator("#review-dialog")
    review.get_by_role("button", name="Zarezerwuj").click()
    expect(review).to_be_hidden()
    expect(page.locator("#error .error-text")).to_contain_text("otwierają się")

    # The agent joins the caller at the moment of the call (the PESEL in the body, a reason).
    panel.get_by_role("button", name="Dołącz rozmówcę do poczekalni").click()
    expect(panel.locator(".queue-in_room dd")).to_have_text("1")
    expect(panel.locator(".queue-state")).to_contain_text("Rozmówca jest w poczekalni")
    [entry] = [d.to_dict() for d in web_stack.db.collection("queue_entries").stream()]
    assert entry["channel"] == "hotline" and entry["opening_id"] == opening_id

    # After the moment: the caller's place and wait, in the same words as the patient's.
    web_stack.move_to(opens + timedelta(seconds=5))
    page.clock.fast_forward("00:40")
    expect(panel.locator(".queue-position dt")).to_have_text(
        "Miejsce rozmówcy w kolejce", timeout=NOTICED
    )
    expect(panel.locator(".queue-position dd")).to_have_text("1")
    expect(panel.locator(".queue-ahead dd")).to_have_text("0")
    expect(panel.locator(".queue-wait dd")).to_have_text("mniej niż minuta")
    assert_accessible(page, axe, "agent: the caller's place in the queue")
    # Booking before the turn: 409 with the place; the panel keeps it.
    page.locator("#results article").first.locator("button.slot-button").first.click()
    review.get_by_role("button", name="Zarezerwuj").click()
    expect(page.locator("#error .error-text")).to_contain_text(
        "Kolej pacjenta jeszcze nie nadeszła (miejsce w kolejce: 1)"
    )
    expect(panel.locator(".queue-position dd")).to_have_text("1")
    panel.scroll_into_view_if_needed()
    screenshot(page, "agent-queue")

    # The caller's turn: "Book the chosen slot" reopens the review; booking carries the ticket.
    admitted_at = opens + timedelta(minutes=1)
    web_stack.move_to(admitted_at + timedelta(seconds=10))
    page.clock.fast_forward("00:40")
    until = hhmm(admitted_at + timedelta(minutes=10))
    expect(panel.locator(".queue-state")).to_have_text(
        f"Kolej rozmówcy! Rezerwacja jest możliwa do {until}.", timeout=NOTICED
    )
    expect(page.locator("#error")).to_be_hidden()  # "not yet" no longer applies
    assert_accessible(page, axe, "agent: the caller's turn")
    screenshot(page, "agent-queue-turn")
    page.set_viewport_size(PHONE)
    assert_fits_the_width(page, "agent: the caller's turn at 390 px")
    page.set_viewport_size(VIEWPORT)
    panel.get_by_role("button", name="Zarezerwuj wybrany termin").click()
    expect(review).to_be_visible()
    review.get_by_role("button", name="Zarezerwuj").click()
    expect(page.locator("#status")).to_contain_text("Zarezerwowano")
    expect(page.locator("#appointments-table tbody tr.status-booked")).to_have_count(2)
    expect(page.locator("#queue-caller")).to_have_count(0)
    bookings = [r for r in requests if r[0] == "POST" and r[1].endswith("/v1/appointments")]
    assert bookings[-1][2], "the booking on the turn carries the caller's ticket"
    # The PESEL went in bodies only; the ticket lived in memory, not in web storage.
    for _, url, _ in requests:
        assert pesel not in url
    storage = page.evaluate(
        "() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])"
    )
    assert pesel not in storage and "erej.queue" not in storage

    # End of call: the caller's room goes with the rest.
    page.get_by_role("button", name="Zakończ rozmowę (wyczyść dane)").click()
    expect(page.locator("#queue-caller")).to_have_count(0)
