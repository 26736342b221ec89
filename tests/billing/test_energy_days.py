"""One energy entry per account per local day, however often the head-end pushes, with the balance
exact after every push (billing.energy_days)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db import connection, connections
from django.utils import timezone

from billing import charging, moves
from billing.energy_days import energy_days_close
from billing.ledger import ledger_post
from billing.models import Balance, LedgerEntry
from billing.selectors import balance_summary, ledger_check
from meters import services as meter_services
from tests.accounts.factories import AccountLinkFactory
from tests.billing.factories import flat_tariff
from tests.billing.test_charging import ingest as push  # one reading every 15 minutes
from tests.core.test_work_plans import explain, index_names, seq_scans, statements_of
from tests.meters.factories import MeterFactory, UtilityFactory

Q = timedelta(minutes=15)
DAY = datetime(2026, 11, 1, 21, tzinfo=UTC)  # Kuwait midnight, 2 November local
NEXT_DAY = DAY + timedelta(days=1)


on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks and query plans are PostgreSQL's"
)


@pytest.fixture
def meter(db):
    meter = MeterFactory()
    flat_tariff(meter.utility, rate="0.005")  # 5 fils a kWh
    return meter


def energy(account):
    return list(
        LedgerEntry.objects.filter(account=account, kind="energy_charge")
        .order_by("id")
        .values_list("amount", "kwh", "period_start")
    )


def held(account):
    row = Balance.objects.get(account=account)
    return row.open_day, row.open_amount, row.open_wh


def test_a_day_of_pushes_is_one_entry_and_the_balance_is_exact_after_each(meter):
    account = meter.account
    for slot in range(96):  # every quarter-hour of 2 November, local, one push each
        push(meter, DAY + slot * Q, [250])
        charging.charges_run()
        # 250 Wh a push at 5 fils a kWh: the balance follows the month's rounded running total.
        expected = -(Decimal(250 * (slot + 1)) / 1000 * Decimal("0.005")).quantize(
            Decimal("0.001"), rounding=ROUND_HALF_UP
        )
        assert Balance.objects.get(account=account).amount == expected
        assert ledger_check() == []
    assert energy(account) == []
    assert held(account) == (DAY.date() + timedelta(days=1), Decimal("-0.120"), 24000)

    assert energy_days_close(now=NEXT_DAY + timedelta(hours=3)) == 1

    ((amount, kwh, start),) = energy(account)
    assert (amount, kwh) == (Decimal("-0.120"), Decimal("24.000"))
    assert start == DAY  # the local day, from its Kuwait midnight
    assert held(account)[1:] == (Decimal(0), 0)
    assert Balance.objects.get(account=account).amount == Decimal("-0.120")
    assert ledger_check() == []
    assert energy_days_close(now=NEXT_DAY + timedelta(hours=4)) == 0  # nothing twice


def test_the_next_local_day_posts_the_last_one_in_the_same_pass(meter):
    account = meter.account
    push(meter, DAY, [1000] * 4)
    charging.charges_run()
    push(meter, NEXT_DAY, [2000])
    charging.charges_run()

    assert energy(account) == [(Decimal("-0.020"), Decimal("4.000"), DAY)]
    assert held(account) == (NEXT_DAY.date() + timedelta(days=1), Decimal("-0.010"), 2000)
    assert Balance.objects.get(account=account).amount == Decimal("-0.030")
    assert ledger_check() == []


def test_a_push_delivered_twice_is_held_once(meter):
    push(meter, DAY, [1000])
    charging.charges_run()
    push(meter, DAY, [1000])  # the head-end sends the same interval again
    charging.charges_apply(keys=[(meter.pk, DAY.date())])  # and a pass runs over it anyway
    charging.charges_run()

    assert held(meter.account)[1:] == (Decimal("-0.005"), 1000)
    assert Balance.objects.get(account=meter.account).amount == Decimal("-0.005")


def test_late_readings_for_a_posted_day_are_posted_at_once(meter):
    account = meter.account
    push(meter, DAY, [1000] * 2)
    charging.charges_run()
    push(meter, NEXT_DAY, [1000])
    charging.charges_run()  # 2 November posted; 3 November open
    push(meter, DAY + 2 * Q, [3000])  # a late interval of 2 November
    charging.charges_run()

    # The held 3 November is posted first: no entry is written while energy is held.
    assert [a for a, _, _ in energy(account)] == [
        Decimal("-0.010"),
        Decimal("-0.005"),
        Decimal("-0.015"),
    ]
    assert held(account)[1] == Decimal(0)
    assert ledger_check() == []


def test_readings_for_a_closed_day_that_come_before_the_next_are_a_further_entry(meter):
    """The close posts the day and leaves it open at zero: a late interval is held again and
    posted with a key of its own."""
    account = meter.account
    push(meter, DAY, [1000])
    charging.charges_run()
    energy_days_close(now=NEXT_DAY + timedelta(hours=3))
    push(meter, DAY + Q, [2000])
    charging.charges_run()
    energy_days_close(now=NEXT_DAY + timedelta(hours=4))

    assert [a for a, _, _ in energy(account)] == [Decimal("-0.005"), Decimal("-0.010")]
    keys = set(LedgerEntry.objects.filter(kind="energy_charge").values_list("key", flat=True))
    assert len(keys) == 2
    assert ledger_check() == []


def test_a_correction_of_the_open_day_is_an_adjustment_at_once(meter):
    account = meter.account
    push(meter, DAY, [1000] * 4)
    charging.charges_run()
    push(meter, DAY, [3000])  # the first interval corrected: +2 kWh
    charging.charges_run()

    adjustment = LedgerEntry.objects.get(account=account, kind="energy_adjustment")
    assert (adjustment.amount, adjustment.kwh) == (Decimal("-0.010"), Decimal("2.000"))
    # The day's energy so far is posted just before it, so each running balance is exact.
    assert energy(account) == [(Decimal("-0.020"), Decimal("4.000"), DAY)]
    assert held(account)[1] == Decimal(0)
    assert Balance.objects.get(account=account).amount == Decimal("-0.030")
    assert ledger_check() == []


def test_a_dst_day_of_100_quarter_hours_is_one_entry(db):
    """New York's 1 November 2026 runs 01:00-02:00 twice: 100 pushes, one entry."""
    meter = MeterFactory(
        utility=UtilityFactory(
            code="us-nyc",
            country="US",
            timezone="America/New_York",
            currency="USD",
            currency_minor_unit=2,
        )
    )
    flat_tariff(meter.utility, rate="0.10")
    zone = meter.utility.zone
    first = datetime(2026, 11, 1, tzinfo=zone).astimezone(UTC)
    count = int((datetime(2026, 11, 2, tzinfo=zone).astimezone(UTC) - first) / Q)
    assert count == 100
    for slot in range(count):
        push(meter, first + slot * Q, [100])
        charging.charges_run()
    energy_days_close(now=datetime(2026, 11, 2, 3, tzinfo=zone))

    ((amount, kwh, start),) = energy(meter.account)
    assert (amount, kwh, start) == (Decimal("-1.00"), Decimal("10.000"), first)
    assert ledger_check() == []


