from __future__ import annotations

import json
from array import array
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.db import connection

from accounts.models import Utility
from billing.models import ChargedDay
from core.timebuckets import EARLIEST_DATE
from meters import partitions, tasks
from meters.models import MeterDay
from meters.storage import values_pack
from tests.accounts.factories import AccountLinkFactory, UtilityFactory
from tests.meters.factories import MeterFactory
from tests.meters.test_consumption import fill, get

pytestmark = pytest.mark.django_db
on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite, the embedded default, is not partitioned"
)

TODAY = date(2026, 12, 1)
NEW_YORK = {
    "code": "us-nyc",
    "country": "US",
    "timezone": "America/New_York",
    "currency": "USD",
    "currency_minor_unit": 2,
}


@pytest.fixture
def owner_api(make_api):
    def build(meter):
        return make_api(AccountLinkFactory(account=meter.account).user)

    return build


def months_ensured(first: date, today: date = TODAY, ahead: int = 1) -> None:
    for table in partitions.TABLES:
        partitions.partitions_ensure(
            table=table, today=today, months_ahead=ahead, first_month=first
        )


def partition_of(table: str, meter_id: int, day: date) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT tableoid::regclass::text FROM {table} WHERE meter_id = %s AND day = %s",  # noqa: S608
            [meter_id, day],
        )
        return cursor.fetchone()[0]


def day_row(meter, day: date, table=MeterDay) -> None:
    """A stored meter-day (and, for ChargedDay, its charged copy) written directly."""
    fields = {"values": values_pack(array("i", [10] * 96)), "quality": bytes([1] * 96)}
    if table is MeterDay:
        MeterDay.objects.create(meter=meter, day=day, updated_at=datetime.now(UTC), **fields)
    else:
        ChargedDay.objects.create(meter=meter, day=day, charged_at=datetime.now(UTC), **fields)


