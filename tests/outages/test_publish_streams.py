"""A city's outage notice is streamed (issue 19): publishing commits with the first chunk of the
snapshot (the scope's first meters, their accounts' notices, their people's inbox rows) written;
the rest are written a chunk a task after commit, each chunk's pushes leaving at once. Every
guarantee of a notice still holds: once per person, only people whose links receive alerts,
nothing twice, a cancel or a reschedule stops the old notice, a step that needs every meter (the
start, a reschedule, the reminder) writes the snapshot's rest first, and a stream a dead worker
left is finished by the sweeper."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import AccountLink
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
from tests.accounts.factories import AccountLinkFactory, UserFactory
from tests.meters.factories import MeterFactory
from tests.notifications.factories import DeviceFactory
from tests.outages.factories import OutageFactory, consumer_on, saudi, transformer_of

pytestmark = pytest.mark.django_db

START = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)  # Thursday 09:00 in Riyadh
PUBLISH = START - timedelta(hours=72)
CHUNK = 3  # affected meters a chunk: 10 meters are four chunks


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(stream, "NOTICE_STREAM_CHUNK", CHUNK)


@pytest.fixture
def city():
    """Ten meters on one transformer, each its account and its person with a phone; Alice also
    holds the last account (a second chunk's), Bob's share of the first does not receive alerts,
    and a former holder of the second was unlinked."""
    transformer = transformer_of(saudi())
    meters, people = [], []
    for n in range(10):
        meter, (person,) = consumer_on(transformer, language=("en", "ar")[n % 2])
        DeviceFactory(user=person)
        meters.append(meter)
        people.append(person)
    alice = people[0]
    AccountLinkFactory(account=meters[-1].account, user=alice)
    bob = UserFactory()
    DeviceFactory(user=bob)
    AccountLinkFactory(account=meters[0].account, user=bob, receives_alerts=False)
    former = UserFactory()
    AccountLink.objects.create(
        user=former, account=meters[1].account, verified_mobile="x", unlinked_at=PUBLISH
    )
    outage = OutageFactory(
        utility=transformer.feeder.area.utility,
        planned_start=START,
        planned_end=START + timedelta(hours=4),
        transformers=[transformer],
    )
    return {"outage": outage, "meters": meters, "people": people, "bob": bob, "former": former}


def _published(outage, capture):
    """Publish, keeping the work queued for after commit (pushes, next chunk) to run by hand."""
    with time_machine.travel(PUBLISH, tick=False), capture(execute=False) as queued:
        services.outage_publish(outage_id=outage.pk, now=PUBLISH)
    return list(queued)


def _run(callbacks, capture):
    """Run queued work as workers would, and all it queues in turn (eager tasks)."""
    with time_machine.travel(PUBLISH, tick=False), capture(execute=True):
        for callback in callbacks:
            callback()


def _inbox(category):
    return sorted(Notification.objects.filter(category=category).values_list("user_id", flat=True))


def test_publishing_commits_with_the_first_chunk_and_its_pushes_leave_before_the_last_is_written(
    city, fcm_server, django_capture_on_commit_callbacks
):
    outage, people = city["outage"], city["people"]

    queued = _published(outage, django_capture_on_commit_callbacks)

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
    assert set(_inbox("outage_planned")) == first
    assert fanout.audience_size == 3

    # The first thing queued is the first chunk's pushes: they leave while 7 are not written.
    pushes_of_first, *rest = queued
    with time_machine.travel(PUBLISH, tick=False):
        pushes_of_first()
    first_tokens = {d.token for d in Device.objects.filter(user_id__in=first)}
    assert {m["token"] for m in fcm_server.accepted} == first_tokens
    assert Notification.objects.count() == 3

    _run(rest, django_capture_on_commit_callbacks)

    fanout.refresh_from_db()
    assert fanout.state == Fanout.State.WRITTEN and fanout.audience_size == 10
    assert _inbox("outage_planned") == sorted(p.pk for p in people)
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

    _run(_published(outage, django_capture_on_commit_callbacks), django_capture_on_commit_callbacks)

    # Alice's second account is in the last chunk: one notice still. Bob's share does not
    # receive alerts; the former holder was unlinked before.
    assert _inbox("outage_planned") == sorted(p.pk for p in city["people"])
    assert not Notification.objects.filter(user__in=[city["bob"], city["former"]]).exists()
    assert fcm_server.duplicates == 0
    assert sorted(m["token"] for m in fcm_server.accepted) == sorted(
        d.token for p in city["people"] for d in p.devices.all()
    )


def test_a_chunk_task_delivered_twice_writes_nothing_twice(
    city, fcm_server, django_capture_on_commit_callbacks
):
    outage = city["outage"]
    _published(outage, django_capture_on_commit_callbacks)
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
    _run(first_run, django_capture_on_commit_callbacks)
    assert Notification.objects.count() == 10 and fcm_server.duplicates == 0
    assert len(fcm_server.accepted) == 7  # the first chunk's pushes were never run here


def test_cancelling_mid_stream_stops_the_old_notice_and_tells_everyone_told_it_is_off(
    city, fcm_server, django_capture_on_commit_callbacks
):
    outage = city["outage"]
    queued = _published(outage, django_capture_on_commit_callbacks)

    cancelled = PUBLISH + timedelta(minutes=1)
    with (
        time_machine.travel(cancelled, tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        services.outage_cancel(outage_id=outage.pk)
    _run(queued, django_capture_on_commit_callbacks)  # the old stream's next chunk runs late

    published = Fanout.objects.get(dedupe_key=f"outage:{outage.pk}:published:v1")
    assert published.state == Fanout.State.STOPPED and published.audience_size == 3
    told = sorted(p.pk for p in city["people"][:3])
    assert _inbox("outage_planned") == told  # only the first chunk was told it
    # Everyone told is told it is off; nobody who never heard of it. The snapshot stays as far
    # as the stream had written it: the meters whose people were told.
    assert _inbox("outage_cancelled") == told
    assert outage.affected.count() == 3
    assert OutageNotice.objects.count() == 3
    assert set(OutageNotice.objects.values_list("status", flat=True)) == {"dropped"}
    assert fcm_server.duplicates == 0


def test_rescheduling_mid_stream_supersedes_the_first_notice(
    city, fcm_server, django_capture_on_commit_callbacks
):
    outage = city["outage"]
    queued = _published(outage, django_capture_on_commit_callbacks)

    moved = PUBLISH + timedelta(hours=1)
    with time_machine.travel(moved, tick=False), django_capture_on_commit_callbacks(execute=True):
        services.outage_reschedule(
            outage_id=outage.pk,
            planned_start=START + timedelta(hours=2),
            planned_end=START + timedelta(hours=6),
            now=moved,
        )
    _run(queued, django_capture_on_commit_callbacks)

    first = Fanout.objects.get(dedupe_key=f"outage:{outage.pk}:published:v1")
    second = Fanout.objects.get(dedupe_key=f"outage:{outage.pk}:rescheduled:v2")
    assert first.state == Fanout.State.STOPPED
    assert second.state == Fanout.State.WRITTEN and second.audience_size == 10
    assert len(_inbox("outage_planned")) == 3
    # The new schedule goes to every meter's people: the reschedule wrote the snapshot's rest.
    assert _inbox("outage_rescheduled") == sorted(p.pk for p in city["people"])
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
    _published(outage, django_capture_on_commit_callbacks)  # its queued work is lost

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
    assert _inbox("outage_planned") == sorted(p.pk for p in city["people"])
    # The first chunk's pushes were lost with the worker: the notifications sweeper's to send.
    assert len(fcm_server.accepted) == 7


def test_each_chunk_writes_its_people_in_one_statement_whatever_its_size(
    city, monkeypatch, django_capture_on_commit_callbacks
):
    def chunk_queries(outage, size: int) -> list[str]:
        monkeypatch.setattr(stream, "NOTICE_STREAM_CHUNK", size)
        _published(outage, django_capture_on_commit_callbacks)
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
    assert _inbox("outage_planned") == sorted(p.pk for p in people)


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
    assert fanout.state == Fanout.State.STOPPED and len(_inbox("outage_planned")) == 3
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
    _run(
        _published(city["outage"], django_capture_on_commit_callbacks),
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
    _run(
        _published(city["outage"], django_capture_on_commit_callbacks),
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
    queued = _published(outage, django_capture_on_commit_callbacks)
    evening = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # 18:00 in Riyadh, the day before

    with time_machine.travel(evening, tick=False), django_capture_on_commit_callbacks(execute=True):
        assert services.outage_reminders_send(now=evening) == 1

    everyone = sorted(p.pk for p in city["people"])
    assert _inbox("outage_reminder") == everyone
    outage.refresh_from_db()
    assert outage.snapshot_through is None and outage.affected.count() == 10
    assert OutageNotice.objects.filter(outage=outage, version=1).count() == 10

    _run(queued, django_capture_on_commit_callbacks)
    assert _inbox("outage_planned") == everyone
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

    queued = _published(outage, django_capture_on_commit_callbacks)

    outage.refresh_from_db()
    assert {a.meter_id for a in outage.affected.all()} == {m.pk for m in meters}
    assert (outage.snapshot_through is None) == (size < CHUNK)
    _run(queued, django_capture_on_commit_callbacks)
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
    _published(outage, django_capture_on_commit_callbacks)  # its queued work is lost

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
    assert len(_inbox("outage_planned")) == 3  # the people are still told a chunk at a time


def test_a_stale_save_of_the_outage_cannot_make_the_stream_write_a_meter_twice(
    city, fcm_server, django_capture_on_commit_callbacks
):
    outage = city["outage"]
    queued = _published(outage, django_capture_on_commit_callbacks)
    stale = Outage.objects.get(pk=outage.pk)
    _run(queued[1:], django_capture_on_commit_callbacks)  # chunks 2, 3 and 4 are written
    stale.save()  # an old copy of the row saved over the stream's cursor: "3 meters written"

    with time_machine.travel(PUBLISH, tick=False), django_capture_on_commit_callbacks(execute=True):
        services.outage_start(outage_id=outage.pk, at=PUBLISH, now=PUBLISH)

    assert sorted(outage.affected.values_list("meter_id", flat=True)) == sorted(
        m.pk for m in city["meters"]
    )
    outage.refresh_from_db()
    assert outage.status == Outage.Status.IN_PROGRESS and outage.snapshot_through is None
