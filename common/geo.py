"""Geographic helpers for Polish addresses: distances, postcodes, geohashes, bounding boxes.

Everything here is pure except :func:`load_postcode_directory` / :func:`load_places`, which read
the packaged CSVs (built by ``scripts/build_geodata.py``) once per process and cache the result,
so request handlers can call them freely.

Coordinates in the packaged data are town-level (postcodes of one city share its centre), which
is adequate for "points near me" searches and distance ordering, not for street navigation.
"""

from __future__ import annotations

import csv
import functools
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "EARTH_RADIUS_KM",
    "GeoPoint",
    "PlaceInfo",
    "PostcodeDirectory",
    "PostcodeInfo",
    "bounding_box",
    "geohash_encode",
    "haversine_km",
    "load_places",
    "load_postcode_directory",
    "normalize_postcode",
]

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_POSTCODES_CSV = DATA_DIR / "pl_postcodes.csv"
DEFAULT_PLACES_CSV = DATA_DIR / "pl_places.csv"

# IUGG mean Earth radius; the choice only matters at the 0.1 % level.
EARTH_RADIUS_KM = 6371.0088

_GEOHASH_ALPHABET = "0123456789bcdefghjkmnpqrstuvwxyz"

# ASCII digits only: str.isdigit()/\d would also accept e.g. Arabic-Indic digits. The separator
# may be a hyphen or any Unicode dash, since users paste postcodes from word processors.
_POSTCODE_RE = re.compile(r"([0-9]{2})[-\u2010-\u2015\u2212]?([0-9]{3})")


@dataclass(frozen=True, slots=True)
class GeoPoint:
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class PostcodeInfo:
    postcode: str
    lat: float
    lon: float
    place: str
    county: str
    voivodeship: str
    # True when the postcode is not in the directory and the position/place are those of its
    # neighbouring postcodes (same "NN-N" or "NN" prefix): right area, not the exact town.
    approximate: bool = False

    @property
    def point(self) -> GeoPoint:
        return GeoPoint(self.lat, self.lon)


@dataclass(frozen=True, slots=True)
class PlaceInfo:
    place: str
    county: str
    voivodeship: str
    postcode: str
    lat: float
    lon: float
    population: int

    @property
    def point(self) -> GeoPoint:
        return GeoPoint(self.lat, self.lon)