def deferred_checks_run() -> None:
    """The daily pass runs in transactions of its own; a test writes its rows in the same one,
    whose deferred foreign-key checks are still pending, and ALTER TABLE refuses a table with
    pending checks. Run them now, as a commit would."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def days_of(meter, table=MeterDay) -> list[date]:
    return sorted(table.objects.filter(meter=meter).values_list("day", flat=True))


@on_postgresql
def test_both_tables_are_partitioned_by_month_with_a_default():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, relkind FROM pg_class WHERE relname = ANY(%s)",
            [list(partitions.TABLES)],
        )
        assert dict(cursor.fetchall()) == {"meters_meterday": "p", "billing_chargedday": "p"}
    for table in partitions.TABLES:
        listed = partitions.partitions_list(table=table)
        current = partitions.month_start(datetime.now(UTC).date())
        assert current in {p.start for p in listed if p.attached}
        assert [p.name for p in listed if p.is_default] == [f"{table}_default"]


@time_machine.travel(datetime(2026, 12, 3, tzinfo=UTC), tick=False)
def test_a_kuwait_local_month_starting_on_the_utc_month_boundary_reads_both_days(owner_api):
    months_ensured(date(2026, 11, 1))
    meter = MeterFactory()  # Asia/Kuwait, +03:00
    # Local 1 December 00:00 is 30 November 21:00 UTC: its first 12 quarter-hours are in
    # November's partition, the other 84 in December's. One interval each side is outside it.
    start = datetime(2026, 11, 30, 21, tzinfo=UTC)
    fill(meter, start - timedelta(minutes=15), 98, wh=lambda i: 1000 + i)

    body = get(
        owner_api(meter), meter, period_from="2026-12-01", period_to="2027-01-01", group_by="day"
    )

    first = body["buckets"][0]
    assert first["start"] == "2026-12-01T00:00:00+03:00"
    assert first["expected_intervals"] == 96
    assert first["energy_wh"] == sum(1000 + i for i in range(1, 97)) and first["complete"] is True
    assert sum(b["energy_wh"] or 0 for b in body["buckets"]) == first["energy_wh"] + 1000 + 97
    if connection.vendor == "postgresql":
        assert partition_of("meters_meterday", meter.pk, date(2026, 11, 30)).endswith("p2026_11")
        assert partition_of("meters_meterday", meter.pk, date(2026, 12, 1)).endswith("p2026_12")


@time_machine.travel(datetime(2026, 12, 3, tzinfo=UTC), tick=False)
def test_a_local_day_west_of_utc_reads_across_the_month_boundary(owner_api):
    months_ensured(date(2026, 11, 1))
    meter = MeterFactory(utility=UtilityFactory(**NEW_YORK))
    # New York's 30 November (-05:00) is 30 November 05:00 to 1 December 05:00 UTC: its last
    # 20 quarter-hours are in December's partition.
    fill(meter, datetime(2026, 11, 30, 5, tzinfo=UTC), 96, wh=lambda i: 7 + i)

    body = get(
        owner_api(meter), meter, period_from="2026-11-01", period_to="2026-12-01", group_by="day"
    )

    last = body["buckets"][-1]
    assert last["start"] == "2026-11-30T00:00:00-05:00"
    assert last["energy_wh"] == sum(7 + i for i in range(96)) and last["complete"] is True
    assert not any(b["energy_wh"] for b in body["buckets"][:-1])
    if connection.vendor == "postgresql":
        assert partition_of("meters_meterday", meter.pk, date(2026, 12, 1)).endswith("p2026_12")


def test_a_reading_back_dated_to_the_earliest_date_is_stored_not_refused():
    meter = MeterFactory()
    fill(meter, datetime.combine(EARLIEST_DATE, datetime.min.time(), tzinfo=UTC), 4, wh=3)

    assert days_of(meter) == [EARLIEST_DATE]
    if connection.vendor == "postgresql":
        assert partition_of("meters_meterday", meter.pk, EARLIEST_DATE) == "meters_meterday_default"


def plan_relations(sql: str, params: list) -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        raw = cursor.fetchone()[0]
    plan = json.loads(raw) if isinstance(raw, str) else raw
    found = []

    def walk(node):
        if "Relation Name" in node:
            found.append((node["Relation Name"], node["Node Type"]))
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


@on_postgresql
def test_one_meters_days_read_only_the_partitions_of_those_days():
    months_ensured(date(2026, 9, 1))
    meter = MeterFactory()
    for day in (date(2026, 9, 15), date(2026, 11, 29), date(2026, 12, 1), date(2027, 1, 2)):
        day_row(meter, day)
    # The read of meters.selectors.meter_days, for a local week across the month's end.
    sql = "SELECT day, values, quality FROM meters_meterday WHERE meter_id = %s AND day BETWEEN %s AND %s"

    across = plan_relations(sql, [meter.pk, date(2026, 11, 27), date(2026, 12, 3)])
    within = plan_relations(sql, [meter.pk, date(2026, 12, 1), date(2026, 12, 31)])

    assert sorted(name for name, _ in across) == [
        "meters_meterday_p2026_11",
        "meters_meterday_p2026_12",
    ]
    # The other months and the DEFAULT partition are pruned: never scanned, by index or otherwise.
    assert [name for name, _ in within] == ["meters_meterday_p2026_12"]


@on_postgresql
def test_making_months_ahead_is_idempotent_and_moves_rows_out_of_default():
    meter = MeterFactory()
    # March 2025 has no partition yet (the test database was made later): its rows sit in DEFAULT.
    fill(meter, datetime(2025, 3, 10, tzinfo=UTC), 96, wh=5)
    day_row(meter, date(2025, 3, 10), table=ChargedDay)
    day_row(meter, date(2025, 4, 2))
    assert partition_of("meters_meterday", meter.pk, date(2025, 3, 10)) == "meters_meterday_default"

    made = partitions.partitions_ensure(
        table="meters_meterday", today=date(2025, 3, 5), months_ahead=1
    )
    again = partitions.partitions_ensure(
        table="meters_meterday", today=date(2025, 3, 5), months_ahead=1
    )
    made_charged = partitions.partitions_ensure(
        table="billing_chargedday", today=date(2025, 3, 5), months_ahead=0
    )

    assert made == ["meters_meterday_p2025_03", "meters_meterday_p2025_04"] and again == []
    assert made_charged == ["billing_chargedday_p2025_03"]
    assert (
        partition_of("meters_meterday", meter.pk, date(2025, 3, 10)) == "meters_meterday_p2025_03"
    )
    assert partition_of("meters_meterday", meter.pk, date(2025, 4, 2)) == "meters_meterday_p2025_04"
    assert (
        partition_of("billing_chargedday", meter.pk, date(2025, 3, 10))
        == "billing_chargedday_p2025_03"
    )
    assert days_of(meter) == [date(2025, 3, 10), date(2025, 4, 2)]
    assert MeterDay.objects.get(meter=meter, day=date(2025, 3, 10)).values == values_pack(
        array("i", [5] * 96)
    )
    # The moved month has the parent's keys: a second write of the day updates it, not a twin.
    fill(meter, datetime(2025, 3, 10, tzinfo=UTC), 1, wh=6)
    assert days_of(meter) == [date(2025, 3, 10), date(2025, 4, 2)]
    # A charged copy's month keeps room for its rows' next versions, moved or made empty.
    partitions.partitions_ensure(table="billing_chargedday", today=date(2025, 4, 5), months_ahead=0)
    assert storage_of("billing_chargedday_p2025_03") == ["fillfactor=60"]
    assert storage_of("billing_chargedday_p2025_04") == ["fillfactor=60"]
    assert storage_of("meters_meterday_p2025_03") is None


def storage_of(table: str) -> list[str] | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [table])
        return cursor.fetchone()[0]


@pytest.fixture
def retention_utilities():
    """Kuwait keeps 6 months, Cairo 12; any other utility in the database keeps 3."""
    kuwait = UtilityFactory(reading_retention_months=6)
    cairo = UtilityFactory(
        code="eg-nedc",
        country="EG",
        timezone="Africa/Cairo",
        currency="EGP",
        currency_minor_unit=2,
        reading_retention_months=12,
    )
    Utility.objects.exclude(pk__in=[kuwait.pk, cairo.pk]).update(reading_retention_months=3)
    months_ensured(date(2025, 10, 1))
    return kuwait, cairo


@on_postgresql
def test_a_month_is_detached_only_when_the_longest_retention_has_passed_it(retention_utilities):
    kuwait, cairo = retention_utilities
    k, c = MeterFactory(utility=kuwait), MeterFactory(utility=cairo)
    for meter in (k, c):
        for day in (date(2025, 10, 15), date(2025, 11, 30), date(2025, 12, 1)):
            day_row(meter, day)
    day_row(k, date(2025, 10, 15), table=ChargedDay)

    deferred_checks_run()
    cairo.reading_retention_months = None
    cairo.save()
    kept_forever = partitions.partitions_detach_expired(table="meters_meterday", today=TODAY)
    cairo.reading_retention_months = 12
    cairo.save()
    detached = partitions.partitions_detach_expired(table="meters_meterday", today=TODAY)
    detached_charged = partitions.partitions_detach_expired(table="billing_chargedday", today=TODAY)

    # Cairo keeps December 2025 onwards (12 months before December 2026) and the UTC day before,
    # 30 November, where a local December east of UTC begins: October goes for everyone, November
    # stays (it holds that day), December 2025 stays although Kuwait's 6 months have passed it.
    assert kept_forever == []
    assert detached == ["meters_meterday_p2025_10"]
    assert detached_charged == ["billing_chargedday_p2025_10"]
    assert days_of(k) == days_of(c) == [date(2025, 11, 30), date(2025, 12, 1)]
    assert days_of(k, table=ChargedDay) == []
    listed = {p.name: p for p in partitions.partitions_list(table="meters_meterday")}
    archive = listed["meters_meterday_p2025_10"]
    assert not archive.attached and archive.start == date(2025, 10, 1)
    assert listed["meters_meterday_p2025_11"].attached
    with connection.cursor() as cursor:
        # Archived, not dropped: the rows are still there, free of the meters' foreign key.
        cursor.execute("SELECT count(*) FROM meters_meterday_p2025_10")
        assert cursor.fetchone()[0] == 2
        cursor.execute(
            "SELECT count(*) FROM pg_constraint "
            "WHERE conrelid = 'meters_meterday_p2025_10'::regclass AND contype = 'f'"
        )
        assert cursor.fetchone()[0] == 0


@on_postgresql
def test_a_shorter_retention_deletes_only_that_utilitys_expired_rows(
    retention_utilities, monkeypatch
):
    kuwait, cairo = retention_utilities
    # One meter a batch, two batches a step: Kuwait's three meters take two chained steps.
    monkeypatch.setattr(partitions, "PURGE_METERS_PER_BATCH", 1)
    monkeypatch.setattr(partitions, "PURGE_BATCHES_PER_STEP", 2)
    kuwaiti = [MeterFactory(utility=kuwait) for _ in range(3)]
    egyptian = MeterFactory(utility=cairo)
    expired, kept, ancient = date(2026, 3, 15), date(2026, 6, 1), date(2003, 5, 5)
    for meter in [*kuwaiti, egyptian]:
        for day in (expired, kept, ancient):
            day_row(meter, day)
            day_row(meter, day, table=ChargedDay)
    assert partition_of("meters_meterday", egyptian.pk, ancient) == "meters_meterday_default"

    deferred_checks_run()
    with time_machine.travel(datetime(2026, 12, 1, 2, tzinfo=UTC), tick=False):
        tasks.reading_partitions_maintain.delay()
        # Nothing is left to do for Kuwait's March: the next day's pass queues it no more.
        pending = partitions.purges_pending(today=TODAY)

    for meter in kuwaiti:
        assert days_of(meter) == days_of(meter, table=ChargedDay) == [kept]
    # Cairo keeps March (12 months); 2003, in DEFAULT, is past its retention too.
    assert days_of(egyptian) == days_of(egyptian, table=ChargedDay) == [expired, kept]
    for table in partitions.TABLES:
        march = next(
            p for p in partitions.partitions_list(table=table) if p.start == date(2026, 3, 1)
        )
        assert march.purged_for == {kuwait.pk}
    assert [p.month for p in pending if p.utility_id == kuwait.pk] == [None]
