"""The SMS texts patients receive: Polish, short, and never a PESEL or a phone number.

Pure functions of their arguments (no clock, no I/O), so a redelivered event renders the same
text. Texts are reduced to the GSM-7 basic alphabet (no Polish diacritics): one diacritic
turns a message into UCS-2, where a segment holds 70 characters instead of 160, and every
segment is paid for.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from common.domain.calendar import WARSAW

HOTLINE = "989"
PORTAL = "pacjent.gov.pl"
_PL = str.maketrans("ąćęłńóśźżĄĆĘŁŃÓŚŹŻ", "acelnoszzACELNOSZZ")


def gsm(text: str) -> str:
    """Polish letters without diacritics, anything else outside ASCII dropped."""
    plain = unicodedata.normalize("NFKD", text.translate(_PL))
    return "".join(ch for ch in plain if ch.isascii() and (ch.isprintable() or ch == "\n"))


def when(starts_at: datetime) -> str:
    local = starts_at.astimezone(WARSAW)
    return f"{local:%d.%m.%Y} godz. {local:%H:%M}"


def place(point: Mapping[str, Any] | None) -> str:
    if not point:
        return "punkt szczepien"
    parts = [point.get("name"), point.get("street")]
    town = " ".join(p for p in (point.get("postcode"), point.get("place")) if p)
    return ", ".join(str(p) for p in [*parts, town] if p)


def booked(
    product: str,
    dose_number: int,
    starts_at: datetime,
    point: Mapping[str, Any] | None,
    second_dose_at: datetime | None = None,
) -> str:
    text = (
        f"e-Rejestracja: zarezerwowano szczepienie {product} (dawka {dose_number}) "
        f"{when(starts_at)}, {place(point)}."
    )
    if second_dose_at is not None:
        text += f" Dawka 2: {when(second_dose_at)}, ten sam punkt."
    return gsm(text + f" Zmiana lub odwolanie: {PORTAL} lub {HOTLINE}.")


def rescheduled(
    product: str, dose_number: int, starts_at: datetime, point: Mapping[str, Any] | None
) -> str:
    return gsm(
        f"e-Rejestracja: zmieniono termin szczepienia {product} (dawka {dose_number}): "
        f"{when(starts_at)}, {place(point)}. Pytania: {HOTLINE}."
    )


def cancelled(product: str, dose_number: int, starts_at: datetime, with_second: bool) -> str:
    also = " oraz dawki 2" if with_second else ""
    return gsm(
        f"e-Rejestracja: odwolano wizyte szczepienia {product} (dawka {dose_number}{also}) "
        f"{when(starts_at)}. Nowy termin: {PORTAL}, {HOTLINE} lub SMS z numerem PESEL "
        "i kodem pocztowym na ten numer."
    )


def displaced(
    product: str,
    starts_at: datetime,
    point: Mapping[str, Any] | None,
    alternatives: Sequence[tuple[datetime, Mapping[str, Any] | None]],
) -> str:
    name = (point or {}).get("name") or "Punkt szczepien"
    text = f"e-Rejestracja: {name} odwolal Twoja wizyte ({product}) {when(starts_at)}. "
    if alternatives:
        offers = "; ".join(
            f"{i}) {when(at)}, {(p or {}).get('name') or 'punkt'}"
            for i, (at, p) in enumerate(alternatives[:3], start=1)
        )
        text += f"Wolne terminy: {offers}. "
    return gsm(text + f"Rezerwacja: {PORTAL} lub {HOTLINE}.")


def replan_offer(
    product: str,
    old_at: datetime,
    new_at: datetime,
    point: Mapping[str, Any] | None,
    expires_at: datetime,
) -> str:
    """A consented re-plan's offer (common/services/replan.py): the answer is TAK or NIE."""
    return gsm(
        f"e-Rejestracja: Twoja wizyta ({product}) {when(old_at)} musi zostac przeniesiona. "
        f"Proponujemy {when(new_at)}, {place(point)}. Odpowiedz TAK (przenies) lub NIE (inny "
        f"termin) do {when(expires_at)}; bez odpowiedzi zaproponujemy inny. {PORTAL}"
    )


def replan_moved(starts_at: datetime, point: Mapping[str, Any] | None) -> str:
    return gsm(f"e-Rejestracja: przeniesiono. Nowy termin: {when(starts_at)}, {place(point)}.")


def replan_next() -> str:
    return gsm("e-Rejestracja: przyjelismy NIE. Wkrotce wyslemy inna propozycje terminu.")


def replan_closed() -> str:
    return gsm(
        f"e-Rejestracja: ta propozycja jest juz nieaktualna. Sprawdz {PORTAL} lub {HOTLINE}."
    )