def test_a_move_out_posts_the_open_day_before_its_final_statement(meter):
    account = meter.account
    ledger_post(account=account, kind="topup", amount=Decimal("1.000"), key="t", description="t")
    push(meter, DAY, [1000] * 8)
    charging.charges_run()
    assert energy(account) == []

    moves.move_out(account=account, at=DAY + 8 * Q)

    assert energy(account) == [(Decimal("-0.040"), Decimal("8.000"), DAY)]
    assert held(account)[1:] == (Decimal(0), 0)
    assert ledger_check() == []


def test_the_balance_answer_shows_the_held_day_and_counts_it_in_the_pace(make_api, meter):
    account = meter.account
    # A UTC day: 21 hours of 2 November in Kuwait, then the first 3 of 3 November.
    push(meter, datetime(2026, 11, 2, tzinfo=UTC), [1000] * 96)
    charging.charges_run()  # 2 November posted, 3 November's first 3 hours held
    api = make_api(AccountLinkFactory(account=account).user)

    body = api.get(f"/api/v1/accounts/{account.pk}/balance/").json()

    assert body["balance"] == "-0.480"
    assert body["open_energy_day"] == {"day": "2026-11-03", "amount": "-0.060", "kwh": "12.000"}
    # On 4 November the held 3 November is a complete day: it counts in the daily pace.
    summary = balance_summary(account=account, now=NEXT_DAY + timedelta(days=1, hours=1))
    assert summary["average_daily_spend"] == "0.240"  # (0.420 + 0.060) over two days
    assert energy(account) == [(Decimal("-0.420"), Decimal("84.000"), DAY)]


def test_the_close_works_in_chunks_and_leaves_today_open(db):
    meters = [MeterFactory() for _ in range(5)]
    flat_tariff(meters[0].utility, rate="0.005")
    for meter in meters:
        push(meter, DAY, [1000])
    push(meters[0], NEXT_DAY, [1000])  # its 3 November is open
    charging.charges_run()

    assert energy_days_close(now=NEXT_DAY + timedelta(hours=3), chunk=2) == 4

    assert LedgerEntry.objects.filter(kind="energy_charge").count() == 5
    assert held(meters[0].account)[1] == Decimal("-0.005")
    assert ledger_check() == []


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_a_top_up_racing_charging_passes_leaves_the_exact_balance():
    meter = MeterFactory()
    flat_tariff(meter.utility, rate="0.005")
    for slot in range(8):
        push(meter, DAY + slot * Q, [1000])
    errors = []

    def run(work):
        try:
            work()
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    jobs = [
        lambda: ledger_post(
            account=meter.account, kind="topup", amount=Decimal("1.000"), key="t1", description="t"
        ),
        lambda: charging.charges_apply(keys=[(meter.pk, DAY.date())]),
        lambda: charging.charges_apply(keys=[(meter.pk, DAY.date())]),
        lambda: energy_days_close(now=NEXT_DAY + timedelta(hours=3)),
    ]
    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert Balance.objects.get(account=meter.account).amount == Decimal("0.960")
    assert ledger_check() == []
    energy_days_close(now=NEXT_DAY + timedelta(hours=4))
    assert sum(a for a, _, _ in energy(meter.account)) == Decimal("-0.040")


