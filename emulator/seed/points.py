"""Deterministic demo vaccination points spread over Poland's real towns.

The generator is prefix-stable: ``generate_points(n, s)`` equals ``generate_points(m, s)[:n]`` for
``n <= m``, because every point draws from its own RNG seeded by ``(seed, index)``. That keeps
point ids pointing at the same point when a demo is re-seeded with a different size.

All names, streets and phone numbers are invented (phones use the "555" exchange block, the
conventional fictional range) and nothing refers to a real person or facility.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import random
from dataclasses import asdict, dataclass
from typing import Any

from common.geo import PlaceInfo, PostcodeDirectory, load_places, load_postcode_directory

__all__ = ["KINDS", "PRODUCTS", "PointSeed", "generate_points"]

MAX_POINTS = 99_999  # the id format "pt-NNNNN" holds five digits

PRODUCTS: tuple[str, ...] = (
    "comirnaty",
    "spikevax",
    "vaxzevria",
    "jcovden",
    "nuvaxovid",
    "comirnaty_paediatric",
)
# Relative availability, roughly mirroring 2021-22 deliveries (Comirnaty dominated).
_PRODUCT_WEIGHTS: tuple[float, ...] = (10.0, 4.0, 2.0, 1.5, 1.0, 2.0)

KINDS: tuple[str, ...] = ("clinic", "pharmacy", "hospital", "mass_center")

# Area code of each voivodeship capital: fake numbers then look plausible for the region.
_AREA_CODES: dict[str, str] = {
    "dolnośląskie": "71",
    "kujawsko-pomorskie": "52",
    "lubelskie": "81",
    "lubuskie": "68",
    "łódzkie": "42",
    "małopolskie": "12",
    "mazowieckie": "22",
    "opolskie": "77",
    "podkarpackie": "17",
    "podlaskie": "85",
    "pomorskie": "58",
    "śląskie": "32",
    "świętokrzyskie": "41",
    "warmińsko-mazurskie": "89",
    "wielkopolskie": "61",
    "zachodniopomorskie": "91",
}

_STREETS: tuple[str, ...] = (
    "ul. Długa", "ul. Krótka", "ul. Kościuszki", "ul. Mickiewicza", "ul. Słowackiego",
    "ul. 3 Maja", "ul. Polna", "ul. Lipowa", "ul. Ogrodowa", "ul. Kolejowa", "ul. Szkolna",
    "al. Niepodległości", "ul. Sienkiewicza", "ul. Jana Pawła II", "pl. Wolności", "ul. Leśna",
    "ul. Kwiatowa", "ul. Słoneczna", "ul. Zielona", "ul. Piłsudskiego", "ul. Wojska Polskiego",
    "ul. Kopernika", "ul. Chopina", "ul. Reymonta", "ul. Parkowa", "ul. Spacerowa",
    "ul. Konopnickiej", "ul. Żeromskiego", "ul. Prusa", "ul. Kasprowicza", "ul. Młyńska",
    "ul. Rynkowa", "ul. Dworcowa", "ul. Kasztanowa", "ul. Akacjowa", "ul. Klonowa",
    "ul. Wiejska", "ul. Łąkowa", "ul. Batorego", "ul. Moniuszki", "ul. Kilińskiego",
    "al. Solidarności", "ul. Armii Krajowej", "ul. Grunwaldzka", "ul. Traugutta",
)  # fmt: skip

_CLINIC_BRANDS: tuple[str, ...] = (
    "Zdrowie", "Medicus", "Vita", "Rodzina", "Salus", "Panaceum", "Pro-Med", "Esculap",
    "Centrum", "Słoneczna", "Pod Lipami", "Medica", "Hipokrates", "Zdrowa Rodzina",
)  # fmt: skip
_CLINIC_TEMPLATES: tuple[str, ...] = (
    "Punkt Szczepień POZ {brand} \u2013 {place}",
    "Przychodnia {brand} \u2013 {place}",
    "NZOZ {brand} \u2013 {place}",
    "Centrum Medyczne {brand} \u2013 {place}",
    "Przychodnia Lekarzy Rodzinnych {brand} \u2013 {place}",
)
_SMALL_CLINIC_TEMPLATES: tuple[str, ...] = (
    "Ośrodek Zdrowia \u2013 {place}",
    "Gminny Ośrodek Zdrowia \u2013 {place}",
    "Punkt Szczepień POZ {brand} \u2013 {place}",
)
_PHARMACY_NAMES: tuple[str, ...] = (
    "Pod Orłem", "Pod Lwem", "Pod Lipami", "Centrum", "Rodzinna", "Słoneczna", "Zdrowie",
    "Pod Złotym Moździerzem", "Na Rynku", "Przy Ratuszu", "Miejska", "Pod Aniołem", "Nova",
)  # fmt: skip
_HOSPITAL_TEMPLATES: tuple[str, ...] = (
    "Szpital Powiatowy {loc}",
    "Szpital Miejski {loc}",
    "Specjalistyczny Szpital {loc}",
)
_MASS_VENUES: tuple[str, ...] = (
    "Hala Sportowa", "Hala Widowiskowo-Sportowa", "Centrum Kongresowe", "Hala Targowa",
    "Arena", "Dom Kultury", "Centrum Wystawiennicze",
)  # fmt: skip

# Locatives for "Szpital ... w Nowym Targu". Polish declension is irregular, so beyond a few
# reliable suffix rules we only use known forms and otherwise fall back to "Szpital ... - Place".
_LOCATIVES: dict[str, str] = {
    "Warszawa": "Warszawie", "Łódź": "Łodzi", "Wrocław": "Wrocławiu", "Poznań": "Poznaniu",
    "Bydgoszcz": "Bydgoszczy", "Białystok": "Białymstoku", "Gdynia": "Gdyni",
    "Częstochowa": "Częstochowie", "Sosnowiec": "Sosnowcu", "Radom": "Radomiu",
    "Toruń": "Toruniu", "Kielce": "Kielcach", "Olsztyn": "Olsztynie", "Bielsko-Biała":
    "Bielsku-Białej", "Bytom": "Bytomiu", "Zielona Góra": "Zielonej Górze", "Opole": "Opolu",
    "Elbląg": "Elblągu", "Płock": "Płocku", "Wałbrzych": "Wałbrzychu", "Włocławek":
    "Włocławku", "Zabrze": "Zabrzu", "Kalisz": "Kaliszu", "Legnica": "Legnicy", "Grudziądz":
    "Grudziądzu", "Jaworzno": "Jaworznie", "Jelenia Góra": "Jeleniej Górze", "Nowy Sącz":
    "Nowym Sączu", "Nowy Targ": "Nowym Targu", "Konin": "Koninie", "Piła": "Pile",
    "Inowrocław": "Inowrocławiu", "Lubin": "Lubinie", "Ostrołęka": "Ostrołęce",
    "Stargard": "Stargardzie", "Mielec": "Mielcu", "Gniezno": "Gnieźnie", "Zamość": "Zamościu",
    "Przemyśl": "Przemyślu", "Łomża": "Łomży", "Leszno": "Lesznie", "Siedlce": "Siedlcach",
    "Suwałki": "Suwałkach", "Zakopane": "Zakopanem", "Nowy Dwór Mazowiecki":
    "Nowym Dworze Mazowieckim", "Nowa Sól": "Nowej Soli", "Biała Podlaska": "Białej Podlaskiej",
}  # fmt: skip


def _in(locative: str) -> str:
    """The preposition "w" with a locative: "we" before w/f and a consonant ("we Wrocławiu",
    "we Włocławku"), as Polish says it; "w" otherwise ("w Wałbrzychu", "w Krakowie")."""
    vowels = "aąeęioóuy"
    if len(locative) > 1 and locative[0].lower() in "wf" and locative[1].lower() not in vowels:
        return f"we {locative}"
    return f"w {locative}"


def _locative(place: str) -> str | None:
    known = _LOCATIVES.get(place)
    if known is not None:
        return known
    if " " in place or "-" in place:
        return None  # multi-word names decline each word differently
    for suffix, replacement in (("ów", "owie"), ("ice", "icach"), ("yce", "ycach"), ("in", "inie"),
                                ("sk", "sku"), ("ck", "cku")):  # fmt: skip
        if place.endswith(suffix):
            return place[: -len(suffix)] + replacement
    return None


@dataclass(frozen=True, slots=True)
class PointSeed:
    point_id: str
    name: str
    kind: str
    street: str
    postcode: str
    place: str
    county: str
    voivodeship: str
    lat: float
    lon: float
    products: tuple[str, ...]
    accessible: bool
    phone: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["products"] = list(self.products)  # JSON/Firestore friendly
        return data


# Share of wheelchair-accessible sites per kind: small pharmacies often have a step at the door.
_ACCESSIBLE_SHARE: dict[str, float] = {
    "pharmacy": 0.55,
    "clinic": 0.75,
    "hospital": 0.97,
    "mass_center": 0.99,
}


def _town_weight(population: int) -> float:
    # Sub-linear: big cities get more points, but not so many that the map is all Warsaw
    # (real 2021 networks had points in nearly every gmina).
    return float(population) ** 0.8


@dataclass(frozen=True, slots=True)
class _Towns:
    places: tuple[PlaceInfo, ...]
    cum_weights: tuple[float, ...]
    capitals: tuple[PlaceInfo, ...]  # largest town per voivodeship, fixed order


@functools.cache
def _towns() -> _Towns:
    places = load_places()
    cum = tuple(itertools.accumulate(_town_weight(p.population) for p in places))
    largest: dict[str, PlaceInfo] = {}
    for p in places:  # sorted by population, so the first seen is the largest
        largest.setdefault(p.voivodeship, p)
    capitals = tuple(largest[v] for v in sorted(largest))
    return _Towns(places, cum, capitals)


def _choose_kind(rng: random.Random, population: int) -> str:
    # Hospitals and mass centres only exist in towns big enough to plausibly host them.
    if population >= 100_000:
        weights = (45, 25, 15, 15)
    elif population >= 20_000:
        weights = (50, 30, 14, 6)
    elif population >= 8_000:
        weights = (55, 33, 12, 0)
    else:
        weights = (65, 35, 0, 0)
    return rng.choices(KINDS, weights=weights)[0]


def _choose_products(rng: random.Random, kind: str) -> tuple[str, ...]:
    low, high = {"pharmacy": (1, 2), "clinic": (1, 3), "hospital": (2, 4), "mass_center": (3, 5)}[
        kind
    ]
    wanted = rng.randint(low, high)
    chosen: list[str] = []
    while len(chosen) < wanted:
        product = rng.choices(PRODUCTS, weights=_PRODUCT_WEIGHTS)[0]
        if product not in chosen:
            chosen.append(product)
    return tuple(p for p in PRODUCTS if p in chosen)  # canonical order for stable output


def _name(rng: random.Random, kind: str, town: PlaceInfo) -> str:
    place = town.place
    if kind == "pharmacy":
        return f"Apteka {rng.choice(_PHARMACY_NAMES)} \u2013 {place}"
    if kind == "hospital":
        template = rng.choice(_HOSPITAL_TEMPLATES)
        if not town.county.startswith("Powiat"):
            # City counties (Kraków, Gdańsk, ...) have municipal, not county, hospitals.
            template = template.replace("Powiatowy", "Miejski")
        loc = _locative(place)
        return template.format(loc=_in(loc)) if loc else template.format(loc=f"\u2013 {place}")
    if kind == "mass_center":
        return f"Punkt Szczepień Powszechnych \u2013 {rng.choice(_MASS_VENUES)}, {place}"
    templates = _CLINIC_TEMPLATES if town.population >= 8_000 else _SMALL_CLINIC_TEMPLATES
    return rng.choice(templates).format(brand=rng.choice(_CLINIC_BRANDS), place=place)


def _jitter(rng: random.Random, town: PlaceInfo) -> tuple[float, float]:
    # Spread points over roughly the built-up area: ~300 m for villages, a few km for cities.
    radius_km = min(6.0, max(0.3, 0.12 * math.sqrt(town.population / 1000)))
    distance = radius_km * math.sqrt(rng.random())  # uniform over the disc
    bearing = rng.uniform(0, 2 * math.pi)
    dlat = distance * math.cos(bearing) / 111.32
    dlon = distance * math.sin(bearing) / (111.32 * math.cos(math.radians(town.lat)))
    return round(town.lat + dlat, 6), round(town.lon + dlon, 6)


def _postcode(rng: random.Random, town: PlaceInfo, directory: PostcodeDirectory) -> str:
    # Cities have many postcodes; any of them resolves to the same town in the directory.
    codes = directory.postcodes_for_place(town.place, town.voivodeship, town.county)
    return rng.choice(codes) if codes else town.postcode


def _phone(voivodeship: str, index: int) -> str:
    # The index makes numbers unique per area code for up to 9,999 points; "555" marks them as
    # fictional.
    area = _AREA_CODES.get(voivodeship, "22")
    return f"+48 {area} 555 {index // 100 % 100:02d} {index % 100:02d}"


def _street(rng: random.Random) -> str:
    number = str(rng.randint(1, 160))
    if rng.random() < 0.15:
        number += rng.choice("abc")
    return f"{rng.choice(_STREETS)} {number}"


def generate_points(count: int, seed: int) -> list[PointSeed]:
    """``count`` deterministic demo points; every voivodeship is covered once ``count >= 16``."""
    if count < 0 or count > MAX_POINTS:
        raise ValueError(f"count must be between 0 and {MAX_POINTS}")
    towns = _towns()
    directory = load_postcode_directory()
    total_weight = towns.cum_weights[-1]
    points: list[PointSeed] = []
    used_names: set[str] = set()
    for index in range(count):
        # A string seed is hashed with SHA-512 by random.Random, so it is stable across runs
        # and Python builds (unlike hash()).
        rng = random.Random(f"pl-points:{seed}:{index}")
        if index < len(towns.capitals):
            town = towns.capitals[index]
        else:
            pick = bisect.bisect_right(towns.cum_weights, rng.random() * total_weight)
            town = towns.places[min(pick, len(towns.places) - 1)]
        kind = _choose_kind(rng, town.population)
        name = _name(rng, kind, town)
        if name in used_names:
            # Same chain/venue twice in a town: number the branches like real networks do.
            branch = 2
            while f"{name} (filia nr {branch})" in used_names:
                branch += 1
            name = f"{name} (filia nr {branch})"
        used_names.add(name)
        lat, lon = _jitter(rng, town)
        points.append(
            PointSeed(
                point_id=f"pt-{index + 1:05d}",
                name=name,
                kind=kind,
                street=_street(rng),
                postcode=_postcode(rng, town, directory),
                place=town.place,
                county=town.county,
                voivodeship=town.voivodeship,
                lat=lat,
                lon=lon,
                products=_choose_products(rng, kind),
                accessible=rng.random() < _ACCESSIBLE_SHARE[kind],
                phone=_phone(town.voivodeship, index + 1),
            )
        )
    return points
