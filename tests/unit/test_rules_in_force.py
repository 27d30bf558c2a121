"""The pure parts of "every decision follows the rules in force at its moment": which version
a moment picks, and what the pure rule functions decide under each version. The services'
paths are shown against the emulator in tests/integration/test_rules_in_force.py."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from common.domain.calendar import WARSAW
from common.domain.eligibility import load_cohort_rules
from common.domain.rulebook import RuleBook, load_rule_book
from common.domain.series import rebooking_days
from common.domain.vaccines import load_catalogue, second_dose_window
from common.services.notifications import NotificationService
from common.services.sms_dialog import pick_products
from tests.support.rules import (
    COMIRNATY_NEW_NAME,
    NEW_VERSION,
    write_rules_with_new_version,
)

D = date(2031, 3, 3)
# As the clock gives them (UTC), one hour apart on the same UTC day (D - 1): 23:30 on D - 1
# and 00:30 on D in Warsaw. Only the Warsaw day tells them apart.
BEFORE = datetime(2031, 3, 2, 22, 30, tzinfo=UTC)
ON = datetime(2031, 3, 2, 23, 30, tzinfo=UTC)
BORN_19 = date(2011, 6, 1)  # 19 on and around D


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> RuleBook:
    folder = write_rules_with_new_version(tmp_path_factory.mktemp("r") / "rules", D)
    return load_rule_book(Path(folder))


def test_a_moment_picks_the_version_of_its_warsaw_day(book: RuleBook) -> None:
    assert BEFORE.date() == ON.date() == D - timedelta(days=1)
    assert (BEFORE.astimezone(WARSAW).date(), ON.astimezone(WARSAW).date()) == (BEFORE.date(), D)
    assert book.rules_at(BEFORE).catalogue.version == "2022.2"
    assert book.rules_at(ON).catalogue.version == NEW_VERSION
    assert book.rules_at(ON) == book.rules_for(D)
    with pytest.raises(ValueError, match="aware"):
        book.rules_at(datetime(2031, 3, 3, 12, 0))


def test_a_fixed_book_is_the_same_on_every_day() -> None:
    catalogue, cohorts = load_catalogue(), load_cohort_rules()
    fixed = RuleBook.fixed(catalogue, cohorts)
    for moment in (datetime(1999, 1, 1, tzinfo=UTC), BEFORE, ON, datetime(2100, 1, 1, tzinfo=UTC)):
        rules = fixed.rules_at(moment)
        assert rules.catalogue is catalogue and rules.cohorts is cohorts


def test_the_dose_2_window_is_the_one_in_force(book: RuleBook) -> None:
    first = D + timedelta(days=7)
    old = book.rules_at(BEFORE).catalogue.get("comirnaty")
    new = book.rules_at(ON).catalogue.get("comirnaty")
    assert second_dose_window(old, first) == tuple(first + timedelta(days=n) for n in (21, 42, 35))
    assert second_dose_window(new, first) == tuple(first + timedelta(days=n) for n in (21, 30, 28))


def test_a_displaced_dose_2_is_offered_its_window_in_force(book: RuleBook) -> None:
    first, visit = D + timedelta(days=10), D + timedelta(days=45)
    for now, last in ((BEFORE, 42), (ON, 30)):
        days = rebooking_days(
            book.rules_at(now).catalogue, "comirnaty", 2, visit, first_dose_day=first
        )
        assert days == (first + timedelta(days=21), first + timedelta(days=last))
    # Without a known dose 1 (or for a dose 1) the offer starts on the lost visit's day.
    assert rebooking_days(book.rules_at(ON).catalogue, "comirnaty", 2, visit) == (visit, None)
    assert rebooking_days(book.rules_at(ON).catalogue, "comirnaty", 1, visit) == (visit, None)


def test_a_displaced_patient_is_offered_only_a_product_their_age_allows_then(
    book: RuleBook,
) -> None:
    visit = D + timedelta(days=11)
    before = rebooking_days(
        book.rules_at(BEFORE).catalogue, "jcovden", 1, visit, birth_date=BORN_19
    )
    on = rebooking_days(book.rules_at(ON).catalogue, "jcovden", 1, visit, birth_date=BORN_19)
    assert (before, on) == ((visit, None), None)
    adult = rebooking_days(
        book.rules_at(ON).catalogue, "jcovden", 1, visit, birth_date=date(1980, 5, 17)
    )
    assert adult == (visit, None)
    assert rebooking_days(book.rules_at(ON).catalogue, "sputnik", 1, visit) is None


def test_the_sms_dialog_offers_the_products_the_age_allows_then(book: RuleBook) -> None:
    before = pick_products(book.rules_at(BEFORE).catalogue, None, 19)
    on = pick_products(book.rules_at(ON).catalogue, None, 19)
    assert "jcovden" in before
    assert on == [p for p in before if p != "jcovden"]


def test_notifications_name_the_product_as_the_rules_in_force_do(book: RuleBook) -> None:
    service = NotificationService(None, book, None, None)  # type: ignore[arg-type]
    assert service.product_name("comirnaty", BEFORE) == "Comirnaty"
    assert service.product_name("comirnaty", ON) == COMIRNATY_NEW_NAME
    assert service.product_name("sputnik", ON) == "sputnik"
