"""A city's snapshot streams with its notice (issue 19): publishing writes the scope's first
chunk of meters; each chunk of the notice's stream writes the next with their accounts' notices
and their people. Every account in the snapshot has its notice row, so an account never told is
owed the notice standard's payment; a step that needs every meter (the start, a reschedule, the
reminder, the sweeper an hour before the start) writes the rest first; an outage published less
than an hour ahead, or of at most a chunk, is written whole; a stale save cannot make a meter
written twice; and the rows are not checked reference by reference at commit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection

from notifications.models import Fanout
from outages import services
from outages.models import AffectedMeter, Compensation, Outage, OutageNotice, Standard
from outages.services import stream
from tests.outages.factories import OutageFactory, consumer_on, saudi, transformer_of
from tests.outages.streams import CHUNK, PUBLISH, START, inbox_of, publish_keeping_work, run_work

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("small_chunks")]


def test_accounts_a_stalled_stream_never_reached_are_owed_the_notice_when_the_outage_begins(
    city, fcm_server, django_capture_on_commit_callbacks
):
    """Published in time, but the stream's work after commit is lost (a broker down for days):
    when the outage begins, the accounts never told are owed the notice standard's payment, never
    counted as told at publication."""
    outage = city["outage"]
    with (
        time_machine.travel(PUBLISH, tick=False),
        django_capture_on_commit_callbacks(execute=False),
    ):
        services.outage_publish(outage_id=outage.pk, now=PUBLISH)
    with time_machine.travel(START, tick=False), django_capture_on_commit_callbacks(execute=True):
        services.outage_start(outage_id=outage.pk, at=START, now=START)

    assert OutageNotice.objects.filter(outage=outage).count() == 10
    assert not OutageNotice.objects.filter(outage=outage, status="sent").exists()
    owed = Compensation.objects.filter(standard=Standard.NOTICE)
    assert sorted(owed.values_list("account_id", flat=True)) == sorted(
        m.account_id for m in city["meters"]
    )


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's triggers and indexes")
def test_a_publication_writes_its_snapshot_without_a_reference_check_per_row(
    city, django_capture_on_commit_callbacks
):
    """A city's publication writes a million snapshot rows and a million notices: the database
    checks none of their copied references again one by one at commit (each check a lookup that
    locks the row it finds), and the meter's own failure, set later for a few, is indexed only
    where set. The rows still name what they were copied from."""
    run_work(
        publish_keeping_work(city["outage"], django_capture_on_commit_callbacks),
        django_capture_on_commit_callbacks,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conrelid::regclass::text, a.attname FROM pg_constraint c "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey) "
            "WHERE c.contype = 'f' AND c.conrelid IN "
            "('outages_affectedmeter'::regclass, 'outages_outagenotice'::regclass)"
        )
        checked = set(cursor.fetchall())
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'affected_period'")
        [(period_index,)] = cursor.fetchall()
    assert checked == {("outages_affectedmeter", "period_id")}
    assert "WHERE (period_id IS NOT NULL)" in period_index
    rows = AffectedMeter.objects.filter(outage=city["outage"])
    assert {(a.meter_id, a.account_id) for a in rows} == {
        (m.pk, m.account.pk) for m in city["meters"]
    }
    assert OutageNotice.objects.filter(outage=city["outage"]).count() == len(city["meters"])


def test_the_reminder_of_an_outage_still_streaming_goes_to_every_meter_s_people(
    city, fcm_server, django_capture_on_commit_callbacks
):
    """The stream stalled after its first chunk; the evening before, the reminder writes the
    snapshot's rest (with each added account's notice) and reminds everyone; the resumed stream
    then tells the rest of the notice itself, each person once."""
    outage = city["outage"]
    queued = publish_keeping_work(outage, django_capture_on_commit_callbacks)
    evening = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # 18:00 in Riyadh, the day before

    with time_machine.travel(evening, tick=False), django_capture_on_commit_callbacks(execute=True):
        assert services.outage_reminders_send(now=evening) == 1

    everyone = sorted(p.pk for p in city["people"])
    assert inbox_of("outage_reminder") == everyone
    outage.refresh_from_db()
    assert outage.snapshot_through is None and outage.affected.count() == 10
    assert OutageNotice.objects.filter(outage=outage, version=1).count() == 10

    run_work(queued, django_capture_on_commit_callbacks)
    assert inbox_of("outage_planned") == everyone
    assert fcm_server.duplicates == 0


@pytest.mark.parametrize("size", [CHUNK - 1, CHUNK])
def test_a_scope_of_at_most_a_chunk_is_published_whole(size, django_capture_on_commit_callbacks):
    """Fewer meters than a chunk: the snapshot is complete at publication. Exactly a chunk: more
    might follow, so the stream's next task looks, finds none, and ends the snapshot and the
    notice."""
    transformer = transformer_of(saudi())
    meters = [consumer_on(transformer)[0] for _ in range(size)]
    outage = OutageFactory(
        utility=transformer.feeder.area.utility,
        planned_start=START,
        planned_end=START + timedelta(hours=4),
        transformers=[transformer],
    )

    queued = publish_keeping_work(outage, django_capture_on_commit_callbacks)

    outage.refresh_from_db()
    assert {a.meter_id for a in outage.affected.all()} == {m.pk for m in meters}
    assert (outage.snapshot_through is None) == (size < CHUNK)
    run_work(queued, django_capture_on_commit_callbacks)
    outage.refresh_from_db()
    assert outage.snapshot_through is None and outage.affected.count() == size
    assert Fanout.objects.get().state == Fanout.State.WRITTEN
    assert OutageNotice.objects.filter(outage=outage).count() == size


def test_a_snapshot_still_streaming_an_hour_before_the_start_is_written_whole_by_the_sweeper(
    city, fcm_server, django_capture_on_commit_callbacks
):
    """The stream stalled after its first chunk and its tasks are lost: an hour before the
    outage the sweeper writes the snapshot's rest with each added account's notice, so the
    meters' own failure reports and the consumers' fault reports find every meter in it."""
    outage = city["outage"]
    publish_keeping_work(outage, django_capture_on_commit_callbacks)  # its queued work is lost

    early = START - stream.SNAPSHOT_STREAM_LEAD - timedelta(minutes=1)
    with time_machine.travel(early, tick=False), django_capture_on_commit_callbacks(execute=False):
        assert services.outage_notices_sweep(now=early)["snapshots"] == 0
    assert outage.affected.count() == 3

    due = START - stream.SNAPSHOT_STREAM_LEAD
    with time_machine.travel(due, tick=False), django_capture_on_commit_callbacks(execute=False):
        assert services.outage_notices_sweep(now=due)["snapshots"] == 1
        assert services.outage_notices_sweep(now=due)["snapshots"] == 0
    outage.refresh_from_db()
    assert outage.snapshot_through is None and outage.affected.count() == 10
    assert OutageNotice.objects.filter(outage=outage, version=1).count() == 10


def test_an_outage_published_less_than_an_hour_ahead_has_its_snapshot_written_whole(
    city, django_capture_on_commit_callbacks
):
    outage = city["outage"]
    late = START - stream.SNAPSHOT_STREAM_LEAD + timedelta(minutes=1)
    with time_machine.travel(late, tick=False), django_capture_on_commit_callbacks(execute=False):
        services.outage_publish(outage_id=outage.pk, now=late, confirm_late=True)

    outage.refresh_from_db()
    assert outage.snapshot_through is None and outage.affected.count() == 10
    assert OutageNotice.objects.filter(outage=outage).count() == 10
    assert len(inbox_of("outage_planned")) == 3  # the people are still told a chunk at a time


def test_a_stale_save_of_the_outage_cannot_make_the_stream_write_a_meter_twice(
    city, fcm_server, django_capture_on_commit_callbacks
):
    outage = city["outage"]
    queued = publish_keeping_work(outage, django_capture_on_commit_callbacks)
    stale = Outage.objects.get(pk=outage.pk)
    run_work(queued[1:], django_capture_on_commit_callbacks)  # chunks 2, 3 and 4 are written
    stale.save()  # an old copy of the row saved over the stream's cursor: "3 meters written"

    with time_machine.travel(PUBLISH, tick=False), django_capture_on_commit_callbacks(execute=True):
        services.outage_start(outage_id=outage.pk, at=PUBLISH, now=PUBLISH)

    assert sorted(outage.affected.values_list("meter_id", flat=True)) == sorted(
        m.pk for m in city["meters"]
    )
    outage.refresh_from_db()
    assert outage.status == Outage.Status.IN_PROGRESS and outage.snapshot_through is None
