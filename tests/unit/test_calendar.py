"""The calendar document's readers agree: the full model, the raw fast path, and the index
search builds once per document version (FreeSeatIndex)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from common.domain.calendar import FreeSeatIndex, PointCalendar, SlotRef, day_key
from common.services.directory import calendar_document

FIRST_DAY = date(2026, 11, 26)

slot_strategy = st.tuples(
    st.integers(0, 9),  # day offset
    st.sampled_from([time(7, 45), time(8, 0), time(9, 15), time(12, 30), time(17, 0)]),
    st.sampled_from(["comirnaty", "jcovden", "comirnaty_paediatric"]),
    st.integers(0, 4),  # capacity
    st.integers(0, 4),  # seats taken
)


@settings(max_examples=200, deadline=None)
@given(
    slots=st.lists(slot_strategy, max_size=30),
    now_offset_minutes=st.integers(0, 3 * 24 * 60),
    range_start=st.integers(0, 5),
    range_days=st.integers(0, 9),
    product=st.sampled_from([None, "comirnaty", "jcovden", "comirnaty_paediatric"]),
)
def test_fast_path_matches_the_model(slots, now_offset_minutes, range_start, range_days, product):
    unique = {(d, t, p): (c, min(taken, c)) for d, t, p, c, taken in slots}
    document = calendar_document(
        "pt-00001",
        [(FIRST_DAY + timedelta(days=d), t, p, c) for (d, t, p), (c, _) in unique.items()],
    )
    for (d, t, p), (_, taken) in unique.items():
        ref = SlotRef("pt-00001", FIRST_DAY + timedelta(days=d), t, p)
        document["days"][ref.day_key][ref.slot_key]["free"] -= taken
    now = datetime(2026, 11, 26, 6, 0, tzinfo=UTC) + timedelta(minutes=now_offset_minutes)
    date_from = FIRST_DAY + timedelta(days=range_start)
    date_to = date_from + timedelta(days=range_days)

    expected = PointCalendar.from_document("pt-00001", document).free_slots(
        not_before=now, date_from=date_from, date_to=date_to, product=product
    )
    total, earliest = PointCalendar.free_in_document(
        "pt-00001",
        document,
        not_before=now,
        date_from=date_from,
        date_to=date_to,
        product=product,
        earliest=3,
    )
    assert total == sum(s.free for s in expected)
    assert earliest == expected[:3]
    indexed = FreeSeatIndex.build("pt-00001", document).free_in(
        not_before=now, date_from=date_from, date_to=date_to, product=product, earliest=3
    )
    assert indexed == (total, earliest)


def test_day_keys_sort_as_dates():
    days = [date(2026, 12, 31), date(2027, 1, 1), date(2026, 2, 3)]
    assert sorted(days, key=day_key) == sorted(days)
