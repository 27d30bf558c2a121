"""Unit tests for common.geo: distances, postcodes, geohash, bounding boxes, packaged data."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from common.geo import (
    GeoPoint,
    PostcodeInfo,
    bounding_box,
    geohash_encode,
    haversine_km,
    load_places,
    load_postcode_directory,
    normalize_postcode,
)

WARSZAWA = GeoPoint(52.2297, 21.0122)
KRAKOW = GeoPoint(50.0647, 19.9450)
GDANSK = GeoPoint(54.3520, 18.6466)
NOWY_TARG = GeoPoint(49.4775, 20.0323)


def test_haversine_warszawa_krakow() -> None:
    assert haversine_km(WARSZAWA, KRAKOW) == pytest.approx(252, abs=5)


def test_haversine_properties() -> None:
    assert haversine_km(WARSZAWA, WARSZAWA) == 0.0
    assert haversine_km(WARSZAWA, GDANSK) == pytest.approx(haversine_km(GDANSK, WARSZAWA))
    # One degree of latitude is ~111.2 km on the mean-radius sphere.
    assert haversine_km(GeoPoint(0, 0), GeoPoint(1, 0)) == pytest.approx(111.19, abs=0.05)
    # Antipodes: half the circumference, no math domain error.
    assert haversine_km(GeoPoint(0, 0), GeoPoint(0, 180)) == pytest.approx(math.pi * 6371.0088)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("00-950", "00-950"),
        ("00950", "00-950"),
        (" 00 950 ", "00-950"),
        ("00 - 950", "00-950"),
        ("31\u2013001", "31-001"),  # en dash pasted from a document
        ("\t80-001\n", "80-001"),
        ("34400", "34-400"),
        ("", None),
        ("   ", None),
        ("0-950", None),
        ("000-950", None),
        ("00-95", None),
        ("00--950", None),
        ("ab-cde", None),
        ("00-95O", None),  # letter O, not zero
        ("\u0660\u0660-\u0669\u0665\u0660", None),  # Arabic-Indic digits are not Polish postcodes
        ("00_950", None),
        ("00-9500", None),
    ],
)
def test_normalize_postcode(raw: str, expected: str | None) -> None:
    assert normalize_postcode(raw) == expected


@pytest.mark.parametrize(
    ("postcode", "place", "voivodeship", "near"),
    [
        ("00-001", "Warszawa", "mazowieckie", WARSZAWA),
        ("31-001", "Kraków", "małopolskie", KRAKOW),
        ("80-001", "Gdańsk", "pomorskie", GDANSK),
        ("34-400", "Nowy Targ", "małopolskie", NOWY_TARG),
        ("00950", "Warszawa", "mazowieckie", WARSZAWA),
    ],
)
def test_lookup_real_postcodes(postcode: str, place: str, voivodeship: str, near: GeoPoint) -> None:
    info = load_postcode_directory().lookup(postcode)
    assert info is not None
    assert info.postcode == normalize_postcode(postcode)
    assert info.place == place
    assert info.voivodeship == voivodeship
    assert haversine_km(info.point, near) < 10


def test_lookup_exact_versus_approximate() -> None:
    directory = load_postcode_directory()
    exact = directory.lookup("34-400", approximate=False)
    assert exact is not None and not exact.approximate
    assert exact.county == "Powiat nowotarski"
    # "00-001" is missing from the source data; it resolves only through the prefix fallback.
    assert directory.lookup("00-001", approximate=False) is None
    approx = directory.lookup("00-001")
    assert approx is not None and approx.approximate
    assert directory.lookup("not a postcode") is None
    assert "34400" in directory and "00-001" not in directory


def test_directory_is_cached_and_complete() -> None:
    directory = load_postcode_directory()
    assert load_postcode_directory() is directory
    assert len(directory) > 19_000
    codes = directory.postcodes()
    assert all(normalize_postcode(c) == c for c in codes[:: len(codes) // 500])
    voivodeships = {directory.lookup(c).voivodeship for c in codes[::50]}  # type: ignore[union-attr]
    assert len(voivodeships) == 16


def test_directory_from_custom_file(tmp_path: Path) -> None:
    path = tmp_path / "pc.csv"
    path.write_text(
        "postcode,lat,lon,place,county,voivodeship\n"
        "12-345,50.0000,20.0000,Testowo,Powiat testowy,małopolskie\n"
        "12-355,50.2000,20.2000,Próbna,Powiat testowy,małopolskie\n",
        encoding="utf-8",
    )
    directory = load_postcode_directory(path)
    assert len(directory) == 2
    assert directory.lookup("12345") == PostcodeInfo(
        "12-345", 50.0, 20.0, "Testowo", "Powiat testowy", "małopolskie"
    )
    approx = directory.lookup("12-399")
    assert approx is not None and approx.approximate
    assert (approx.lat, approx.lon) == (50.1, 20.1)
    assert directory.lookup("99-999") is None
    assert directory.postcodes_for_place("Testowo", "małopolskie") == ("12-345",)


def test_directory_rejects_unexpected_header(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("code,lat,lon\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unexpected header"):
        load_postcode_directory(path)


def test_places_sorted_and_resolvable() -> None:
    places = load_places()
    assert len(places) > 2000
    assert places[0].place == "Warszawa"
    populations = [p.population for p in places]
    assert populations == sorted(populations, reverse=True)
    assert len({p.voivodeship for p in places}) == 16
    directory = load_postcode_directory()
    for place in places[::25]:
        info = directory.lookup(place.postcode, approximate=False)
        assert info is not None and info.place == place.place


@pytest.mark.parametrize(
    ("lat", "lon", "precision", "expected"),
    [
        (57.64911, 10.40744, 11, "u4pruydqqvj"),  # the canonical Wikipedia example
        (42.6, -5.6, 5, "ezs42"),
        (0.0, 0.0, 1, "s"),
        (-90.0, -180.0, 4, "0000"),
        (90.0, 180.0, 4, "zzzz"),
        (52.2297, 21.0122, 6, "u3qcnh"),
    ],
)
def test_geohash_known_vectors(lat: float, lon: float, precision: int, expected: str) -> None:
    assert geohash_encode(lat, lon, precision) == expected


def test_geohash_prefix_property_and_validation() -> None:
    long_hash = geohash_encode(50.0647, 19.9450, 12)
    assert geohash_encode(50.0647, 19.9450, 5) == long_hash[:5]
    with pytest.raises(ValueError):
        geohash_encode(91.0, 0.0, 5)
    with pytest.raises(ValueError):
        geohash_encode(0.0, 0.0, 0)


@pytest.mark.parametrize("center", [WARSZAWA, GDANSK, GeoPoint(0, 0), GeoPoint(-60, 100)])
@pytest.mark.parametrize("radius_km", [0.5, 10, 50, 300])
def test_bounding_box_contains_circle(center: GeoPoint, radius_km: float) -> None:
    min_lat, min_lon, max_lat, max_lon = bounding_box(center, radius_km)
    assert min_lat < center.lat < max_lat and min_lon < center.lon < max_lon
    for step in range(360):
        bearing = math.radians(step)
        # Destination point at exactly radius_km along the bearing (spherical formula).
        d = radius_km / 6371.0088
        lat1, lon1 = math.radians(center.lat), math.radians(center.lon)
        lat2 = math.asin(
            math.sin(lat1) * math.cos(d) + math.cos(lat1) * math.sin(d) * math.cos(bearing)
        )
        lon2 = lon1 + math.atan2(
            math.sin(bearing) * math.sin(d) * math.cos(lat1),
            math.cos(d) - math.sin(lat1) * math.sin(lat2),
        )
        lat_deg, lon_deg = math.degrees(lat2), math.degrees(lon2)
        eps = 1e-9
        assert min_lat - eps <= lat_deg <= max_lat + eps
        assert min_lon - eps <= lon_deg <= max_lon + eps


def test_bounding_box_is_tight_and_handles_poles() -> None:
    min_lat, min_lon, max_lat, max_lon = bounding_box(WARSZAWA, 10)
    assert max_lat - min_lat == pytest.approx(2 * 10 / 111.195, rel=1e-3)
    assert max_lon - min_lon < 0.35  # ~0.29 degrees at 52 N, not a degenerate whole-world box
    assert bounding_box(GeoPoint(89.9, 0), 50) == pytest.approx(
        (89.9 - 50 / 111.195, -180, 90, 180), rel=1e-3
    )
    with pytest.raises(ValueError):
        bounding_box(WARSZAWA, -1)
