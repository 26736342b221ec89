"""Periodic work is found by index, not by scan (issue 19). Each family of queries is EXPLAINed on
PostgreSQL over a table holding a long history beside a few rows of work, ANALYZEd so that the
planner costs it as it would at a million meters: the plan reads the work through its index and
has no sequential scan of the big table (an empty partition, which holds nothing to read, aside)."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import AccountLink, ConsumerAccount, User
from billing import bills, charging, relay
from billing.models import Balance, Bill, ChargeCursor, RelayCommand
from meters.models import Meter, MeterAssignment, MeterDay, SupplyPeriod
from meters.selectors import meters_not_reporting_q
from notifications import delivery
from notifications.models import Notification
from outages.detection import outages_detect_sweep
from outages.models import AffectedMeter, Outage
from outages.selectors import outage_user_ids
from outages.standards import reconnections_recent
from tests.accounts.factories import ConsumerAccountFactory, UserFactory, UtilityFactory
from tests.billing.factories import policy

HISTORY = 20_000


@pytest.fixture
def postgresql(db):
    if connection.vendor != "postgresql":
        pytest.skip("query plans are PostgreSQL's")


# --- Reading plans -------------------------------------------------------------------------


def nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def explain(sql: str) -> dict:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql)
        out = cursor.fetchone()[0]
    return (json.loads(out) if isinstance(out, str) else out)[0]["Plan"]


def plan_of(queryset) -> dict:
    return json.loads(queryset.explain(format="json"))[0]["Plan"]


def index_names(plan: dict) -> set[str]:
    return {node["Index Name"] for node in nodes(plan) if "Index Name" in node}


def _of(relation: str, table: str) -> bool:
    """The table itself, or one of its partitions (meters_meterday_p2026_12)."""
    return relation == table or relation.startswith(table + "_")


def seq_scans(plan: dict, table: str) -> list[str]:
    """Sequential scans of `table`, or of a partition of it that holds rows: ANALYZE counted
    none in an empty one (its pages may still be there, left by rolled-back tests)."""
    found = []
    for node in nodes(plan):
        relation = node.get("Relation Name")
        if node["Node Type"] == "Seq Scan" and relation and _of(relation, table):
            with connection.cursor() as cursor:
                cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [relation])
                if cursor.fetchone()[0] != 0:
                    found.append(relation)
    return found


def statements_of(fn, table: str) -> list[str]:
    """The SELECTs and UPDATEs `fn` sends whose main table is `table` (or a partition of it)."""
    with CaptureQueriesContext(connection) as captured:
        fn()
    found = []
    for query in captured.captured_queries:
        sql = query["sql"]
        head = sql.lstrip()[:6].upper()
        if head == "UPDATE":
            target = sql.split()[1]
        elif head == "SELECT" and " FROM " in sql:
            target = sql.split(" FROM ", 1)[1].split()[0]
        else:
            continue
        if _of(target.strip('"'), table):
            found.append(sql)
    assert found, f"no statement of {table} was sent"
    return found


def analyze(*tables: str) -> None:
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"ANALYZE {table}")


def meters_bulk(utility, count: int, prefix: str, **fields) -> list[Meter]:
    return Meter.objects.bulk_create(
        Meter(
            utility=utility,
            serial=f"{prefix}{n:07d}",
            rated_capacity_kw=Decimal("15.00"),
            installed_at=timezone.now() - timedelta(days=400),
            **fields,
        )
        for n in range(count)
    )


# --- Relay commands ------------------------------------------------------------------------


def test_relay_commands_due_are_read_by_their_status_index(postgresql):
    utility = UtilityFactory()
    account = ConsumerAccountFactory(utility=utility)
    meters = meters_bulk(utility, 4, "RLY", account=account)
    now = timezone.now()
    done = [
        RelayCommand(
            meter=meters[0],
            account=account,
            action=RelayCommand.Action.DISCONNECT if n % 2 else RelayCommand.Action.RECONNECT,
            reason="balance",
            status=RelayCommand.Status.DONE,
            created_at=now - timedelta(minutes=n + 30),
            not_before=now - timedelta(minutes=n + 30),
            sent_at=now - timedelta(minutes=n + 30),
            completed_at=now - timedelta(minutes=n + 29),
        )
        for n in range(HISTORY)
    ]
    due = [
        RelayCommand(
            meter=meter,
            account=account,
            action=RelayCommand.Action.RECONNECT,
            reason="payment",
            not_before=now - timedelta(minutes=1),
        )
        for meter in meters[1:]
    ]
    RelayCommand.objects.bulk_create(done + due)
    analyze("billing_relaycommand")

    queries = statements_of(lambda: relay.relay_due(now=now), "billing_relaycommand")

    for sql in queries:
        plan = explain(sql)
        assert not seq_scans(plan, "billing_relaycommand"), (sql, plan)
    assert "billing_rel_status_00e1f2_idx" in set().union(*map(index_names, map(explain, queries)))
    assert set(relay.relay_due(now=now)) == {str(command.pk) for command in due}


def test_deferred_reconnects_read_only_the_meters_that_are_off(postgresql):
    utility = UtilityFactory()
    meters_bulk(utility, HISTORY, "ON")
    paid = [ConsumerAccountFactory(utility=utility) for _ in range(3)]
    Balance.objects.bulk_create(
        Balance(account=account, amount=Decimal("5.000")) for account in paid
    )
    off = [
        meters_bulk(utility, 1, f"OFF{n}", account=account, relay=Meter.Relay.OPEN)[0]
        for n, account in enumerate(paid)
    ]
    analyze("meters_meter", "billing_balance")

    queries = statements_of(lambda: relay.relay_due(), "meters_meter")

    assert RelayCommand.objects.filter(
        meter__in=off, action=RelayCommand.Action.RECONNECT
    ).count() == len(off)
    for sql in queries:
        plan = explain(sql)
        assert not seq_scans(plan, "meters_meter"), (sql, plan)


def test_recent_reconnections_are_read_by_their_partial_indexes(postgresql):
    utility = UtilityFactory()
    account = ConsumerAccountFactory(utility=utility)
    meter = meters_bulk(utility, 1, "RCN", account=account)[0]
    now = timezone.now()

    def command(n: int, *, action: str, at) -> RelayCommand:
        return RelayCommand(
            meter=meter,
            account=account,
            action=action,
            reason="payment",
            status=RelayCommand.Status.DONE,
            created_at=at,
            not_before=at,
            sent_at=at,
            completed_at=at,
            confirmed_at=at,
            payment_notified_at=at - timedelta(minutes=30),
        )

    old = [
        command(
            n,
            action=RelayCommand.Action.RECONNECT if n % 4 == 0 else RelayCommand.Action.DISCONNECT,
            at=now - timedelta(days=40, minutes=n),
        )
        for n in range(HISTORY)
    ]
    recent = [
        command(n, action=RelayCommand.Action.RECONNECT, at=now - timedelta(days=n + 1))
        for n in range(3)
    ]
    RelayCommand.objects.bulk_create(old + recent)
    analyze("billing_relaycommand")

    commands = reconnections_recent(now=now)
    plan = plan_of(commands)

    assert not seq_scans(plan, "billing_relaycommand"), plan
    assert {"relay_reconnect_completed", "relay_reconnect_confirmed"} <= index_names(plan), plan
    assert {c.pk for c in commands} == {c.pk for c in recent}


# --- Postpaid bills ------------------------------------------------------------------------


def test_bills_overdue_and_due_soon_are_read_by_the_unpaid_index(postgresql):
    utility = UtilityFactory()
    policy(utility, bill_due_reminder_days=3)
    accounts = ConsumerAccount.objects.bulk_create(
        ConsumerAccount(utility=utility, consumer_id=f"B{n:06d}", name="", premises_address="")
        for n in range(200)
    )
    today = timezone.now().astimezone(utility.zone).date()
    first = today.replace(day=1)

    def bill(account, month, *, due, status=Bill.Status.PAID) -> Bill:
        return Bill(
            account=account,
            month=month,
            kwh=Decimal("300"),
            energy_amount=Decimal("30.000"),
            fixed_amount=Decimal("5.000"),
            amount=Decimal("35.000"),
            paid_amount=Decimal("35.000") if status == Bill.Status.PAID else Decimal("0"),
            due_date=due,
            status=status,
        )

    paid = [
        bill(account, first - timedelta(days=31 * (m + 2)), due=today - timedelta(days=31 * m + 40))
        for account in accounts
        for m in range(HISTORY // 200)
    ]
    overdue = [
        bill(
            accounts[n], first - timedelta(days=31), due=today - timedelta(days=2), status="unpaid"
        )
        for n in range(3)
    ]
    soon = [
        bill(accounts[n], first, due=today + timedelta(days=2), status=Bill.Status.UNPAID)
        for n in range(3, 5)
    ]
    Bill.objects.bulk_create(paid + overdue + soon)
    analyze("billing_bill", "accounts_consumeraccount")

    late = bills.overdue_bills(utility=utility, before=today)
    plan = plan_of(late)
    assert not seq_scans(plan, "billing_bill"), plan
    assert "bill_unpaid_due" in index_names(plan), plan
    assert set(late) == set(overdue)

    queries = statements_of(
        lambda: bills.bill_reminders_send(utility=utility, today=today), "billing_bill"
    )
    for sql in queries:
        assert not seq_scans(explain(sql), "billing_bill"), sql
    assert Bill.objects.filter(reminded_at__isnull=False).count() == len(soon)


# --- Charging: the meter-days that changed -------------------------------------------------


def test_pending_meter_days_are_read_by_their_change_time(postgresql):
    utility = UtilityFactory()
    account = ConsumerAccountFactory(utility=utility)
    meters = meters_bulk(utility, 1000, "CHG", account=account)
    MeterAssignment.objects.bulk_create(
        MeterAssignment(meter=m, account=account, start=m.installed_at) for m in meters
    )
    now = timezone.now()
    today = now.date()
    days = [today - timedelta(days=n) for n in range(HISTORY // len(meters))]
    MeterDay.objects.bulk_create(
        MeterDay(
            meter=meter,
            day=day,
            values=bytes(384),
            quality=bytes(96),
            updated_at=now - timedelta(days=(today - day).days, hours=1),
        )
        for meter in meters
        for day in days
    )
    changed = MeterDay.objects.filter(meter__in=meters[:3], day=today)
    changed.update(updated_at=now)
    ChargeCursor.objects.create(
        name=charging._cursor_name(0, 1), position=now - timedelta(minutes=1)
    )
    analyze("meters_meterday", "meters_meter", "meters_meterassignment")

    queries = statements_of(lambda: charging.charges_pending(limit=100), "meters_meterday")

    # Both reads: the keyset after the cursor and the look behind it, each by the changes index
    # (on each partition it is named from its columns), walked in order and stopped at the limit:
    # no sort, under the statement's own setting (charging._pending_rows), whatever the
    # statistics expect.
    assert len(queries) == 2
    with CaptureQueriesContext(connection) as captured:
        charging.charges_pending(limit=100)
    sent = [q["sql"] for q in captured.captured_queries]
    for query in queries:
        assert sent[sent.index(query) - 1] == "SET LOCAL enable_sort = off"
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_sort = off")
    for query in queries:
        plan = explain(query)
        assert not seq_scans(plan, "meters_meterday"), plan
        assert "updated_at_meter_id_day" in " ".join(index_names(plan)), plan
        assert not [n for n in nodes(plan) if n["Node Type"] in ("Sort", "Incremental Sort")], plan
    pending = charging.charges_pending(limit=100)
    assert {(meter_id, day) for meter_id, day, _ in pending} == {(m.pk, today) for m in meters[:3]}


# --- The notification sweeper --------------------------------------------------------------


def test_the_sweeper_reads_only_unfinished_pushes(postgresql):
    user = UserFactory()
    now = timezone.now()
    Notification.objects.bulk_create(
        [
            Notification(
                user=user,
                category="outage_restored",
                dedupe_key=f"old:{n}",
                title="Power is back",
                body="",
                language="en",
                data={},
                created_at=now - timedelta(minutes=n),
                push_status=Notification.PushStatus.SENT,
                next_attempt_at=now - timedelta(minutes=n),
            )
            for n in range(HISTORY)
        ]
        + [
            Notification(
                user=user,
                category="outage_restored",
                dedupe_key=f"new:{n}",
                title="Power is back",
                body="",
                language="en",
                data={},
                push_status=Notification.PushStatus.PENDING,
                next_attempt_at=now - timedelta(minutes=5),
            )
            for n in range(3)
        ]
    )
    analyze("notifications_notification")

    queries = statements_of(delivery.notifications_sweep, "notifications_notification")

    for sql in queries:
        plan = explain(sql)
        assert not seq_scans(plan, "notifications_notification"), (sql, plan)
    assert "push_unfinished" in set().union(*map(index_names, map(explain, queries)))


# --- Outages: the audience of a notice, and the detector's new failures --------------------


def _audience(utility, *, affected: int):
    """HISTORY linked households; an outage of the first `affected` accounts' meters."""
    accounts = ConsumerAccount.objects.bulk_create(
        ConsumerAccount(utility=utility, consumer_id=f"L{n:06d}", name="", premises_address="")
        for n in range(HISTORY)
    )
    users = User.objects.bulk_create(User(username=f"link{n:06d}") for n in range(HISTORY))
    AccountLink.objects.bulk_create(
        AccountLink(user=user, account=account, verified_mobile="+96550000000")
        for user, account in zip(users, accounts, strict=True)
    )
    meters = [
        meters_bulk(utility, 1, f"AUD{n}", account=account)[0]
        for n, account in enumerate(accounts[:affected])
    ]
    now = timezone.now()
    outage = Outage.objects.create(
        utility=utility,
        status=Outage.Status.PUBLISHED,
        reason="Works",
        planned_start=now + timedelta(days=3),
        planned_end=now + timedelta(days=3, hours=4),
    )
    AffectedMeter.objects.bulk_create(
        AffectedMeter(outage=outage, meter=meter, account_id=meter.account_id) for meter in meters
    )
    analyze("accounts_accountlink", "meters_meter", "outages_affectedmeter")
    return outage, users[:affected]


