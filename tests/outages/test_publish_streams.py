"""A city's outage notice is streamed (issue 19): publishing commits with the first chunk (its
people's inbox rows, its accounts' notices) written; the rest are written a chunk a task after
commit, each chunk's pushes leaving at once. Every guarantee of a notice still holds: once per
person, only people whose links receive alerts, nothing twice, a cancel or a reschedule stops
the old notice, and a stream a dead worker left is finished by the sweeper. The snapshot that
streams with the notice: test_snapshot_streams.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications.models import Device, Fanout, Notification
from outages import selectors, services, tasks
from outages.models import (
    AffectedMeter,
    Compensation,
    Outage,
    OutageEvent,
    OutageNotice,
    Standard,
)
from outages.services import stream
from tests.meters.factories import MeterFactory
from tests.outages.factories import OutageFactory, consumer_on, saudi, transformer_of
from tests.outages.streams import CHUNK, PUBLISH, START, inbox_of, publish_keeping_work, run_work

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("small_chunks")]


def test_publishing_commits_with_the_first_chunk_and_its_pushes_leave_before_the_last_is_written(
    city, fcm_server, django_capture_on_commit_callbacks
):
    outage, people = city["outage"], city["people"]

    queued = publish_keeping_work(outage, django_capture_on_commit_callbacks)

    outage.refresh_from_db()
    assert outage.status == Outage.Status.PUBLISHED
    # The snapshot's first chunk is committed (the scope's first meters by id), each account's
    # notice row with it; the rest are written by the stream, a chunk with its people.
    first_meters = sorted(m.pk for m in city["meters"])[:3]
    assert sorted(a.meter_id for a in AffectedMeter.objects.filter(outage=outage)) == first_meters
    assert outage.snapshot_through == first_meters[-1]
    assert OutageNotice.objects.filter(outage=outage, status="waiting").count() == 3
    assert OutageEvent.objects.get(outage=outage, action="published").changes["meters"] == 10
    fanout = Fanout.objects.get(dedupe_key=f"outage:{outage.pk}:published:v1")
    assert fanout.state == Fanout.State.WRITING
    first = {p.pk for p in people[:3]}
    assert set(inbox_of("outage_planned")) == first
    assert fanout.audience_size == 3

    # The first thing queued is the first chunk's pushes: they leave while 7 are not written.
    pushes_of_first, *rest = queued
    with time_machine.travel(PUBLISH, tick=False):
        pushes_of_first()
    first_tokens = {d.token for d in Device.objects.filter(user_id__in=first)}
    assert {m["token"] for m in fcm_server.accepted} == first_tokens
    assert Notification.objects.count() == 3

    run_work(rest, django_capture_on_commit_callbacks)

    fanout.refresh_from_db()
    assert fanout.state == Fanout.State.WRITTEN and fanout.audience_size == 10
    assert inbox_of("outage_planned") == sorted(p.pk for p in people)
    assert fcm_server.duplicates == 0 and len(fcm_server.accepted) == 10
    outage.refresh_from_db()
    assert outage.snapshot_through is None and outage.affected.count() == 10
    # Settled once every chunk was written and pushed: each account, once, by the app (Alice's
    # second account, in the last chunk, has one row like every other).
    assert OutageNotice.objects.count() == 10
    assert set(OutageNotice.objects.values_list("status", "channel")) == {("sent", "push")}


def test_an_audience_of_several_chunks_is_told_once_each_and_only_where_links_receive_alerts(
    city, fcm_server, django_capture_on_commit_callbacks
):
    outage = city["outage"]

    run_work(
        publish_keeping_work(outage, django_capture_on_commit_callbacks),
        django_capture_on_commit_callbacks,
    )

    # Alice's second account is in the last chunk: one notice still. Bob's share does not
    # receive alerts; the former holder was unlinked before.
    assert inbox_of("outage_planned") == sorted(p.pk for p in city["people"])
    assert not Notification.objects.filter(user__in=[city["bob"], city["former"]]).exists()
    assert fcm_server.duplicates == 0
    assert sorted(m["token"] for m in fcm_server.accepted) == sorted(
        d.token for p in city["people"] for d in p.devices.all()
    )


def test_a_chunk_task_delivered_twice_writes_nothing_twice(
    city, fcm_server, django_capture_on_commit_callbacks
):
    outage = city["outage"]
    publish_keeping_work(outage, django_capture_on_commit_callbacks)
    fanout = Fanout.objects.get(dedupe_key=f"outage:{outage.pk}:published:v1")
    cursor = fanout.written_through

    with time_machine.travel(PUBLISH, tick=False):
        with django_capture_on_commit_callbacks(execute=False) as first_run:
            written = tasks.stream_outage_notice.delay(outage.pk, fanout.pk, cursor).get()
        with django_capture_on_commit_callbacks(execute=False) as second_run:
            again = tasks.stream_outage_notice.delay(outage.pk, fanout.pk, cursor).get()

    assert (written, again) == (3, 0)
    assert Notification.objects.count() == 6
    assert len(first_run) == 2  # its pushes, and the next chunk
    assert second_run == []  # no second chain of chunks, no pushes
    run_work(first_run, django_capture_on_commit_callbacks)
    assert Notification.objects.count() == 10 and fcm_server.duplicates == 0
    assert len(fcm_server.accepted) == 7  # the first chunk's pushes were never run here


def test_cancelling_mid_stream_stops_the_old_notice_and_tells_everyone_told_it_is_off(
    city, fcm_server, django_capture_on_commit_callbacks
):
    outage = city["outage"]
    queued = publish_keeping_work(outage, django_capture_on_commit_callbacks)

    cancelled = PUBLISH + timedelta(minutes=1)
    with (
        time_machine.travel(cancelled, tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        services.outage_cancel(outage_id=outage.pk)
    run_work(queued, django_capture_on_commit_callbacks)  # the old stream's next chunk runs late

    published = Fanout.objects.get(dedupe_key=f"outage:{outage.pk}:published:v1")
    assert published.state == Fanout.State.STOPPED and published.audience_size == 3
    told = sorted(p.pk for p in city["people"][:3])
    assert inbox_of("outage_planned") == told  # only the first chunk was told it
    # Everyone told is told it is off; nobody who never heard of it. The snapshot stays as far
    # as the stream had written it: the meters whose people were told.
    assert inbox_of("outage_cancelled") == told
    assert outage.affected.count() == 3
    assert OutageNotice.objects.count() == 3
    assert set(OutageNotice.objects.values_list("status", flat=True)) == {"dropped"}
    assert fcm_server.duplicates == 0


def test_rescheduling_mid_stream_supersedes_the_first_notice(
    city, fcm_server, django_capture_on_commit_callbacks
):
    outage = city["outage"]
    queued = publish_keeping_work(outage, django_capture_on_commit_callbacks)

    moved = PUBLISH + timedelta(hours=1)
    with time_machine.travel(moved, tick=False), django_capture_on_commit_callbacks(execute=True):
        services.outage_reschedule(
            outage_id=outage.pk,
            planned_start=START + timedelta(hours=2),
            planned_end=START + timedelta(hours=6),
            now=moved,
        )
    run_work(queued, django_capture_on_commit_callbacks)

    first = Fanout.objects.get(dedupe_key=f"outage:{outage.pk}:published:v1")
    second = Fanout.objects.get(dedupe_key=f"outage:{outage.pk}:rescheduled:v2")
    assert first.state == Fanout.State.STOPPED
    assert second.state == Fanout.State.WRITTEN and second.audience_size == 10
    assert len(inbox_of("outage_planned")) == 3
    # The new schedule goes to every meter's people: the reschedule wrote the snapshot's rest.
    assert inbox_of("outage_rescheduled") == sorted(p.pk for p in city["people"])
    outage.refresh_from_db()
    assert outage.snapshot_through is None and outage.affected.count() == 10
    assert OutageNotice.objects.filter(version=2).count() == 10
    notices = dict(
        OutageNotice.objects.values_list("version", "status").distinct().order_by("version")
    )
    assert notices == {1: "dropped", 2: "sent"}


def test_a_stream_left_by_a_dead_worker_is_finished_by_the_sweeper(
    city, fcm_server, settings, django_capture_on_commit_callbacks
):
    outage = city["outage"]
    publish_keeping_work(outage, django_capture_on_commit_callbacks)  # its queued work is lost

    # Within the grace the stream is only slow: nothing is queued again.
    soon = PUBLISH + timedelta(seconds=settings.NOTIFY_SWEEP_GRACE_SECONDS - 1)
    with time_machine.travel(soon, tick=False), django_capture_on_commit_callbacks(execute=True):
        assert services.outage_notices_sweep()["streams"] == 0
    assert Notification.objects.count() == 3

    later = PUBLISH + timedelta(seconds=settings.NOTIFY_SWEEP_GRACE_SECONDS + 1)
    with time_machine.travel(later, tick=False), django_capture_on_commit_callbacks(execute=True):
        assert services.outage_notices_sweep()["streams"] == 1

    fanout = Fanout.objects.get(dedupe_key=f"outage:{outage.pk}:published:v1")
    assert fanout.state == Fanout.State.WRITTEN
    assert inbox_of("outage_planned") == sorted(p.pk for p in city["people"])
    # The first chunk's pushes were lost with the worker: the notifications sweeper's to send.
    assert len(fcm_server.accepted) == 7


def test_each_chunk_writes_its_people_in_one_statement_whatever_its_size(
    city, monkeypatch, django_capture_on_commit_callbacks
):
    def chunk_queries(outage, size: int) -> list[str]:
        monkeypatch.setattr(stream, "NOTICE_STREAM_CHUNK", size)
        publish_keeping_work(outage, django_capture_on_commit_callbacks)
        fanout = Fanout.objects.get(dedupe_key=f"outage:{outage.pk}:published:v1")
        with (
            CaptureQueriesContext(connection) as queries,
            django_capture_on_commit_callbacks(execute=False),
        ):
            written = services.outage_notice_stream(
                outage_id=outage.pk, fanout_id=fanout.pk, after=fanout.written_through
            )
        assert written == size
        return [q["sql"] for q in queries]

    small = chunk_queries(city["outage"], 2)
    other = transformer_of(city["meters"][0].utility)
    for _ in range(16):
        consumer_on(other)
    big = chunk_queries(
        OutageFactory(
            utility=other.feeder.area.utility,
            planned_start=START,
            planned_end=START + timedelta(hours=4),
            transformers=[other],
        ),
        8,
    )

    inserts = [sql for sql in big if sql.startswith('INSERT INTO "notifications_notification"')]
    assert len(inserts) == 1
    assert len(small) == len(big)


def test_publishing_a_small_outage_writes_everyone_in_its_own_transaction(
    django_capture_on_commit_callbacks,
):
    transformer = transformer_of(saudi())
    meter, people = consumer_on(transformer, users=2)
    MeterFactory(utility=meter.utility, transformer=transformer)  # nobody in the app
    outage = OutageFactory(
        utility=meter.utility,
        planned_start=START,
        planned_end=START + timedelta(hours=4),
        transformers=[transformer],
    )

    with time_machine.travel(PUBLISH, tick=False):
        services.outage_publish(outage_id=outage.pk, now=PUBLISH)

    fanout = Fanout.objects.get()
    assert fanout.state == Fanout.State.WRITTEN and fanout.audience_size == 2
    assert inbox_of("outage_planned") == sorted(p.pk for p in people)


def test_an_outage_begun_mid_stream_stops_its_notice_and_owes_every_account_the_late_notice(
    city, fcm_server, django_capture_on_commit_callbacks
):
    outage = city["outage"]
    late = START - timedelta(hours=2)
    with time_machine.travel(late, tick=False), django_capture_on_commit_callbacks() as queued:
        services.outage_publish(outage_id=outage.pk, now=late, confirm_late=True)

    with time_machine.travel(START, tick=False), django_capture_on_commit_callbacks(execute=True):
        services.outage_start(outage_id=outage.pk, at=START, now=START)
        for callback in queued:  # the stream's next chunk comes after the start
            callback()

    fanout = Fanout.objects.get(dedupe_key=f"outage:{outage.pk}:published:v1")
    assert fanout.state == Fanout.State.STOPPED and len(inbox_of("outage_planned")) == 3
    # The start wrote the snapshot's rest, each account with its notice row: all late.
    assert outage.affected.count() == 10
    assert OutageNotice.objects.count() == 10
    owed = Compensation.objects.filter(standard=Standard.NOTICE)
    assert sorted(owed.values_list("account_id", flat=True)) == sorted(
        m.account_id for m in city["meters"]
    )


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL plan")
def test_a_chunk_reads_its_own_meters_through_indexes(city, django_capture_on_commit_callbacks):
    import json

    # The whole snapshot written (its ten rows), as a later chunk of a city's stream reads it.
    run_work(
        publish_keeping_work(city["outage"], django_capture_on_commit_callbacks),
        django_capture_on_commit_callbacks,
    )
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a test table is small: ask what it can
        # The snapshot's statistics as they are now, not the row counts an earlier test's ANALYZE
        # left in pg_class (they outlive its rollback): with those, every index of the outage's
        # rows looks alike and the planner's pick among them is a tie.
        cursor.execute("ANALYZE outages_affectedmeter")
    page = selectors.outage_audience_page(outage=city["outage"], after=3, size=CHUNK)

    [plan] = json.loads(page.user_ids.explain(format="json"))

    def nodes(node):
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    found = list(nodes(plan["Plan"]))
    assert not any(n["Node Type"] == "Seq Scan" for n in found), found
    # The page is a range of the snapshot's ids: read by (outage, id) or by the primary key
    # (which of the two the planner takes depends on the statistics of a small test table), never
    # through the (outage, meter) constraint, which reads the whole outage to find a page.
    # An index scan names its table; a bitmap scan's index is in its child node: match by name.
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'outages_affectedmeter'")
        snapshot_indexes = {name for (name,) in cursor.fetchall()}
    used = {n["Index Name"] for n in found if n.get("Index Name") in snapshot_indexes}
    assert used and used <= {"affected_outage_page", "outages_affectedmeter_pkey"}, found