def waitlist_offer(product: str, starts_at: datetime, expires_at: datetime) -> str:
    """A seat freed for someone on the waitlist (common/services/waitlist.py)."""
    return gsm(
        f"e-Rejestracja: zwolnil sie termin szczepienia ({product}) {when(starts_at)}, "
        f"zarezerwowany dla Ciebie do {when(expires_at)}. Odpowiedz TAK (rezerwuje) lub NIE "
        f"(rezygnuje). {PORTAL}"
    )


def waitlist_booked(starts_at: datetime) -> str:
    return gsm(f"e-Rejestracja: zarezerwowano szczepienie {when(starts_at)}. Dziekujemy.")


def waitlist_released() -> str:
    return gsm("e-Rejestracja: termin zwolniony dla kolejnej osoby. Zostajesz na liscie.")


def reminder(product: str, starts_at: datetime, point: Mapping[str, Any] | None) -> str:
    return gsm(
        f"Przypomnienie e-Rejestracji: szczepienie {product} {when(starts_at)}, {place(point)}. "
        f"Zabierz dokument tozsamosci. Odwolanie: {PORTAL} lub {HOTLINE}."
    )


# -- the SMS booking dialog ----------------------------------------------------------------
HOW_TO = "Wyslij numer PESEL (11 cyfr) i kod pocztowy, np.: <PESEL> 31-001"


def dialog_help() -> str:
    return gsm(
        f"e-Rejestracja SMS: aby umowic szczepienie, {HOW_TO[0].lower()}{HOW_TO[1:]}. "
        "Na propozycje terminu odpowiedz TAK albo NIE (kolejny termin)."
    )


def dialog_invalid_pesel() -> str:
    return gsm(f"Numer PESEL jest nieprawidlowy. Sprawdz go. {HOW_TO}")


def dialog_bad_postcode() -> str:
    return gsm(f"Nie rozpoznano kodu pocztowego (format NN-NNN). {HOW_TO}")


def dialog_no_referral() -> str:
    return gsm(
        "Nie znaleziono aktywnego e-skierowania na szczepienie dla podanego numeru PESEL. "
        f"Informacje: infolinia {HOTLINE}."
    )


def dialog_offer(
    product: str, starts_at: datetime, point: Mapping[str, Any] | None, valid_minutes: int
) -> str:
    return gsm(
        f"Proponowany termin: {when(starts_at)}, {place(point)}, {product}. "
        f"Odpowiedz TAK, aby zarezerwowac, lub NIE - inny termin. Wazne {valid_minutes} min."
    )


def dialog_taken_then_offer(offer: str) -> str:
    return gsm("Ten termin zostal wlasnie zajety. " + offer)


def dialog_no_slots(waitlist: bool = False) -> str:
    if waitlist:
        return gsm(
            "Brak wolnych terminow w poblizu. Odpowiedz CZEKAM, a gdy zwolni sie termin, "
            f"zarezerwujemy go dla Ciebie. Lub zadzwon na {HOTLINE}."
        )
    return gsm(f"Brak wolnych terminow w poblizu. Sprobuj pozniej lub zadzwon na {HOTLINE}.")


def dialog_waitlisted() -> str:
    return gsm(
        "e-Rejestracja: jestes na liscie oczekujacych. Gdy zwolni sie termin w poblizu, "
        "wyslemy SMS z propozycja (odpowiedz TAK lub NIE)."
    )


def dialog_booked(
    product: str,
    dose_number: int,
    starts_at: datetime,
    point: Mapping[str, Any] | None,
    second_dose_at: datetime | None,
) -> str:
    text = (
        f"Zarezerwowano: szczepienie {product} (dawka {dose_number}) {when(starts_at)}, "
        f"{place(point)}."
    )
    if second_dose_at is not None:
        text += f" Dawka 2: {when(second_dose_at)}."
    return gsm(text + f" Przypomnimy dzien wczesniej. Odwolanie: {PORTAL} lub {HOTLINE}.")


def dialog_already_booked(starts_at: datetime | None) -> str:
    at = f" na {when(starts_at)}" if starts_at else ""
    return gsm(f"Wizyta jest juz zarezerwowana{at}. Zmiana lub odwolanie: {PORTAL} lub {HOTLINE}.")


def dialog_expired() -> str:
    return gsm(f"Propozycja terminu wygasla. Aby zaczac od nowa: {HOW_TO}")


def dialog_no_offer() -> str:
    return gsm(f"Nie masz teraz propozycji terminu. {HOW_TO}")


def dialog_stopped() -> str:
    return gsm(f"Zakonczono rozmowe. Aby zaczac od nowa: {HOW_TO}")


