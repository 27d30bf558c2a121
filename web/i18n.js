// Every UI string in Polish (the default) and English. Plain ES module.
// Markup names a string with data-i18n (text), data-i18n-label (aria-label) or
// data-i18n-placeholder; code calls t("key", {param: value}).
// Counts are written as "label: n" so that no Polish plural forms are needed.

const STRINGS = {
  pl: {
    "common.skip": "Przejdź do treści",
    "common.logout": "Wyloguj",
    "common.sections": "Sekcje strony",
    "common.loading": "Wczytywanie…",
    "common.footer":
      "Wersja demonstracyjna odtworzenia systemu e-Rejestracji na szczepienia przeciw COVID-19. Dane są fikcyjne.",
    "common.show": "Pokaż",
    "common.actions": "Akcje",
    "common.product": "Szczepionka",
    "common.dose": "Dawka",
    "common.patient": "Pacjent",
    "common.status": "Status",
    "common.day": "Dzień",
    "common.when": "Termin",
    "common.point": "Punkt",
    "common.appointment_id": "Nr wizyty",
    "common.cancel": "Anuluj",
    "common.back": "Wróć",
    "common.save": "Zapisz",
    "common.yes": "Tak",
    "common.no": "Nie",
    "common.confirm_title": "Potwierdź",
    "common.search": "Szukaj",
    "common.refresh": "Odśwież",
    "common.more_results": "Pokaż dalsze punkty",
    "common.postcode": "Kod pocztowy",
    "common.postcode_hint": "Na przykład 31-001.",
    "common.phone": "Telefon",
    "common.phone_hint": "+48 i 9 cyfr, np. +48600123456.",
    "common.note": "Uwagi",
    "common.accessible_only": "Tylko punkty dostępne dla osób z niepełnosprawnościami",

    "header.signed_in_as": "Zalogowano: {label}",
    "header.not_signed_in": "Nie zalogowano",
    "role.patient": "pacjent",
    "role.agent": "konsultant infolinii",
    "role.staff": "personel punktu szczepień",
    "role.admin": "administrator",
    "login.needed_title": "Zaloguj się",
    "login.needed_text": "Ta strona jest dla ról:",
    "login.go": "Przejdź do logowania (wybór użytkownika demonstracyjnego)",

    "error.prefix": "Błąd",
    "error.network": "Brak połączenia z serwerem. Spróbuj ponownie — powtórzenie tej samej czynności nie wykona jej dwa razy.",
    "error.unexpected": "Nieoczekiwany błąd",
    "error.unauthenticated": "Sesja wygasła lub token jest nieważny. Zaloguj się ponownie na stronie głównej.",
    "error.retry_after": "Spróbuj ponownie za {s} s.",
    "code.invalid_pesel": "Nieprawidłowy numer PESEL",
    "code.invalid_request": "Nieprawidłowe dane",
    "code.referral_missing": "Pacjent nie ma skierowania",
    "code.referral_expired": "Skierowanie wygasło",
    "code.referral_not_yet_valid": "Skierowanie nie jest jeszcze ważne",
    "code.referral_used": "Skierowanie zostało już wykorzystane",
    "code.cohort_not_open": "Zapisy dla tej grupy nie są jeszcze otwarte",
    "code.age_not_allowed": "Ta szczepionka nie jest dopuszczona dla wieku pacjenta",
    "code.dose_interval_violated": "Zbyt krótki lub zbyt długi odstęp między dawkami",
    "code.booster_not_allowed": "Dawka przypominająca nie jest jeszcze możliwa",
    "code.product_not_offered": "Punkt nie oferuje tej szczepionki",
    "code.slot_unavailable": "Ten termin jest już zajęty — wybierz inny",
    "code.already_booked": "Pacjent ma już wizytę na tę dawkę",
    "code.appointment_not_found": "Nie znaleziono wizyty",
    "code.invalid_state": "Stan wizyty nie pozwala na tę czynność",
    "code.idempotency_key_mismatch": "Ta czynność została już wysłana z innymi danymi",
    "code.request_in_progress": "Ta czynność jest jeszcze wykonywana — spróbuj za chwilę",
    "code.forbidden": "Brak uprawnień",
    "code.not_found": "Nie znaleziono",
    "code.dependency_unavailable": "Usługa chwilowo niedostępna",
    "code.patient_mismatch": "PESEL nie zgadza się z pacjentem zapisanym na tę wizytę",
    "code.slot_exists": "Taki termin już istnieje",
    "code.slot_not_found": "Nie ma takiego terminu",
    "code.point_not_found": "Nie ma takiego punktu",
    "code.visit_not_due": "To jeszcze nie jest dzień (lub godzina) tej wizyty",
    "code.callback_not_found": "Nie ma takiego zgłoszenia",
    "code.calendar_busy": "Kalendarz jest właśnie zmieniany — spróbuj ponownie",
    "code.unknown_product": "Nieznana szczepionka",

    "pesel.not_11_digits": "PESEL ma dokładnie 11 cyfr.",
    "pesel.bad_checksum": "Ten PESEL ma błędną cyfrę kontrolną — sprawdź, czy został dobrze przepisany.",
    "pesel.bad_date": "Ten PESEL nie zawiera prawidłowej daty urodzenia.",

    "status.booked": "zarezerwowana",
    "status.cancelled": "odwołana",
    "status.completed": "zakończona — szczepienie podane",
    "status.no_show": "pacjent nie przyszedł",
    "dose.primary": "dawka {n}",
    "dose.booster": "dawka przypominająca {n}",
    "sex.F": "kobieta",
    "sex.M": "mężczyzna",
    "patient.born": "ur. {year}",
    "product.any": "Dowolna",
    "weekday.0": "poniedziałek",
    "weekday.1": "wtorek",
    "weekday.2": "środa",
    "weekday.3": "czwartek",
    "weekday.4": "piątek",
    "weekday.5": "sobota",
    "weekday.6": "niedziela",

    "index.title": "e-Rejestracja — wersja demonstracyjna",
    "index.brand_sub": "szczepienia przeciw COVID-19 — wersja demonstracyjna",
    "index.heading": "Logowanie do wersji demonstracyjnej",
    "index.about_heading": "Jak działa to logowanie",
    "index.about_1":
      "To lokalne logowanie demonstracyjne: wybierasz jednego z przygotowanych użytkowników, a jego token (ID token) jest przechowywany w pamięci tej karty przeglądarki (sessionStorage) i znika po jej zamknięciu.",
    "index.about_2":
      "W wersji produkcyjnej token wydaje logowanie portalu (Identity Platform, np. przez Profil Zaufany). Aplikacje korzystają z tego samego publicznego API /v1 co portal pacjenta.",
    "index.users_heading": "Wybierz użytkownika",
    "index.login_as": "Zaloguj jako: {label}",
    "index.no_users": "Brak użytkowników demonstracyjnych (serwer nie udostępnia /dev/tokens).",
    "index.tokens_failed": "Nie udało się pobrać użytkowników demonstracyjnych",
    "index.apps_heading": "Aplikacje",
    "index.app_staff": "Punkt szczepień (personel)",
    "index.app_agent": "Infolinia 989 (konsultant)",
    "index.app_patient": "Pacjent",
    "index.app_api": "Opis API (OpenAPI)",

    "staff.title": "Punkt szczepień — e-Rejestracja",
    "staff.brand_sub": "punkt szczepień",
    "staff.heading": "Punkt szczepień",
    "staff.point_id": "Identyfikator punktu",
    "staff.calendar_heading": "Kalendarz",
    "staff.week_from": "Tydzień od",
    "staff.week_prev": "Poprzedni tydzień",
    "staff.week_next": "Następny tydzień",
    "staff.week_caption": "Tydzień {from} – {to}: miejsca wolne i zajęte",
    "staff.col_day": "Dzień",
    "staff.col_slots": "Terminy",
    "staff.col_capacity": "Miejsca",
    "staff.col_booked": "Zajęte",
    "staff.col_free": "Wolne",
    "staff.col_blocked": "Zablokowane",
    "staff.col_time": "Godzina",
    "staff.col_state": "Stan",
    "staff.col_when": "Termin",
    "staff.day_heading": "Terminy: {day}",
    "staff.day_empty": "Brak terminów tego dnia.",
    "staff.state_open": "otwarty",
    "staff.state_full": "pełny",
    "staff.state_blocked": "zablokowany (po odblokowaniu miejsc: {cap})",
    "staff.change_capacity": "Zmień liczbę miejsc",
    "staff.block": "Zablokuj",
    "staff.unblock": "Odblokuj",
    "staff.remove": "Usuń",
    "staff.capacity_title": "Zmień liczbę miejsc",
    "staff.capacity": "Liczba miejsc",
    "staff.capacity_hint":
      "Zmniejszenie poniżej liczby zajętych miejsc odwołuje nadmiarowe wizyty; pacjenci dostaną powiadomienie z propozycją innych terminów.",
    "staff.booked_now": "zajętych miejsc: {n}",
    "staff.slot_changed": "Termin {slot}: miejsc {cap}. Odwołanych wizyt: {n}.",
    "staff.slot_removed": "Usunięto termin {slot}. Odwołanych wizyt: {n}.",
    "staff.remove_confirm": "Usunąć termin {slot}? Zarezerwowanych wizyt (zostaną odwołane): {n}.",
    "staff.displaced_heading": "Odwołane wizyty",
    "staff.displaced_text":
      "Te wizyty straciły miejsce i zostały odwołane; pacjenci dostają powiadomienie z najbliższymi wolnymi terminami.",
    "staff.add_slot_heading": "Dodaj pojedynczy termin",
    "staff.start": "Godzina rozpoczęcia",
    "staff.add_slot": "Dodaj termin",
    "staff.slot_added": "Dodano termin {slot}.",
    "staff.publish_heading": "Publikuj terminy",
    "staff.publish_text":
      "Dodaje terminy według wzoru w wybranych dniach. Istniejące terminy zostają bez zmian (liczbę miejsc zmienia się w kalendarzu). Aby opublikować jeden dzień, wybierz tę samą datę w obu polach.",
    "staff.date_from": "Od dnia",
    "staff.date_to": "Do dnia",
    "staff.weekdays": "Dni tygodnia",
    "staff.weekdays_needed": "Wybierz co najmniej jeden dzień tygodnia.",
    "staff.opens": "Pierwszy termin o",
    "staff.closes": "Koniec przyjęć o",
    "staff.slot_minutes": "Długość terminu (minuty)",
    "staff.capacity_per_slot": "Miejsc w terminie",
    "staff.publish": "Publikuj",
    "staff.published": "Opublikowano. Dodane terminy: {added}, już istniejące: {kept}.",
    "staff.visits_heading": "Wizyty",
    "staff.show_visits": "Pokaż wizyty",
    "staff.visits_caption": "Wizyty: {day} (liczba: {n})",
    "staff.visits_empty": "Brak wizyt tego dnia.",
    "staff.checked_in_at": "pacjent na miejscu (od {time})",
    "staff.checkin": "Zarejestruj przybycie",
    "staff.checkin_title": "Rejestracja przybycia pacjenta",
    "staff.checkin_pesel": "PESEL z dowodu osobistego pacjenta",
    "staff.checked_in": "Zarejestrowano przybycie: {visit}.",
    "staff.complete": "Zakończ wizytę",
    "staff.complete_title": "Zapisz podane szczepienie",
    "staff.completed": "Wizyta {visit}: {status}.",
    "staff.noshow": "Nie przyszedł",
    "staff.noshow_title": "Pacjent nie przyszedł",
    "staff.noshow_done": "Zapisano nieobecność: {visit}.",
    "staff.note_optional": "Uwagi (nieobowiązkowe)",
    "staff.lot_number": "Numer serii",
    "staff.lot_hint": "Wielkie litery, cyfry i myślnik, 3–20 znaków (np. FF1234).",
    "staff.lot_invalid": "Numer serii: wielkie litery, cyfry i myślnik, 3–20 znaków.",
    "staff.walkins_heading": "Szczepienia bez rezerwacji tego dnia",
    "staff.walkins_empty": "Brak.",
    "staff.leftover": "Dawka pozostała w fiolce",
    "staff.walkin_heading": "Szczepienie bez rezerwacji",
    "staff.walkin_text":
      "Dla pacjenta bez wizyty. Obowiązują zwykłe zasady (skierowanie, wiek, odstępy między dawkami), chyba że to dawka pozostała w otwartej fiolce, która inaczej zostałaby zmarnowana — wtedy liczy się tylko wiek i trzeba podać uzasadnienie.",
    "staff.leftover_label": "Dawka pozostała w fiolce (inaczej zostałaby zmarnowana)",
    "staff.leftover_reason": "Uzasadnienie (wymagane dla dawki pozostałej w fiolce)",
    "staff.leftover_reason_needed": "Podaj uzasadnienie podania dawki pozostałej w fiolce (co najmniej 3 znaki).",
    "staff.record_walkin": "Zapisz szczepienie",
    "staff.walkin_done": "Zapisano szczepienie: {product}, {dose}.",

    "agent.title": "Infolinia 989 — e-Rejestracja",
    "agent.brand_sub": "infolinia 989",
    "agent.heading": "Infolinia 989 — obsługa pacjenta",
    "agent.lookup_heading": "Wyszukaj pacjenta",
    "agent.lookup_text":
      "Podaj pełny PESEL rozmówcy i powód. Każde wyszukanie jest zapisywane w dzienniku dostępu. PESEL nie trafia do adresu strony ani do pamięci przeglądarki.",
    "agent.reason": "Powód (zapisywany w dzienniku dostępu)",
    "agent.reason_call": "Pacjent dzwoni na infolinię",
    "agent.reason_booking": "Pacjent prosi o rezerwację terminu",
    "agent.reason_change": "Pacjent prosi o zmianę terminu",
    "agent.reason_needed": "Podaj powód (co najmniej 3 znaki).",
    "agent.find": "Wyszukaj",
    "agent.forget": "Zakończ rozmowę (wyczyść dane)",
    "agent.forgotten": "Dane rozmówcy usunięte z formularzy.",
    "agent.found": "Znaleziono pacjenta: {patient}.",
    "agent.patient_heading": "Pacjent: {patient}",
    "agent.referrals": "Skierowania",
    "agent.appointments": "Wizyty",
    "agent.vaccinations": "Szczepienia",
    "agent.col_kind": "Rodzaj",
    "agent.col_valid_from": "Ważne od",
    "agent.col_valid_to": "Ważne do",
    "agent.col_given_on": "Data",
    "agent.col_created": "Zgłoszono",
    "agent.no_referrals": "Brak skierowań.",
    "agent.no_appointments": "Brak wizyt.",
    "agent.no_vaccinations": "Brak szczepień.",
    "agent.move": "Przenieś",
    "agent.cancel": "Odwołaj",
    "agent.cancel_title": "Odwołaj wizytę",
    "agent.cancel_confirm": "Odwołaj wizytę",
    "agent.cancelled": "Odwołano wizyty (liczba: {n}).",
    "agent.moving": "Przenoszenie wizyty: {when}, {product}, {dose}. Wybierz nowy termin poniżej.",
    "agent.move_stop": "Nie przenoś",
    "agent.move_here": "Przenieś tutaj",
    "agent.moved": "Przeniesiono: {list}.",
    "agent.book": "Zarezerwuj",
    "agent.booked": "Zarezerwowano: {list}.",
    "agent.book_reason": "Powód rezerwacji (zapisywany w dzienniku dostępu)",
    "agent.search_heading": "Znajdź termin dla rozmówcy",
    "agent.search_for": "Rezerwacja dla: {patient}.",
    "agent.search_no_patient": "Najpierw wyszukaj pacjenta — terminy można przeglądać, ale rezerwacja wymaga pacjenta.",
    "agent.no_patient": "Najpierw wyszukaj pacjenta po numerze PESEL.",
    "agent.callbacks_heading": "Lista oddzwonień",
    "agent.callbacks_caption": "Zgłoszenia do oddzwonienia (liczba: {n})",
    "agent.no_callbacks": "Lista jest pusta.",
    "agent.mark_done": "Oddzwoniono",
    "agent.done_title": "Oddzwoniono — wynik rozmowy",
    "agent.outcome": "Wynik",
    "agent.callback_new": "Dodaj do listy oddzwonień",
    "agent.use_patient": "Wpisz PESEL wyszukanego pacjenta",
    "agent.preferred_postcode": "Preferowany kod pocztowy",
    "agent.callback_add": "Dodaj",
    "agent.callback_added": "Dodano do listy oddzwonień.",
    "agent.callback_closed": "Zapisano wynik rozmowy.",
    "agent.phone_invalid": "Numer telefonu: +48 i 9 cyfr.",
    "callback.open": "Do oddzwonienia",
    "callback.done": "Zakończone",
    "outcome.booked": "zarezerwowano termin",
    "outcome.no_answer": "nie odebrano",
    "outcome.declined": "pacjent zrezygnował",
    "outcome.not_eligible": "pacjent nie może się jeszcze zaszczepić",
    "outcome.other": "inny",
    "outcome.undefined": "",
    "referral.primary": "szczepienie podstawowe",
    "referral.booster": "dawka przypominająca",
    "referral_status.active": "aktywne",
    "referral_status.used": "wykorzystane",
    "referral_status.cancelled": "anulowane",

    "search.none": "Nie znaleziono wolnych terminów. Zmień kryteria (kod pocztowy, szczepionkę, daty) lub dodaj pacjenta do listy oddzwonień.",
    "search.summary": "Wolne terminy od {from} do {to}, najbliższe punkty najpierw.",
    "search.found": "Znalezione punkty: {n}.",
    "search.free": "wolne: {n}",
    "search.free_seats": "wolnych miejsc: {n}",
    "search.distance": "{km} km",
    "search.accessible": "dostępny dla osób z niepełnosprawnościami",
    "search.more_times": "Więcej terminów w tym punkcie",
    "search.no_more": "Brak innych wolnych terminów w tym okresie.",
    "search.postcode_invalid": "Podaj kod pocztowy w postaci 00-000.",

    "patient.title": "Moje szczepienia — e-Rejestracja",
    "patient.brand_sub": "pacjent",
    "patient.heading": "Moje szczepienia",
    "patient.mine_heading": "Moje wizyty",
    "patient.none": "Nie masz jeszcze wizyt.",
    "patient.search_heading": "Znajdź termin szczepienia",
    "patient.postcode_hint": "Na przykład 31-001 — albo użyj lokalizacji z przeglądarki.",
    "patient.use_location": "Użyj mojej lokalizacji",
    "patient.locating": "Ustalanie lokalizacji…",
    "patient.located": "Szukam w pobliżu Twojej lokalizacji.",
    "patient.location_failed": "Nie udało się ustalić lokalizacji ({reason}). Wpisz kod pocztowy.",
    "patient.booked": "Zarezerwowano: {list}. Potwierdzenie przyjdzie SMS-em.",
    "patient.cancel_title": "Odwołać wizytę?",
  },
  en: {
    "common.skip": "Skip to content",
    "common.logout": "Log out",
    "common.sections": "Page sections",
    "common.loading": "Loading…",
    "common.footer":
      "Demo of a re-creation of Poland's COVID-19 vaccination e-Registration. The data are fictitious.",
    "common.show": "Show",
    "common.actions": "Actions",
    "common.product": "Vaccine",
    "common.dose": "Dose",
    "common.patient": "Patient",
    "common.status": "Status",
    "common.day": "Day",
    "common.when": "When",
    "common.point": "Point",
    "common.appointment_id": "Appointment no.",
    "common.cancel": "Cancel",
    "common.back": "Back",
    "common.save": "Save",
    "common.yes": "Yes",
    "common.no": "No",
    "common.confirm_title": "Please confirm",
    "common.search": "Search",
    "common.refresh": "Refresh",
    "common.more_results": "Show more points",
    "common.postcode": "Postcode",
    "common.postcode_hint": "For example 31-001.",
    "common.phone": "Phone",
    "common.phone_hint": "+48 and 9 digits, e.g. +48600123456.",
    "common.note": "Note",
    "common.accessible_only": "Only points accessible to people with disabilities",

    "header.signed_in_as": "Signed in: {label}",
    "header.not_signed_in": "Not signed in",
    "role.patient": "patient",
    "role.agent": "hotline agent",
    "role.staff": "vaccination point staff",
    "role.admin": "administrator",
    "login.needed_title": "Please log in",
    "login.needed_text": "This page is for:",
    "login.go": "Go to the log-in page (choose a demo user)",

    "error.prefix": "Error",
    "error.network": "Cannot reach the server. Try again — repeating the same action will not do it twice.",
    "error.unexpected": "Unexpected error",
    "error.unauthenticated": "The session has expired or the token is not valid. Log in again on the start page.",
    "error.retry_after": "Try again in {s} s.",
    "code.invalid_pesel": "Invalid PESEL number",
    "code.invalid_request": "Invalid input",
    "code.referral_missing": "The patient has no referral",
    "code.referral_expired": "The referral has expired",
    "code.referral_not_yet_valid": "The referral is not valid yet",
    "code.referral_used": "The referral has been used already",
    "code.cohort_not_open": "Registration for this group has not opened yet",
    "code.age_not_allowed": "This vaccine is not authorised for the patient's age",
    "code.dose_interval_violated": "The interval between doses is too short or too long",
    "code.booster_not_allowed": "A booster dose is not possible yet",
    "code.product_not_offered": "The point does not offer this vaccine",
    "code.slot_unavailable": "This slot has just been taken — choose another",
    "code.already_booked": "The patient already has an appointment for this dose",
    "code.appointment_not_found": "Appointment not found",
    "code.invalid_state": "The appointment's state does not allow this",
    "code.idempotency_key_mismatch": "This action was already sent with different data",
    "code.request_in_progress": "This action is still in progress — try again in a moment",
    "code.forbidden": "Not allowed",
    "code.not_found": "Not found",
    "code.dependency_unavailable": "The service is temporarily unavailable",
    "code.patient_mismatch": "The PESEL does not match the patient booked for this visit",
    "code.slot_exists": "This slot exists already",
    "code.slot_not_found": "No such slot",
    "code.point_not_found": "No such point",
    "code.visit_not_due": "It is not the day (or time) of this visit yet",
    "code.callback_not_found": "No such callback",
    "code.calendar_busy": "The calendar is being changed right now — try again",
    "code.unknown_product": "Unknown vaccine",

    "pesel.not_11_digits": "A PESEL has exactly 11 digits.",
    "pesel.bad_checksum": "This PESEL's check digit is wrong — check that it was copied correctly.",
    "pesel.bad_date": "This PESEL does not contain a valid date of birth.",

    "status.booked": "booked",
    "status.cancelled": "cancelled",
    "status.completed": "completed — vaccine given",
    "status.no_show": "did not come",
    "dose.primary": "dose {n}",
    "dose.booster": "booster {n}",
    "sex.F": "female",
    "sex.M": "male",
    "patient.born": "born {year}",
    "product.any": "Any",
    "weekday.0": "Monday",
    "weekday.1": "Tuesday",
    "weekday.2": "Wednesday",
    "weekday.3": "Thursday",
    "weekday.4": "Friday",
    "weekday.5": "Saturday",
    "weekday.6": "Sunday",

    "index.title": "e-Registration — demo",
    "index.brand_sub": "COVID-19 vaccinations — demo",
    "index.heading": "Log in to the demo",
    "index.about_heading": "How this log-in works",
    "index.about_1":
      "This is the local demo sign-in: you choose one of the prepared users, and its ID token is kept in this browser tab's storage (sessionStorage), gone when the tab is closed.",
    "index.about_2":
      "In production the portal's sign-in (Identity Platform, e.g. through Profil Zaufany) provides the token. The apps use the same public /v1 API as the patient portal.",
    "index.users_heading": "Choose a user",
    "index.login_as": "Log in as: {label}",
    "index.no_users": "No demo users (the server does not offer /dev/tokens).",
    "index.tokens_failed": "Could not load the demo users",
    "index.apps_heading": "Apps",
    "index.app_staff": "Vaccination point (staff)",
    "index.app_agent": "Hotline 989 (agent)",
    "index.app_patient": "Patient",
    "index.app_api": "API description (OpenAPI)",

    "staff.title": "Vaccination point — e-Registration",
    "staff.brand_sub": "vaccination point",
    "staff.heading": "Vaccination point",
    "staff.point_id": "Point id",
    "staff.calendar_heading": "Calendar",
    "staff.week_from": "Week from",
    "staff.week_prev": "Previous week",
    "staff.week_next": "Next week",
    "staff.week_caption": "Week {from} – {to}: free and booked seats",
    "staff.col_day": "Day",
    "staff.col_slots": "Slots",
    "staff.col_capacity": "Seats",
    "staff.col_booked": "Booked",
    "staff.col_free": "Free",
    "staff.col_blocked": "Blocked",
    "staff.col_time": "Time",
    "staff.col_state": "State",
    "staff.col_when": "When",
    "staff.day_heading": "Slots: {day}",
    "staff.day_empty": "No slots on this day.",
    "staff.state_open": "open",
    "staff.state_full": "full",
    "staff.state_blocked": "blocked (seats when unblocked: {cap})",
    "staff.change_capacity": "Change seats",
    "staff.block": "Block",
    "staff.unblock": "Unblock",
    "staff.remove": "Remove",
    "staff.capacity_title": "Change the number of seats",
    "staff.capacity": "Seats",
    "staff.capacity_hint":
      "Going below the booked seats cancels the visits above the new number; those patients are told, with other slots offered.",
    "staff.booked_now": "booked seats: {n}",
    "staff.slot_changed": "Slot {slot}: {cap} seats. Visits cancelled: {n}.",
    "staff.slot_removed": "Removed slot {slot}. Visits cancelled: {n}.",
    "staff.remove_confirm": "Remove slot {slot}? Booked visits (they will be cancelled): {n}.",
    "staff.displaced_heading": "Cancelled visits",
    "staff.displaced_text":
      "These visits lost their seat and were cancelled; the patients are told, with the nearest free slots.",
    "staff.add_slot_heading": "Add one slot",
    "staff.start": "Start time",
    "staff.add_slot": "Add slot",
    "staff.slot_added": "Added slot {slot}.",
    "staff.publish_heading": "Publish slots",
    "staff.publish_text":
      "Adds slots from a template on the chosen days. Existing slots stay as they are (change seats in the calendar). To publish one day, choose the same date in both fields.",
    "staff.date_from": "From",
    "staff.date_to": "To",
    "staff.weekdays": "Weekdays",
    "staff.weekdays_needed": "Choose at least one weekday.",
    "staff.opens": "First slot at",
    "staff.closes": "Last admission ends at",
    "staff.slot_minutes": "Slot length (minutes)",
    "staff.capacity_per_slot": "Seats per slot",
    "staff.publish": "Publish",
    "staff.published": "Published. Slots added: {added}, already there: {kept}.",
    "staff.visits_heading": "Visits",
    "staff.show_visits": "Show visits",
    "staff.visits_caption": "Visits: {day} (count: {n})",
    "staff.visits_empty": "No visits on this day.",
    "staff.checked_in_at": "patient here (since {time})",
    "staff.checkin": "Check in",
    "staff.checkin_title": "Check the patient in",
    "staff.checkin_pesel": "PESEL from the patient's ID card",
    "staff.checked_in": "Checked in: {visit}.",
    "staff.complete": "Complete",
    "staff.complete_title": "Record the vaccine given",
    "staff.completed": "Visit {visit}: {status}.",
    "staff.noshow": "No-show",
    "staff.noshow_title": "The patient did not come",
    "staff.noshow_done": "Recorded as a no-show: {visit}.",
    "staff.note_optional": "Note (optional)",
    "staff.lot_number": "Lot number",
    "staff.lot_hint": "Capital letters, digits and hyphens, 3–20 characters (e.g. FF1234).",
    "staff.lot_invalid": "Lot number: capital letters, digits and hyphens, 3–20 characters.",
    "staff.walkins_heading": "Walk-in vaccinations on this day",
    "staff.walkins_empty": "None.",
    "staff.leftover": "Leftover dose",
    "staff.walkin_heading": "Walk-in vaccination",
    "staff.walkin_text":
      "For a patient without an appointment. The usual rules apply (referral, age, dose intervals), unless it is a leftover dose from an open vial that would otherwise be wasted — then only the age limit applies and a reason is required.",
    "staff.leftover_label": "Leftover dose from an open vial (would otherwise be wasted)",
    "staff.leftover_reason": "Reason (required for a leftover dose)",
    "staff.leftover_reason_needed": "Give the reason for the leftover dose (at least 3 characters).",
    "staff.record_walkin": "Record vaccination",
    "staff.walkin_done": "Vaccination recorded: {product}, {dose}.",

    "agent.title": "Hotline 989 — e-Registration",
    "agent.brand_sub": "hotline 989",
    "agent.heading": "Hotline 989 — patient service",
    "agent.lookup_heading": "Find a patient",
    "agent.lookup_text":
      "Enter the caller's full PESEL and a reason. Every look-up is written to the access log. The PESEL never goes into the page address or the browser's storage.",
    "agent.reason": "Reason (written to the access log)",
    "agent.reason_call": "The patient calls the hotline",
    "agent.reason_booking": "The patient asks to book a slot",
    "agent.reason_change": "The patient asks to change a slot",
    "agent.reason_needed": "Give a reason (at least 3 characters).",
    "agent.find": "Find",
    "agent.forget": "End call (clear data)",
    "agent.forgotten": "The caller's data are cleared from the forms.",
    "agent.found": "Patient found: {patient}.",
    "agent.patient_heading": "Patient: {patient}",
    "agent.referrals": "Referrals",
    "agent.appointments": "Appointments",
    "agent.vaccinations": "Vaccinations",
    "agent.col_kind": "Kind",
    "agent.col_valid_from": "Valid from",
    "agent.col_valid_to": "Valid to",
    "agent.col_given_on": "Date",
    "agent.col_created": "Requested",
    "agent.no_referrals": "No referrals.",
    "agent.no_appointments": "No appointments.",
    "agent.no_vaccinations": "No vaccinations.",
    "agent.move": "Move",
    "agent.cancel": "Cancel",
    "agent.cancel_title": "Cancel the appointment",
    "agent.cancel_confirm": "Cancel the appointment",
    "agent.cancelled": "Appointments cancelled: {n}.",
    "agent.moving": "Moving the appointment of {when}, {product}, {dose}. Choose the new slot below.",
    "agent.move_stop": "Do not move",
    "agent.move_here": "Move here",
    "agent.moved": "Moved: {list}.",
    "agent.book": "Book",
    "agent.booked": "Booked: {list}.",
    "agent.book_reason": "Reason for booking (written to the access log)",
    "agent.search_heading": "Find a slot for the caller",
    "agent.search_for": "Booking for: {patient}.",
    "agent.search_no_patient": "Find the patient first — slots can be browsed, but booking needs a patient.",
    "agent.no_patient": "Find the patient by PESEL first.",
    "agent.callbacks_heading": "Callback list",
    "agent.callbacks_caption": "Callbacks (count: {n})",
    "agent.no_callbacks": "The list is empty.",
    "agent.mark_done": "Called back",
    "agent.done_title": "Called back — outcome",
    "agent.outcome": "Outcome",
    "agent.callback_new": "Add to the callback list",
    "agent.use_patient": "Fill in the found patient's PESEL",
    "agent.preferred_postcode": "Preferred postcode",
    "agent.callback_add": "Add",
    "agent.callback_added": "Added to the callback list.",
    "agent.callback_closed": "Outcome saved.",
    "agent.phone_invalid": "Phone number: +48 and 9 digits.",
    "callback.open": "To call back",
    "callback.done": "Done",
    "outcome.booked": "slot booked",
    "outcome.no_answer": "no answer",
    "outcome.declined": "patient declined",
    "outcome.not_eligible": "patient not eligible yet",
    "outcome.other": "other",
    "outcome.undefined": "",
    "referral.primary": "primary series",
    "referral.booster": "booster",
    "referral_status.active": "active",
    "referral_status.used": "used",
    "referral_status.cancelled": "cancelled",

    "search.none": "No free slots found. Change the criteria (postcode, vaccine, dates) or add the patient to the callback list.",
    "search.summary": "Free slots from {from} to {to}, nearest points first.",
    "search.found": "Points found: {n}.",
    "search.free": "free: {n}",
    "search.free_seats": "free seats: {n}",
    "search.distance": "{km} km",
    "search.accessible": "accessible to people with disabilities",
    "search.more_times": "More times at this point",
    "search.no_more": "No other free slots in this period.",
    "search.postcode_invalid": "Enter a postcode as 00-000.",

    "patient.title": "My vaccinations — e-Registration",
    "patient.brand_sub": "patient",
    "patient.heading": "My vaccinations",
    "patient.mine_heading": "My appointments",
    "patient.none": "You have no appointments yet.",
    "patient.search_heading": "Find a vaccination slot",
    "patient.postcode_hint": "For example 31-001 — or use the browser's location.",
    "patient.use_location": "Use my location",
    "patient.locating": "Finding your location…",
    "patient.located": "Searching near your location.",
    "patient.location_failed": "Could not get your location ({reason}). Enter a postcode.",
    "patient.booked": "Booked: {list}. A confirmation will come by SMS.",
    "patient.cancel_title": "Cancel this appointment?",
  },
};

