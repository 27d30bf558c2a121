"""Unit tests for emulator.seed.points: determinism, coverage and data validity."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from common.geo import GeoPoint, haversine_km, load_postcode_directory
from emulator.seed import KINDS, PRODUCTS, PointSeed, generate_points

VOIVODESHIPS = {
    "dolnośląskie", "kujawsko-pomorskie", "lubelskie", "lubuskie", "łódzkie", "małopolskie",
    "mazowieckie", "opolskie", "podkarpackie", "podlaskie", "pomorskie", "śląskie",
    "świętokrzyskie", "warmińsko-mazurskie", "wielkopolskie", "zachodniopomorskie",
}  # fmt: skip


@pytest.fixture(scope="module")
def points() -> list[PointSeed]:
    return generate_points(2000, seed=42)


def test_deterministic_per_seed(points: list[PointSeed]) -> None:
    assert generate_points(2000, seed=42) == points
    assert generate_points(2000, seed=43) != points


def test_prefix_stable(points: list[PointSeed]) -> None:
    assert generate_points(300, seed=42) == points[:300]


@pytest.mark.parametrize("count", [0, 1, 15, 16, 200, 1234])
def test_count_exact(count: int) -> None:
    assert len(generate_points(count, seed=7)) == count


def test_invalid_count() -> None:
    with pytest.raises(ValueError):
        generate_points(-1, seed=1)


def test_ids_unique_and_well_formed(points: list[PointSeed]) -> None:
    ids = [p.point_id for p in points]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"pt-\d{5}", i) for i in ids)
    assert ids[0] == "pt-00001"


@pytest.mark.parametrize("seed", [0, 1, 99])
def test_all_voivodeships_present(seed: int) -> None:
    assert {p.voivodeship for p in generate_points(200, seed=seed)} == VOIVODESHIPS


def test_coordinates_inside_poland(points: list[PointSeed]) -> None:
    for p in points:
        assert 49.0 <= p.lat <= 54.9, p
        assert 14.1 <= p.lon <= 24.2, p


def test_postcodes_resolve_to_the_points_town(points: list[PointSeed]) -> None:
    directory = load_postcode_directory()
    for p in points:
        info = directory.lookup(p.postcode, approximate=False)
        assert info is not None, p
        assert (info.place, info.voivodeship) == (p.place, p.voivodeship), p
        # Jitter is at most a few km, even in the largest city.
        assert haversine_km(info.point, GeoPoint(p.lat, p.lon)) < 8, p


def test_points_in_one_town_differ(points: list[PointSeed]) -> None:
    coords = [(p.lat, p.lon) for p in points]
    assert len(set(coords)) == len(coords)
    assert len({p.name for p in points}) == len(points)


def test_bigger_towns_get_more_points(points: list[PointSeed]) -> None:
    per_town = Counter(p.place for p in points)
    assert per_town.most_common(1)[0][0] == "Warszawa"
    assert per_town["Warszawa"] > per_town["Kraków"] > per_town.get("Nowy Targ", 0)
    assert len(per_town) > 300  # small towns are covered too


def test_kinds_products_and_fields(points: list[PointSeed]) -> None:
    kinds = Counter(p.kind for p in points)
    assert set(kinds) == set(KINDS)
    for p in points:
        assert p.products and set(p.products) <= set(PRODUCTS)
        assert len(set(p.products)) == len(p.products)
        if p.kind == "pharmacy":
            assert 1 <= len(p.products) <= 2
            assert p.name.startswith("Apteka ")
        if p.kind == "mass_center":
            assert len(p.products) >= 3
        assert re.fullmatch(r"(ul\.|al\.|pl\.) .+ \d{1,3}[abc]?", p.street), p.street
        assert re.fullmatch(r"\+48 \d{2} 555 \d{2} \d{2}", p.phone), p.phone
        assert p.place in p.name or p.kind == "hospital"
        assert isinstance(p.accessible, bool)
    assert any(p.accessible for p in points) and not all(p.accessible for p in points)


def test_hospital_names_use_polish_locative() -> None:
    names = {p.name for p in generate_points(3000, seed=5) if p.kind == "hospital"}
    assert any(n.endswith(" w Warszawie") for n in names)
    assert not any(n.endswith(" w Warszawa") for n in names)
    # "we" before w/f and a consonant, as Polish says it; "w" otherwise.
    assert any(" we Wrocławiu" in n for n in names)
    assert not any(" w Wrocławiu" in n or " w Włocławku" in n for n in names)
    assert any(" w Wałbrzychu" in n for n in names) or not any("Wałbrzych" in n for n in names)


def test_to_dict_is_json_friendly(points: list[PointSeed]) -> None:
    data = points[0].to_dict()
    assert set(data) == {
        "point_id", "name", "kind", "street", "postcode", "place", "county", "voivodeship",
        "lat", "lon", "products", "accessible", "phone",
    }  # fmt: skip
    assert isinstance(data["products"], list)
    assert data["point_id"] == points[0].point_id


def test_national_scale_generation_gives_unique_points() -> None:
    # Speed is a benchmark's business (bench/); here only what 7,500 points must be.
    result = generate_points(7500, seed=2021)
    assert len({p.point_id for p in result}) == 7500
    assert len({p.phone for p in result}) == 7500