def test_an_outages_audience_is_read_by_the_link_index(postgresql):
    outage, told = _audience(UtilityFactory(), affected=3)

    users = outage_user_ids(outage=outage)
    plan = plan_of(users)

    assert not seq_scans(plan, "accounts_accountlink"), plan
    assert not seq_scans(plan, "meters_meter"), plan
    assert set(users) == {user.pk for user in told}


def test_an_outages_audience_can_be_read_from_the_index_alone(postgresql):
    outage, _ = _audience(UtilityFactory(), affected=3)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    plan = plan_of(outage_user_ids(outage=outage))
    assert "link_alerted_by_account" in index_names(plan), plan


def test_the_detector_reads_only_new_failures(postgresql):
    utility = UtilityFactory()
    meters = meters_bulk(utility, 100, "DET")
    now = timezone.now()
    SupplyPeriod.objects.bulk_create(
        [
            SupplyPeriod(
                utility=utility,
                meter=meters[n % len(meters)],
                off_at=now - timedelta(hours=n + 2),
                on_at=now - timedelta(hours=n + 1),
                state=SupplyPeriod.State.SINGLE,
            )
            for n in range(HISTORY)
        ]
        + [
            SupplyPeriod(
                utility=utility, meter=meters[n], off_at=now - timedelta(minutes=5), state="new"
            )
            for n in range(3)
        ]
    )
    analyze("meters_supplyperiod")

    queries = statements_of(lambda: outages_detect_sweep(now=now), "meters_supplyperiod")

    for sql in queries:
        plan = explain(sql)
        assert not seq_scans(plan, "meters_supplyperiod"), (sql, plan)
    assert "supply_period_new" in set().union(*map(index_names, map(explain, queries)))


# --- The dashboard's meters not reporting --------------------------------------------------


def test_meters_not_reporting_are_read_by_their_last_reading(postgresql):
    utility = UtilityFactory()
    now = timezone.now()
    meters_bulk(utility, HISTORY, "RPT", last_reading_at=now - timedelta(minutes=15))
    silent = meters_bulk(utility, 3, "SIL", last_reading_at=now - timedelta(days=3))
    analyze("meters_meter")

    found = Meter.objects.filter(utility=utility).filter(meters_not_reporting_q(now=now))

    assert set(found) == set(silent)
    plan = plan_of(found)
    assert not seq_scans(plan, "meters_meter"), plan