@on_postgresql
def test_the_close_reads_only_the_held_days_by_index(meter):
    """20,000 balances holding nothing, a few holding yesterday: the close reads the few."""
    from accounts.models import ConsumerAccount

    accounts = ConsumerAccount.objects.bulk_create(
        ConsumerAccount(
            utility=meter.utility, consumer_id=f"9{n:07d}", registered_mobile="+96566000000"
        )
        for n in range(20_000)
    )
    Balance.objects.bulk_create(Balance(account=a, amount=Decimal("1.000")) for a in accounts)
    push(meter, DAY, [1000])
    charging.charges_run()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE billing_balance")
        cursor.execute("ANALYZE accounts_consumeraccount")
    queries = statements_of(
        lambda: energy_days_close(now=NEXT_DAY + timedelta(hours=3)), "billing_balance"
    )
    plan = explain(queries[0])

    assert not seq_scans(plan, "billing_balance"), plan
    assert "balance_open_day" in index_names(plan), plan
    assert held(meter.account)[1] == Decimal(0)


def _updates() -> dict[str, tuple[int, int]]:
    """This transaction's (updated, HOT-updated) row counts per table, partitions summed."""
    found = {}
    with connection.cursor() as cursor:
        for table in ("billing_balance", "billing_chargemonth", "billing_chargedday"):
            cursor.execute(
                "SELECT coalesce(sum(pg_stat_get_xact_tuples_updated(c.oid)), 0), "
                "coalesce(sum(pg_stat_get_xact_tuples_hot_updated(c.oid)), 0) FROM pg_class c "
                "WHERE c.oid = to_regclass(%s) "
                "OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass(%s))",
                [table, table],
            )
            found[table] = tuple(int(n) for n in cursor.fetchone())
    return found


@on_postgresql
def test_a_push_rewrites_its_balance_month_and_charged_copy_in_place(meter):
    """No column a push changes is indexed (nor in an index's condition), so each row's new
    version can stay on its page: a HOT update, no index entry, no table growth."""
    push(meter, DAY, [1000])
    charging.charges_run()
    before = _updates()
    for slot in range(1, 9):
        push(meter, DAY + slot * Q, [1000])
        charging.charges_run()
    after = _updates()

    for table in after:
        updated = after[table][0] - before[table][0]
        hot = after[table][1] - before[table][1]
        assert updated >= 8 and hot == updated, (table, updated, hot)
    assert held(meter.account)[1:] == (Decimal("-0.045"), 9000)


def test_a_batch_that_began_first_but_committed_last_is_still_charged(meter):
    """Two head-end batches for one meter-day: the later-stamped one is stored and charged first;
    then the earlier-stamped one commits. The row's change time moves past the charged one, never
    back, so charging sees the second batch's interval too."""
    early = DAY + timedelta(hours=2)
    late = early + timedelta(seconds=30)
    meter_services.readings_ingest(
        utility=meter.utility,
        readings=[({"i": 0}, meter.serial, DAY.isoformat(), 1000, "actual")],
        source="test",
        now=late,
    )
    charging.charges_run()
    meter_services.readings_ingest(
        utility=meter.utility,
        readings=[({"i": 0}, meter.serial, (DAY + Q).isoformat(), 3000, "actual")],
        source="test",
        now=early,
    )
    charging.charges_run()

    assert Balance.objects.get(account=meter.account).amount == Decimal("-0.020")
    assert held(meter.account)[2] == 4000


def test_before_a_disconnection_is_sent_the_held_energy_becomes_its_entry(meter):
    """billing.relay posts the held day before a disconnection's check and send, so the ledger's
    running balance at the send (what the wrongful-disconnection standard reads) is the balance
    that was checked, not one missing today's energy."""
    from billing import relay
    from billing.energy_days import energy_days_flush

    push(meter, DAY, [1000] * 8)
    charging.charges_run()
    assert relay._balance_at(account_id=meter.account_id, at=timezone.now()) == 0  # not yet

    assert energy_days_flush(account_id=meter.account_id) is True

    balance = Balance.objects.get(account=meter.account).amount
    assert balance == Decimal("-0.040")
    assert relay._balance_at(account_id=meter.account_id, at=timezone.now()) == balance
    assert held(meter.account) == (DAY.date() + timedelta(days=1), Decimal(0), 0)
    assert energy_days_flush(account_id=meter.account_id) is False  # nothing held: no entry
    push(meter, DAY + 8 * Q, [1000])  # the day goes on, held again
    charging.charges_run()
    assert held(meter.account)[1] == Decimal("-0.005")
    assert ledger_check() == []