def haversine_km(a: GeoPoint, b: GeoPoint) -> float:
    """Great-circle distance in kilometres."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlat = lat2 - lat1
    dlon = math.radians(b.lon - a.lon)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    # min() guards asin against h creeping past 1.0 through rounding for antipodal points.
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def normalize_postcode(raw: str) -> str | None:
    """Return the canonical ``NN-NNN`` form of a Polish postcode, or None if it is not one.

    Accepts "00-950", "00950", " 00 950 " and dash variants; whitespace anywhere is ignored.
    """
    if not isinstance(raw, str):  # defensive: callers pass decoded JSON
        return None
    compact = "".join(raw.split())
    match = _POSTCODE_RE.fullmatch(compact)
    if match is None:
        return None
    return f"{match.group(1)}-{match.group(2)}"


def geohash_encode(lat: float, lon: float, precision: int = 9) -> str:
    """Standard base32 geohash (as in geohash.org) of ``precision`` characters."""
    if not -90.0 <= lat <= 90.0 or not -180.0 <= lon <= 180.0:
        raise ValueError(f"coordinates out of range: {lat}, {lon}")
    if precision < 1:
        raise ValueError("precision must be >= 1")
    lat_lo, lat_hi = -90.0, 90.0
    lon_lo, lon_hi = -180.0, 180.0
    chars: list[str] = []
    bits = 0
    bit_count = 0
    even = True  # geohash interleaves bits starting with longitude
    while len(chars) < precision:
        if even:
            mid = (lon_lo + lon_hi) / 2
            if lon >= mid:
                bits = (bits << 1) | 1
                lon_lo = mid
            else:
                bits <<= 1
                lon_hi = mid
        else:
            mid = (lat_lo + lat_hi) / 2
            if lat >= mid:
                bits = (bits << 1) | 1
                lat_lo = mid
            else:
                bits <<= 1
                lat_hi = mid
        even = not even
        bit_count += 1
        if bit_count == 5:
            chars.append(_GEOHASH_ALPHABET[bits])
            bits = 0
            bit_count = 0
    return "".join(chars)


def bounding_box(center: GeoPoint, radius_km: float) -> tuple[float, float, float, float]:
    """(min_lat, min_lon, max_lat, max_lon) of a box containing the circle around ``center``.

    Uses the exact spherical longitude extent (the circle is widest poleward of its centre, so
    scaling by cos(center.lat) would undercut it). When the circle reaches a pole every longitude
    is inside. Boxes crossing the antimeridian are clamped to [-180, 180] rather than split,
    which is irrelevant for Poland.
    """
    if radius_km < 0:
        raise ValueError("radius_km must be >= 0")
    angular = radius_km / EARTH_RADIUS_KM
    dlat = math.degrees(angular)
    min_lat = center.lat - dlat
    max_lat = center.lat + dlat
    if min_lat <= -90.0 or max_lat >= 90.0:
        return max(min_lat, -90.0), -180.0, min(max_lat, 90.0), 180.0
    ratio = math.sin(angular) / math.cos(math.radians(center.lat))
    if ratio >= 1.0:
        return min_lat, -180.0, max_lat, 180.0
    dlon = math.degrees(math.asin(ratio))
    return min_lat, max(center.lon - dlon, -180.0), max_lat, min(center.lon + dlon, 180.0)


class PostcodeDirectory:
    """In-memory postcode -> :class:`PostcodeInfo` index (O(1) lookups).

    Postcodes missing from the data (the source lists ~20k, not every code in use) resolve
    approximately to the centroid of postcodes sharing their "NN-N", then "NN", prefix.
    """

    def __init__(self, entries: Iterable[PostcodeInfo]) -> None:
        self._by_code: dict[str, PostcodeInfo] = {e.postcode: e for e in entries}
        # Built on first use: most processes only ever do exact lookups.
        self._fallback: dict[str, tuple[float, float, str, str, str]] | None = None
        self._by_place: dict[tuple[str, str], tuple[PostcodeInfo, ...]] | None = None

    def __len__(self) -> int:
        return len(self._by_code)

    def __contains__(self, postcode: object) -> bool:
        return isinstance(postcode, str) and normalize_postcode(postcode) in self._by_code

    def postcodes(self) -> list[str]:
        return sorted(self._by_code)

    def lookup(self, postcode: str, *, approximate: bool = True) -> PostcodeInfo | None:
        """Info for ``postcode`` (any accepted spelling), or None if malformed/unknown.

        With ``approximate=False`` only postcodes present in the data are returned.
        """
        code = normalize_postcode(postcode)
        if code is None:
            return None
        exact = self._by_code.get(code)
        if exact is not None or not approximate:
            return exact
        fallback = self._fallback_table()
        for key in (code[:4], code[:2]):
            hit = fallback.get(key)
            if hit is not None:
                lat, lon, place, county, voivodeship = hit
                return PostcodeInfo(code, lat, lon, place, county, voivodeship, approximate=True)
        return None

    def postcodes_for_place(
        self, place: str, voivodeship: str, county: str | None = None
    ) -> tuple[str, ...]:
        """Sorted postcodes whose representative place is ``place`` in ``voivodeship``.

        Pass ``county`` to tell apart same-named places within one voivodeship.
        """
        if self._by_place is None:
            grouped: dict[tuple[str, str], list[PostcodeInfo]] = defaultdict(list)
            for info in self._by_code.values():
                grouped[(info.place, info.voivodeship)].append(info)
            self._by_place = {
                k: tuple(sorted(v, key=lambda i: i.postcode)) for k, v in grouped.items()
            }
        infos = self._by_place.get((place, voivodeship), ())
        return tuple(i.postcode for i in infos if county is None or i.county == county)

    def _fallback_table(self) -> dict[str, tuple[float, float, str, str, str]]:
        if self._fallback is None:
            members: dict[str, list[PostcodeInfo]] = defaultdict(list)
            for info in self._by_code.values():
                members[info.postcode[:4]].append(info)
                members[info.postcode[:2]].append(info)
            table: dict[str, tuple[float, float, str, str, str]] = {}
            for key, infos in members.items():
                lat = round(sum(i.lat for i in infos) / len(infos), 4)
                lon = round(sum(i.lon for i in infos) / len(infos), 4)
                # Most common place of the group; ties broken by name so results are stable.
                counts = Counter((i.place, i.county, i.voivodeship) for i in infos)
                (place, county, voiv), _ = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                table[key] = (lat, lon, place, county, voiv)
            self._fallback = table
        return self._fallback


def load_postcode_directory(path: Path | None = None) -> PostcodeDirectory:
    """The postcode directory from ``path`` (default: the packaged CSV), loaded once."""
    return _load_directory(Path(path) if path is not None else DEFAULT_POSTCODES_CSV)


def load_places(path: Path | None = None) -> tuple[PlaceInfo, ...]:
    """Polish towns (population >= 500), most populous first, loaded once."""
    return _load_places(Path(path) if path is not None else DEFAULT_PLACES_CSV)


@functools.cache
def _load_directory(path: Path) -> PostcodeDirectory:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        if header != ["postcode", "lat", "lon", "place", "county", "voivodeship"]:
            raise ValueError(f"{path}: unexpected header {header}")
        return PostcodeDirectory(
            PostcodeInfo(pc, float(lat), float(lon), place, county, voiv)
            for pc, lat, lon, place, county, voiv in reader
        )


@functools.cache
def _load_places(path: Path) -> tuple[PlaceInfo, ...]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        expected = ["place", "county", "voivodeship", "postcode", "lat", "lon", "population"]
        if header != expected:
            raise ValueError(f"{path}: unexpected header {header}")
        return tuple(
            PlaceInfo(place, county, voiv, pc, float(lat), float(lon), int(pop))
            for place, county, voiv, pc, lat, lon, pop in reader
        )
