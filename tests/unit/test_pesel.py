from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from common.domain.errors import InvalidPeselError
from common.domain.pesel import Pesel, is_valid_pesel, make_pesel, parse_pesel, pesel_key

TODAY = date(2024, 6, 1)
SECRET = b"test-secret"
VALID_MAN = "44051401359"
VALID_WOMAN = "02270803624"


def _failure(raw: str, today: date = TODAY) -> InvalidPeselError:
    with pytest.raises(InvalidPeselError) as exc:
        parse_pesel(raw, today)
    return exc.value


def _with_check_digit(first_ten: str) -> str:
    weights = (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)
    total = sum(int(d) * w for d, w in zip(first_ten, weights, strict=True))
    return first_ten + str((10 - total % 10) % 10)


# --- the documented examples -------------------------------------------------------------


def test_valid_man() -> None:
    pesel = parse_pesel(VALID_MAN, TODAY)
    assert pesel.birth_date == date(1944, 5, 14)
    assert pesel.sex == "M"
    assert pesel.value == VALID_MAN


def test_valid_woman_born_in_2000s() -> None:
    pesel = parse_pesel(VALID_WOMAN, TODAY)
    assert pesel.birth_date == date(2002, 7, 8)
    assert pesel.sex == "F"


def test_surrounding_whitespace_is_ignored() -> None:
    assert parse_pesel(f" {VALID_MAN}\n", TODAY).value == VALID_MAN


# --- every failure reason, none echoing the number -----------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param("44051401358", "check_digit", id="check-digit"),
        pytest.param("4405140135", "length", id="too-short"),
        pytest.param("440514013590", "length", id="too-long"),
        pytest.param("", "length", id="empty"),
        pytest.param("4405140135X", "format", id="letter"),
        pytest.param("44-51401359", "format", id="dash"),
        pytest.param("٤٤051401359", "format", id="non-ascii-digits"),
        pytest.param(_with_check_digit("4400140135"), "month", id="month-00"),
        pytest.param(_with_check_digit("4413140135"), "month", id="month-13"),
        pytest.param(_with_check_digit("4420140135"), "month", id="month-20"),
        pytest.param(_with_check_digit("4433140135"), "month", id="month-33"),
        pytest.param(_with_check_digit("4499140135"), "month", id="month-99"),
        pytest.param(_with_check_digit("4402300135"), "date", id="feb-30"),
        pytest.param(_with_check_digit("2302290135"), "date", id="feb-29-common-year"),
        pytest.param(_with_check_digit("4404310135"), "date", id="apr-31"),
        pytest.param(_with_check_digit("4405000135"), "date", id="day-00"),
        pytest.param(_with_check_digit("4445140135"), "future", id="2144"),
    ],
)
def test_failure_reasons(raw: str, reason: str) -> None:
    error = _failure(raw)
    assert error.details == {"reason": reason}
    assert error.code == "invalid_pesel"
    assert error.http_status == 400
    if raw.strip():
        assert raw not in str(error)
        assert raw not in repr(error)


def test_non_string_is_rejected() -> None:
    assert _failure(44051401359).details["reason"] == "format"  # type: ignore[arg-type]


# --- centuries, leap days, future --------------------------------------------------------


@pytest.mark.parametrize(
    ("month_field", "year"),
    [
        pytest.param("85", 1844, id="1800s"),
        pytest.param("05", 1944, id="1900s"),
        pytest.param("25", 2044, id="2000s"),
        pytest.param("45", 2144, id="2100s"),
        pytest.param("65", 2244, id="2200s"),
    ],
)
def test_all_five_centuries(month_field: str, year: int) -> None:
    raw = _with_check_digit(f"44{month_field}140135")
    pesel = parse_pesel(raw, today=date(2299, 12, 31))
    assert pesel.birth_date == date(year, 5, 14)


@pytest.mark.parametrize(
    ("birth", "valid"),
    [
        pytest.param(date(2000, 2, 29), True, id="2000-divisible-by-400"),
        pytest.param(date(2004, 2, 29), True, id="2004"),
        pytest.param(date(1904, 2, 29), True, id="1904"),
    ],
)
def test_leap_days(birth: date, valid: bool) -> None:
    assert is_valid_pesel(make_pesel(birth, "F", 1), TODAY) is valid


@pytest.mark.parametrize(
    "first_ten",
    [
        pytest.param("0002290135", id="1900-not-leap"),
        pytest.param("0082290135", id="1800-not-leap"),
        pytest.param("0042290135", id="2100-not-leap"),
    ],
)
def test_feb_29_in_century_common_years(first_ten: str) -> None:
    assert (
        _failure(_with_check_digit(first_ten), today=date(2299, 1, 1)).details["reason"] == "date"
    )


def test_birth_today_is_valid_tomorrow_is_future() -> None:
    assert is_valid_pesel(make_pesel(TODAY, "M", 0), TODAY)
    tomorrow = TODAY + timedelta(days=1)
    assert _failure(make_pesel(tomorrow, "M", 0)).details["reason"] == "future"


