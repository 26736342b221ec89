"""bench/scale.py's pure helpers: the readings it sends, the months it reckons by, its SQL twin."""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from django.db import connection

from meters.models import MeterDay
from tests.meters.factories import MeterFactory, head_end_token

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import scale  # bench/ is not a package: on the path above


def test_slot_wh_is_repeatable_and_within_a_household_range():
    values = [scale.slot_wh(n, s) for n in range(200) for s in range(96)]
    assert values == [scale.slot_wh(n, s) for n in range(200) for s in range(96)]
    assert min(values) >= 40 and max(values) <= 1239
    assert len(set(values)) > 500


def test_month_ranges_split_where_the_local_month_begins():
    # Kuwait is UTC+3: 1 February starts at 31 January 21:00 UTC, slot 84 of that UTC day.
    assert scale.month_slot_ranges(date(2026, 1, 31), 192) == [(0, 84), (84, 192)]
    assert scale.month_slot_ranges(date(2026, 1, 10), 96) == [(0, 96)]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the SQL twin is PostgreSQL's")
@pytest.mark.django_db
def test_the_sql_formula_gives_the_same_wh_as_python():
    pairs = [(n, s) for n in (0, 1, 7, 999_999) for s in (0, 1, 95, 96, 700)]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT " + scale.WH_SQL.format(n="n", s="s") + " FROM unnest(%s::bigint[], "  # noqa: S608
            "%s::bigint[]) AS x(n, s)",
            [[n for n, _ in pairs], [s for _, s in pairs]],
        )
        assert [row[0] for row in cursor.fetchall()] == [scale.slot_wh(n, s) for n, s in pairs]


@pytest.mark.django_db
def test_the_pushed_body_is_stored_by_the_head_end_endpoint(make_api):
    meters = [MeterFactory(serial=f"S{n:08d}") for n in range(3)]
    api = make_api()
    api.client.credentials(HTTP_AUTHORIZATION=f"Bearer {head_end_token(meters[0].utility)}")
    start = datetime(2026, 11, 2, 1, 15, tzinfo=UTC)
    body = scale.blocks_body("b1", [m.serial for m in meters], start, [100, 200, 300])

    response = api.client.post(
        "/api/v1/headend/readings/", data=body, content_type="application/json"
    )

    assert response.status_code == 200, response.content
    assert json.loads(response.content)["stored"] == 3
    rows = MeterDay.objects.filter(meter__in=meters, day=date(2026, 11, 2)).order_by(
        "meter__serial"
    )
    assert [int.from_bytes(bytes(r.values)[20:24], "little") for r in rows] == [100, 200, 300]


def test_busy_seconds_counts_overlaps_once_and_gaps_not_at_all():
    assert scale.busy_seconds([(0, 2), (1, 3), (10, 11)]) == 3 + 1
    assert scale.busy_seconds([(5, 6), (0, 10)]) == 10
    assert scale.busy_seconds([]) == 0