const LANG_KEY = "erej.lang"; // only the language choice is kept between visits
const listeners = [];
let language = "pl";

try {
  const saved = localStorage.getItem(LANG_KEY);
  if (saved && STRINGS[saved]) language = saved;
} catch {
  /* storage may be disabled: Polish it is */
}

export function currentLanguage() {
  return language;
}

/** Keys present in one language and not the other (the browser tests want none). */
export function missingTranslations() {
  const [a, b] = [Object.keys(STRINGS.pl), Object.keys(STRINGS.en)];
  return [...a.filter((k) => !(k in STRINGS.en)), ...b.filter((k) => !(k in STRINGS.pl))];
}

export function languages() {
  return Object.keys(STRINGS);
}

function format(template, params) {
  return template.replace(/\{(\w+)\}/g, (m, name) =>
    params && params[name] !== undefined && params[name] !== null ? String(params[name]) : m,
  );
}

/** The string for `key` in the current language (Polish when English lacks it). */
export function t(key, params) {
  const template = STRINGS[language][key] ?? STRINGS.pl[key];
  if (template === undefined) {
    console.warn(`i18n: no string for ${key}`);
    return key;
  }
  return format(template, params);
}

/** Like t(), but `fallback` when the key is unknown (server codes, statuses). */
export function tOr(key, fallback, params) {
  const template = STRINGS[language][key] ?? STRINGS.pl[key];
  return template === undefined ? fallback : format(template, params);
}