def test_future_is_relative_to_the_given_today() -> None:
    raw = make_pesel(date(2030, 1, 1), "F", 5)
    assert not is_valid_pesel(raw, TODAY)
    assert is_valid_pesel(raw, date(2030, 1, 1))


# --- masking --------------------------------------------------------------------------------


def test_masking_everywhere_it_could_be_printed() -> None:
    pesel = parse_pesel(VALID_MAN, TODAY)
    assert repr(pesel) == "Pesel(440514*****)"
    assert str(pesel) == "440514*****"
    logged = "%s %r" % (pesel, pesel)  # noqa: UP031 - the logging module formats this way
    for rendered in (f"{pesel}", f"{pesel!r}", f"{pesel:>20}", f"{pesel}", logged):
        assert VALID_MAN not in rendered
    assert VALID_MAN not in repr([pesel])
    assert VALID_MAN not in repr({"p": pesel})


def test_pydantic_errors_do_not_echo_the_number() -> None:
    with pytest.raises(ValidationError) as exc:
        Pesel(value=VALID_MAN, birth_date=date(1944, 5, 15), sex="M")
    assert VALID_MAN not in str(exc.value)


def test_direct_construction_is_validated() -> None:
    with pytest.raises(InvalidPeselError):
        Pesel(value="44051401358", birth_date=date(1944, 5, 14), sex="M")


def test_pesel_is_frozen() -> None:
    pesel = parse_pesel(VALID_MAN, TODAY)
    with pytest.raises(ValidationError):
        pesel.value = VALID_WOMAN  # type: ignore[misc]


# --- keyed hash ----------------------------------------------------------------------------


def test_key_is_stable_and_32_hex_chars() -> None:
    key = pesel_key(VALID_MAN, SECRET)
    assert key == pesel_key(VALID_MAN, SECRET)
    assert key == pesel_key(parse_pesel(VALID_MAN, TODAY), SECRET)
    assert len(key) == 32
    assert int(key, 16) >= 0
    assert VALID_MAN not in key


def test_key_known_value() -> None:
    # Pinned (cross-checked with `openssl dgst -sha256 -hmac`) so a refactor cannot
    # silently change every document ID in the database.
    assert pesel_key(VALID_MAN, SECRET) == "15ac53265940aafaa82ffc8fae7a0ca4"


def test_key_depends_on_secret_and_number() -> None:
    assert pesel_key(VALID_MAN, SECRET) != pesel_key(VALID_MAN, b"other-secret")
    assert pesel_key(VALID_MAN, SECRET) != pesel_key(VALID_WOMAN, SECRET)


def test_key_needs_a_secret() -> None:
    with pytest.raises(ValueError):
        pesel_key(VALID_MAN, b"")


# --- make_pesel ------------------------------------------------------------------------------


def test_make_pesel_reproduces_a_known_number() -> None:
    assert make_pesel(date(1944, 5, 14), "M", 67) == VALID_MAN
    assert make_pesel(date(2002, 7, 8), "f", 181) == VALID_WOMAN


@pytest.mark.parametrize(
    ("birth", "sex", "serial"),
    [
        pytest.param(date(1799, 12, 31), "F", 0, id="before-1800"),
        pytest.param(date(2300, 1, 1), "F", 0, id="after-2299"),
        pytest.param(date(2000, 1, 1), "X", 0, id="bad-sex"),
        pytest.param(date(2000, 1, 1), "F", -1, id="negative-serial"),
        pytest.param(date(2000, 1, 1), "F", 5000, id="serial-too-big"),
    ],
)
def test_make_pesel_rejects_bad_input(birth: date, sex: str, serial: int) -> None:
    with pytest.raises(ValueError):
        make_pesel(birth, sex, serial)


def test_make_pesel_serials_are_distinct() -> None:
    numbers = {make_pesel(date(1990, 1, 1), sex, s) for sex in "FM" for s in range(5000)}
    assert len(numbers) == 10_000


# --- properties ----------------------------------------------------------------------------

LAST_DAY = date(2299, 12, 31)
birth_dates = st.dates(min_value=date(1800, 1, 1), max_value=LAST_DAY)
sexes = st.sampled_from(["F", "M"])
serials = st.integers(min_value=0, max_value=4999)


@given(birth=birth_dates, sex=sexes, serial=serials)
def test_make_pesel_always_valid(birth: date, sex: str, serial: int) -> None:
    pesel = parse_pesel(make_pesel(birth, sex, serial), LAST_DAY)
    assert pesel.birth_date == birth
    assert pesel.sex == sex


@given(
    birth=birth_dates,
    sex=sexes,
    serial=serials,
    position=st.integers(min_value=0, max_value=10),
    delta=st.integers(min_value=1, max_value=9),
)
def test_any_single_digit_change_is_invalid(
    birth: date, sex: str, serial: int, position: int, delta: int
) -> None:
    raw = make_pesel(birth, sex, serial)
    changed_digit = str((int(raw[position]) + delta) % 10)
    mutated = raw[:position] + changed_digit + raw[position + 1 :]
    assert not is_valid_pesel(mutated, LAST_DAY)
