"""Head-end batches of any size the body limit allows, and batches crossing each other.

A batch used to take one PostgreSQL advisory lock per meter in one transaction, and past about
12,000 meters the shared lock table ran out ("out of shared memory … max_locks_per_transaction").
Rows are now locked in the rows themselves, in one global (meter, day) order."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from meters import services
from meters.models import IngestBatch, Meter, MeterDay
from meters.selectors import meter_series
from tests.accounts.factories import UtilityFactory
from tests.meters.factories import head_end_token

URL = "/api/v1/headend/readings/"
START = datetime(2026, 11, 1, 23, 45, tzinfo=UTC)  # the last interval of a UTC day


def _meters(utility, count: int, prefix: str) -> list[Meter]:
    Meter.objects.bulk_create(
        [
            Meter(
                utility=utility,
                serial=f"{prefix}{n:06d}",
                rated_capacity_kw=Decimal("15"),
                installed_at=datetime(2020, 1, 1, tzinfo=UTC),
            )
            for n in range(count)
        ],
        batch_size=5000,
    )
    return list(Meter.objects.filter(utility=utility, serial__startswith=prefix).order_by("pk"))


@pytest.mark.django_db
def test_a_batch_of_100000_meters_is_stored_whole(make_api):
    # The lock table that ran out is PostgreSQL's; SQLite (a demo's database) proves the same
    # path on a fifth of the size.
    size = 100_000 if connection.vendor == "postgresql" else 20_000
    utility = UtilityFactory()
    meters = _meters(utility, size, "BIG")
    api = make_api()
    api.client.credentials(HTTP_AUTHORIZATION=f"Bearer {head_end_token(utility)}")
    # One new interval per meter, the last of the day, and the first of the next: two rows each.
    blocks = [
        {"meter": m.serial, "start": START.isoformat(), "values": [n % 500, 7], "quality": "actual"}
        for n, m in enumerate(meters)
    ]
    # The day before already has a row for half the meters: those rows are locked and merged.
    services.readings_ingest(
        utility=utility,
        blocks=[
            {"meter": m.serial, "start": (START - timedelta(hours=1)).isoformat(), "values": [1]}
            for m in meters[::2]
        ],
        source="test",
    )
    body = json.dumps({"blocks": blocks})
    assert len(body) < 64 * 1024 * 1024

    response = api.client.post(URL, data=body, content_type="application/json")

    assert response.status_code == 200, response.content[:500]
    assert response.json()["stored"] == 2 * size
    assert MeterDay.objects.filter(meter__utility=utility).count() == 2 * size
    batch = IngestBatch.objects.get(pk=response.json()["batch_id"])
    assert (batch.stored, batch.rejected) == (2 * size, 0)
    for n in (0, 1, size // 2 + 1, size - 1):
        series = meter_series(
            meter_id=meters[n].pk, start=START - timedelta(hours=1), end=START + timedelta(hours=1)
        )
        assert series.values[4] == n % 500 and series.values[5] == 7
        assert series.values[0] == (1 if n % 2 == 0 else 0)
        assert bytes(series.quality[:6]) == bytes([1 if n % 2 == 0 else 0, 0, 0, 0, 1, 1])
    # Sent again, the whole batch stores nothing twice.
    again = api.client.post(URL, data=body, content_type="application/json")
    assert (again.json()["stored"], again.json()["unchanged"]) == (0, 2 * size)


@pytest.mark.django_db(transaction=True)
def test_crossing_batches_over_the_same_meters_neither_deadlock_nor_lose_a_slot():
    """Four batches over the same 300 meters at once, their meters listed in different orders,
    some rows existing and some created by whichever batch comes first: every slot lands."""
    utility = UtilityFactory()
    meters = _meters(utility, 300, "X")
    day = datetime(2026, 11, 2, tzinfo=UTC)
    # A row for every third meter exists already.
    services.readings_ingest(
        utility=utility,
        blocks=[{"meter": m.serial, "start": day.isoformat(), "values": [5]} for m in meters[::3]],
        source="test",
    )
    orders = [meters, meters[::-1], meters[150:] + meters[:150], meters[1::2] + meters[::2]]
    barrier = threading.Barrier(len(orders))
    errors: list[Exception] = []

    def send(index: int, order: list[Meter]) -> None:
        try:
            blocks = [
                # Each batch owns its own slots of each meter's day: slot 1+index and 10+index.
                {
                    "meter": m.serial,
                    "start": (day + (1 + index) * timedelta(minutes=15)).isoformat(),
                    "values": [100 * index + k],
                }
                for k, m in enumerate(order)
            ] + [
                {
                    "meter": m.serial,
                    "start": (day + (10 + index) * timedelta(minutes=15)).isoformat(),
                    "values": [index],
                }
                for m in order
            ]
            barrier.wait()
            services.readings_ingest(utility=utility, blocks=blocks, source="test")
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(i, o)) for i, o in enumerate(orders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert MeterDay.objects.filter(meter__utility=utility).count() == 300
    for n, meter in enumerate(meters):
        series = meter_series(meter_id=meter.pk, start=day, end=day + timedelta(hours=4))
        expected_quality = [1 if n % 3 == 0 else 0] + [1] * 4 + [0] * 5 + [1] * 4 + [0] * 2
        assert list(series.quality) == expected_quality, meter.serial
        for index, order in enumerate(orders):
            assert series.values[1 + index] == 100 * index + order.index(meter)
            assert series.values[10 + index] == index


@pytest.mark.django_db
def test_a_15_minute_push_rewrites_the_meter_row_every_other_push_not_every_push():
    """The meter row records the newest reading and last contact to within TOUCH_EVERY, so a
    head-end pushing every 15 minutes does not rewrite every meter's row four times an hour."""
    utility = UtilityFactory()
    (meter,) = _meters(utility, 1, "T")
    first = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
    seen = []
    for push in range(5):
        interval = first + push * timedelta(minutes=15)
        services.readings_ingest(
            utility=utility,
            blocks=[{"meter": meter.serial, "start": interval.isoformat(), "values": [push]}],
            source="test",
            now=interval + timedelta(minutes=16),
        )
        meter.refresh_from_db()
        seen.append((meter.last_reading_at, meter.last_communication_at))

    minutes = [timedelta(minutes=m) for m in (0, 0, 30, 30, 60)]
    assert [reading for reading, _ in seen] == [first + m for m in minutes]
    assert [contact for _, contact in seen] == [first + timedelta(minutes=16) + m for m in minutes]
    # Late data never moves the newest reading back, and the readings themselves are all stored.
    series = meter_series(meter_id=meter.pk, start=first, end=first + timedelta(hours=2))
    assert list(series.values[:5]) == [0, 1, 2, 3, 4]