/** Translate the marked-up strings under `root`. */
export function applyTranslations(root = document) {
  document.documentElement.lang = language;
  for (const node of root.querySelectorAll("[data-i18n]")) {
    node.textContent = t(node.dataset.i18n);
  }
  for (const node of root.querySelectorAll("[data-i18n-label]")) {
    node.setAttribute("aria-label", t(node.dataset.i18nLabel));
  }
  for (const node of root.querySelectorAll("[data-i18n-placeholder]")) {
    node.setAttribute("placeholder", t(node.dataset.i18nPlaceholder));
  }
  const toggle = document.getElementById("lang-toggle");
  if (toggle) {
    // The button names the other language, in that language.
    const other = language === "pl" ? "en" : "pl";
    toggle.textContent = other === "en" ? "English" : "Polski";
    toggle.lang = other;
    toggle.setAttribute(
      "aria-label",
      other === "en" ? "Switch to English" : "Przełącz na język polski",
    );
  }
}

export function setLanguage(next) {
  if (!STRINGS[next] || next === language) return;
  language = next;
  try {
    localStorage.setItem(LANG_KEY, language);
  } catch {
    /* ignore */
  }
  applyTranslations();
  for (const fn of listeners) fn(language);
}

export function onLanguageChange(fn) {
  listeners.push(fn);
}

let initialised = false;

export function initI18n() {
  applyTranslations();
  if (initialised) return;
  initialised = true;
  const toggle = document.getElementById("lang-toggle");
  if (toggle) {
    toggle.addEventListener("click", () => setLanguage(language === "pl" ? "en" : "pl"));
  }
}
