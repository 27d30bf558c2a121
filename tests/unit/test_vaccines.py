from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from common.domain.errors import UnknownProductError
from common.domain.vaccines import (
    DEFAULT_BOOSTER_POLICY,
    VaccineProduct,
    load_catalogue,
    second_dose_window,
)

CATALOGUE = load_catalogue()
FIRST = date(2021, 5, 1)


def test_packaged_catalogue_has_version_and_all_products() -> None:
    assert CATALOGUE.version
    assert CATALOGUE.effective_from <= date(2022, 12, 31)
    assert CATALOGUE.codes() == (
        "comirnaty",
        "comirnaty_paediatric",
        "spikevax",
        "vaxzevria",
        "jcovden",
        "nuvaxovid",
    )


@pytest.mark.parametrize(
    ("code", "doses", "interval", "ages", "platform", "booster"),
    [
        pytest.param("comirnaty", 2, (21, 42, 35), (12, None), "mRNA", True, id="comirnaty"),
        pytest.param(
            "comirnaty_paediatric", 2, (21, 42, 21), (5, 11), "mRNA", False, id="paediatric"
        ),
        pytest.param("spikevax", 2, (28, 42, 35), (12, None), "mRNA", True, id="spikevax"),
        pytest.param("vaxzevria", 2, (28, 84, 35), (18, None), "vector", False, id="vaxzevria"),
        pytest.param("jcovden", 1, (None, None, None), (18, None), "vector", False, id="jcovden"),
        pytest.param("nuvaxovid", 2, (21, 84, 21), (18, None), "protein", False, id="nuvaxovid"),
    ],
)
def test_product_rules_match_the_published_table(
    code: str,
    doses: int,
    interval: tuple[int | None, int | None, int | None],
    ages: tuple[int, int | None],
    platform: str,
    booster: bool,
) -> None:
    product = CATALOGUE.get(code)
    assert product.doses == doses
    assert (
        product.min_interval_days,
        product.max_interval_days,
        product.planned_interval_days,
    ) == interval
    assert (product.min_age, product.max_age) == ages
    assert product.platform == platform
    assert product.booster_eligible is booster
    assert product.name and product.manufacturer


def test_only_mrna_products_are_booster_eligible() -> None:
    assert all(p.platform == "mRNA" for p in CATALOGUE.products if p.booster_eligible)


def test_booster_policy_in_yaml_matches_the_code_default() -> None:
    # Pure functions default to DEFAULT_BOOSTER_POLICY; it must not drift from the data.
    assert CATALOGUE.boosters == DEFAULT_BOOSTER_POLICY


def test_unknown_product() -> None:
    with pytest.raises(UnknownProductError) as exc:
        CATALOGUE.get("sputnik")
    assert exc.value.code == "unknown_product"
    assert exc.value.details == {"product": "sputnik"}
    assert "sputnik" not in CATALOGUE
    assert "comirnaty" in CATALOGUE


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        pytest.param(4, (), id="4"),
        pytest.param(5, ("comirnaty_paediatric",), id="5"),
        pytest.param(11, ("comirnaty_paediatric",), id="11"),
        pytest.param(12, ("comirnaty", "spikevax"), id="12"),
        pytest.param(17, ("comirnaty", "spikevax"), id="17"),
        pytest.param(18, ("comirnaty", "spikevax", "vaxzevria", "jcovden", "nuvaxovid"), id="18"),
    ],
)
def test_products_for_age(age: int, expected: tuple[str, ...]) -> None:
    assert tuple(p.code for p in CATALOGUE.for_age(age)) == expected


@pytest.mark.parametrize(
    ("code", "window"),
    [
        pytest.param(
            "comirnaty", (date(2021, 5, 22), date(2021, 6, 12), date(2021, 6, 5)), id="comirnaty"
        ),
        pytest.param(
            "comirnaty_paediatric",
            (date(2021, 5, 22), date(2021, 6, 12), date(2021, 5, 22)),
            id="paediatric",
        ),
        pytest.param(
            "spikevax", (date(2021, 5, 29), date(2021, 6, 12), date(2021, 6, 5)), id="spikevax"
        ),
        pytest.param(
            "vaxzevria", (date(2021, 5, 29), date(2021, 7, 24), date(2021, 6, 5)), id="vaxzevria"
        ),
        pytest.param(
            "nuvaxovid", (date(2021, 5, 22), date(2021, 7, 24), date(2021, 5, 22)), id="nuvaxovid"
        ),
    ],
)
def test_second_dose_window(code: str, window: tuple[date, date, date]) -> None:
    assert second_dose_window(CATALOGUE.get(code), FIRST) == window


def test_second_dose_window_crosses_year_and_leap_day() -> None:
    earliest, latest, planned = second_dose_window(CATALOGUE.get("comirnaty"), date(2024, 2, 1))
    assert (earliest, latest, planned) == (date(2024, 2, 22), date(2024, 3, 14), date(2024, 3, 7))


def test_single_dose_product_has_no_window() -> None:
    with pytest.raises(ValueError):
        second_dose_window(CATALOGUE.get("jcovden"), FIRST)


_BASE = {
    "code": "x",
    "name": "X",
    "manufacturer": "Y",
    "platform": "mRNA",
    "doses": 2,
    "min_interval_days": 21,
    "max_interval_days": 42,
    "planned_interval_days": 35,
    "min_age": 12,
}


@pytest.mark.parametrize(
    "override",
    [
        pytest.param({"planned_interval_days": 50}, id="planned-after-max"),
        pytest.param({"planned_interval_days": 10}, id="planned-before-min"),
        pytest.param({"max_interval_days": None}, id="2-dose-missing-max"),
        pytest.param({"doses": 1}, id="1-dose-with-interval"),
        pytest.param({"max_age": 5}, id="max-below-min-age"),
        pytest.param({"platform": "dna"}, id="unknown-platform"),
        pytest.param({"code": "Bad Code"}, id="bad-code"),
        pytest.param({"colour": "red"}, id="unknown-field"),
    ],
)
def test_incoherent_product_is_rejected(override: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        VaccineProduct.model_validate({**_BASE, **override})


def test_products_are_frozen() -> None:
    with pytest.raises(ValidationError):
        CATALOGUE.get("comirnaty").min_age = 5  # type: ignore[misc]


def test_catalogue_from_another_file(tmp_path: Path) -> None:
    path = tmp_path / "v.yaml"
    path.write_text(
        "version: test\neffective_from: 2021-06-01\nproducts:\n"
        "  - {code: a, name: A, manufacturer: M, platform: protein, doses: 1, min_age: 18}\n"
        "  - {code: b, name: B, manufacturer: M, platform: vector, doses: 1, min_age: 18}\n",
        encoding="utf-8",
    )
    catalogue = load_catalogue(path)
    assert catalogue.codes() == ("a", "b")
    assert catalogue.effective_from == date(2021, 6, 1)
    assert catalogue.boosters == DEFAULT_BOOSTER_POLICY


def test_duplicate_codes_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "v.yaml"
    path.write_text(
        "version: test\neffective_from: 2021-06-01\nproducts:\n"
        "  - {code: a, name: A, manufacturer: M, platform: protein, doses: 1, min_age: 18}\n"
        "  - {code: a, name: B, manufacturer: M, platform: vector, doses: 1, min_age: 18}\n",
        encoding="utf-8",
    )
    with pytest.raises(ValidationError):
        load_catalogue(path)
