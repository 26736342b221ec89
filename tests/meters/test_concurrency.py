"""Two head-end batches for the same meter and day, at the same time, both land whole."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from meters import services
from meters.selectors import meter_series
from tests.meters.factories import MeterFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_batches_for_one_meter_day_lose_nothing():
    meter = MeterFactory()
    start = datetime(2026, 11, 1, tzinfo=UTC)
    halves = [range(0, 96, 2), range(1, 96, 2)]  # interleaved: both batches write the same row
    barrier = threading.Barrier(len(halves) * 3)
    errors = []

    def send(slots):
        try:
            readings = [
                (
                    {"index": i},
                    meter.serial,
                    (start + i * timedelta(minutes=15)).isoformat(),
                    10 + i,
                    "actual",
                )
                for i in slots
            ]
            barrier.wait()
            services.readings_ingest(utility=meter.utility, readings=readings, source="test")
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(half,)) for half in halves for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    series = meter_series(meter_id=meter.pk, start=start, end=start + timedelta(days=1))
    assert list(series.values) == [10 + i for i in range(96)]
    assert series.quality == bytes([1]) * 96