@pytest.mark.django_db(transaction=True)
def test_a_push_and_a_backfill_over_the_same_meters_on_different_days_do_not_deadlock():
    """They share no meter-day row, only the meters' own rows, which each batch then updates:
    those are locked in id order too. (The plan forced is the one a table of a million meters
    gets for a batch: index probes in the batch's order, not a hash of the whole table.)"""
    utility = UtilityFactory()
    meters = _meters(utility, 3000, "D")
    errors: list[str] = []
    for round_ in range(3):
        now = datetime(2026, 11, 20, 12, tzinfo=UTC) + timedelta(hours=2 * round_)
        days = [
            datetime(2026, 11, 10 + round_, tzinfo=UTC),
            datetime(2026, 11, 1 + round_, tzinfo=UTC),
        ]
        barrier = threading.Barrier(2)

        def send(order, day, now=now, barrier=barrier):
            try:
                if connection.vendor == "postgresql":
                    with connection.cursor() as cursor:
                        cursor.execute("SET enable_hashjoin = off; SET enable_mergejoin = off")
                blocks = [
                    {"meter": m.serial, "start": day.isoformat(), "values": [1]} for m in order
                ]
                barrier.wait()
                services.readings_ingest(utility=utility, blocks=blocks, source="test", now=now)
            except Exception as exc:  # surfaced by the assertion below
                errors.append(repr(exc)[:300])
            finally:
                connection.close()

        threads = [
            threading.Thread(target=send, args=(meters, days[0])),
            threading.Thread(target=send, args=(meters[::-1], days[1])),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert errors == []
    assert MeterDay.objects.filter(meter__utility=utility).count() == 3000 * 6
    newest = datetime(2026, 11, 12, tzinfo=UTC)
    assert set(Meter.objects.filter(utility=utility).values_list("last_reading_at", flat=True)) == {
        newest
    }