_REFUSALS = {
    "already_booked": "Masz juz zarezerwowana wizyte na te dawke.",
    "cohort_not_open": "Rejestracja dla Twojego rocznika jeszcze sie nie rozpoczela.",
    "age_not_allowed": "Ta szczepionka nie jest przeznaczona dla Twojej grupy wiekowej.",
    "referral_missing": "Brak aktywnego e-skierowania na szczepienie.",
    "referral_expired": "E-skierowanie nie obejmuje tego terminu.",
    "referral_not_yet_valid": "E-skierowanie nie obejmuje jeszcze tego terminu.",
    "referral_used": "E-skierowanie zostalo juz wykorzystane.",
    "dose_interval_violated": "Termin nie zachowuje wymaganego odstepu miedzy dawkami.",
    "booster_not_allowed": "Dawka przypominajaca nie jest jeszcze mozliwa.",
    "product_not_offered": "Ta szczepionka nie jest dostepna w tym punkcie.",
    "unknown_product": "Nie znamy tej szczepionki.",
    "queue_turn_required": "Twoja kolej w kolejce jeszcze nie nadeszla lub minela.",
}


def dialog_refused(code: str) -> str:
    reason = _REFUSALS.get(code, "Nie mozna zarezerwowac tej wizyty.")
    return gsm(f"{reason} Pomoc: infolinia {HOTLINE} lub {PORTAL}.")


# -- a cohort opening's waiting room (docs/fair-opening.md): the same room as the portal ----
def dialog_opening_announced(opens_at: datetime, room_opens_at: datetime) -> str:
    return gsm(
        f"Zapisy dla Twojej grupy rusza {when(opens_at)}. Poczekalnia otwiera sie "
        f"{when(room_opens_at)}: napisz wtedy ponownie. Kolejnosc w poczekalni jest losowana, "
        "pospiech nic nie daje."
    )


def dialog_queued(
    opens_at: datetime, position: int | None, ahead: int | None, turn_at: datetime | None
) -> str:
    if position is None:  # before the moment: the order is drawn then, nobody has a place
        return gsm(
            f"Jestes w poczekalni. {when(opens_at)} kolejnosc zostanie wylosowana. "
            "Napisz TAK po tej godzinie, by poznac swoje miejsce."
        )
    at = f" Szacowany czas: {when(turn_at)}." if turn_at else ""
    return gsm(
        f"Jestes w kolejce: miejsce {position} (przed Toba {ahead or 0}).{at} "
        "Gdy przyjdzie Twoja kolej, napisz TAK, a zaproponujemy termin."
    )


def dialog_turn_passed() -> str:
    return gsm(f"Twoja kolej w kolejce minela. Aby ustawic sie ponownie: {HOW_TO}")


def dialog_busy() -> str:
    return gsm("Trwa rezerwacja poprzedniej odpowiedzi. Poczekaj chwile.")


# -- who is texting: the patient's own number, or a code sent to it -------------------------
def dialog_code_sent() -> str:
    """The one answer to "PESEL KOD" from a number that is not the patient's own, whether the
    PESEL has a patient, a referral, a phone, or none: a stranger learns nothing from it."""
    return gsm(
        "Jesli ten numer PESEL ma w e-Rejestracji numer telefonu, wyslalismy na niego kod. "
        "Odpisz tutaj: KOD i 6 cyfr (wazny 10 min). Bez kodu rezerwacja z tego numeru "
        f"nie jest mozliwa. Pomoc: infolinia {HOTLINE}."
    )


def dialog_owner_code(code: str, sender_ending: str, valid_minutes: int) -> str:
    """To the patient's own number: someone asks to book for them from another phone."""
    return gsm(
        f"e-Rejestracja: kod {code}. Ktos chce umowic Twoje szczepienie SMS-em z numeru "
        f"konczacego sie na {sender_ending}. Podaj kod tylko, jesli to Ty lub osoba, ktorej "
        f"ufasz. Wazny {valid_minutes} min."
    )


def dialog_code_wrong() -> str:
    return gsm(f"Kod jest nieprawidlowy lub wygasl. Aby zaczac od nowa: {HOW_TO}")


def dialog_rate_limited() -> str:
    return gsm(f"Zbyt wiele wiadomosci z tego numeru. Sprobuj za godzine lub zadzwon: {HOTLINE}.")


# -- the patient's own number ----------------------------------------------------------------
def phone_code(code: str, valid_minutes: int) -> str:
    return gsm(
        f"e-Rejestracja: kod potwierdzenia numeru telefonu: {code}. Wazny {valid_minutes} min. "
        "Nie podawaj go nikomu."
    )
