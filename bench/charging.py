"""Charging benchmark: N prepaid meters' day charged by real Celery workers from a cold queue,
then the same meters after a second push of 4 new intervals each; and, in the same run, a raw
set-based SQL pass that computes the same postings, for comparison.

    DATABASE_URL=postgres://root@127.0.0.1:5432/smartmeter_bench REDIS_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python bench/charging.py [--meters 100000] [--workers 2]

Each run makes a utility of its own (ledgers are append-only). The first push holds 92 intervals of
one UTC day per meter, the second the last 4. Every account opens with a healthy balance, so the
balance checks after each pass find nothing to do, as for most of a city on most days.
Last line: meter_days_per_s=… incremental_meter_days_per_s=… seconds_for_100k=… ratio_to_raw=…
balance_errors=…
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from _support import bench_utility, celery_worker, raw_connection, setup_django

RATE = Decimal("0.005")
OPENING = Decimal("50.000")
DAY = date(2026, 2, 10)
FIRST_PUSH = 92  # intervals in the first push; the second brings the rest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--meters", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes charging.")
    args = parser.parse_args()

    os.environ["CHARGE_SHARDS"] = str(args.workers * 2)
    os.environ.setdefault("CELERY_QUEUE", f"bench-charging-{os.getpid()}")
    setup_django()
    from django.conf import settings
    from django.utils import timezone

    from billing.models import Balance, ChargeCursor, LedgerEntry, Tariff
    from billing.selectors import ledger_check
    from billing.tasks import charge_readings
    from meters.demo import demo_day_values, demo_meters
    from meters.services import readings_ingest

    utility = bench_utility(code=f"bench-c-{int(time.time())}", name="Charging bench")
    Tariff.objects.create(
        utility=utility,
        name="flat",
        kind="flat",
        payment_mode="prepaid",
        valid_from=date(2025, 1, 1),
        flat_rate=RATE,
    )
    print(f"preparing {args.meters} prepaid meters …", flush=True)
    began = time.perf_counter()
    meters = demo_meters(utility=utility, count=args.meters, prefix=f"C{utility.pk}-")
    accounts = [m.account_id for m in meters]
    now = timezone.now()
    Balance.objects.bulk_create(
        [Balance(account_id=a, amount=OPENING) for a in accounts], batch_size=5000
    )
    LedgerEntry.objects.bulk_create(
        [
            LedgerEntry(
                account_id=a,
                kind="topup",
                amount=OPENING,
                balance_after=OPENING,
                currency="KWD",
                key=f"bench-opening:{a}",
                description="Opening balance",
                created_at=now,
            )
            for a in accounts
        ],
        batch_size=5000,
    )
    values = {m.serial: demo_day_values(serial=m.serial, utility=utility, day=DAY) for m in meters}
    print(f"prepared in {time.perf_counter() - began:.0f} s", flush=True)

    def push(first: int, count: int) -> None:
        start = datetime.combine(DAY, datetime.min.time(), UTC) + timedelta(minutes=15 * first)
        for offset in range(0, len(meters), 2000):
            blocks = [
                {
                    "meter": m.serial,
                    "start": start.isoformat(),
                    "values": values[m.serial][first : first + count],
                }
                for m in meters[offset : offset + 2000]
            ]
            readings_ingest(utility=utility, blocks=blocks, source="bench")

    def wait_charged(version: int, since: float) -> float:
        """Seconds from `since` until every meter-day carries `version` charges."""
        with raw_connection() as conn:
            while True:
                (done,) = conn.execute(
                    "SELECT count(*) FROM billing_chargedday cd JOIN meters_meter m "
                    "ON m.id = cd.meter_id WHERE m.utility_id = %s AND cd.day = %s "
                    "AND cd.version >= %s",
                    [utility.pk, DAY, version],
                ).fetchone()
                if done >= len(meters):
                    return time.perf_counter() - since
                if time.perf_counter() - since > 1800:
                    raise RuntimeError(f"charging did not finish: {done}/{len(meters)}")
                time.sleep(0.1)

    def start_pass() -> float:
        # The shards' cursors stand just before this push, as they do in a running system.
        position = timezone.now() - timedelta(seconds=1)
        for shard in range(settings.CHARGE_SHARDS):
            ChargeCursor.objects.update_or_create(
                name=f"energy:{shard}/{settings.CHARGE_SHARDS}", defaults={"position": position}
            )
        return position

    workers = [
        celery_worker(queue=os.environ["CELERY_QUEUE"], hostname=f"bench{n}@%h", env={**os.environ})
        for n in range(args.workers)
    ]
    try:
        start_pass()
        push(0, FIRST_PUSH)
        t0 = time.perf_counter()
        charge_readings.delay()
        first_seconds = wait_charged(1, t0)
        start_pass()
        push(FIRST_PUSH, 96 - FIRST_PUSH)
        t1 = time.perf_counter()
        charge_readings.delay()
        second_seconds = wait_charged(2, t1)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)

    raw_seconds = raw_pass(utility_id=utility.pk, rate=RATE)

    # --- the check: the ledger against itself, and against an independent reckoning -----------
    errors = len([w for w in ledger_check() if w[0] in set(accounts)])
    balances = dict(
        Balance.objects.filter(account_id__in=accounts).values_list("account_id", "amount")
    )
    for meter in meters:
        energy = (Decimal(sum(values[meter.serial])) / 1000 * RATE).quantize(
            Decimal("0.001"), rounding=ROUND_HALF_UP
        )
        if balances.get(meter.account_id) != OPENING - energy:
            errors += 1
    n = len(meters)
    rate_first, rate_second = n / first_seconds, n / second_seconds
    raw_rate = n / raw_seconds
    print(
        f"{n} meter-days charged in {first_seconds:.1f} s, again after 4 new intervals each in "
        f"{second_seconds:.1f} s, by {args.workers} workers; the raw SQL pass took {raw_seconds:.2f} s"
    )
    print(
        f"meter_days_per_s={rate_first:.0f} incremental_meter_days_per_s={rate_second:.0f} "
        f"seconds_for_100k={100_000 / rate_first:.1f} ratio_to_raw={rate_first / raw_rate:.2f} "
        f"balance_errors={errors}"
    )


def raw_pass(*, utility_id: int, rate: Decimal) -> float:
    """The same postings by one set-based SQL pass: each meter-day's present intervals decoded from
    its packed row and priced, one ledger row per account with its running balance, the balances
    moved. Into scratch tables, so the real ledger is untouched. Returns its seconds."""
    with raw_connection() as conn:
        conn.execute("DROP TABLE IF EXISTS bench_raw_ledger, bench_raw_balance")
        conn.execute(
            "CREATE UNLOGGED TABLE bench_raw_balance AS SELECT b.account_id, b.amount "
            "FROM billing_balance b JOIN accounts_consumeraccount a ON a.id = b.account_id "
            "WHERE a.utility_id = %s",
            [utility_id],
        )
        conn.execute("ALTER TABLE bench_raw_balance ADD PRIMARY KEY (account_id)")
        conn.execute(
            "CREATE UNLOGGED TABLE bench_raw_ledger (account_id bigint, kwh numeric, "
            "amount numeric, balance_after numeric)"
        )
        began = time.perf_counter()
        with conn.transaction():
            conn.execute(
                "WITH energy AS ("
                "  SELECT a.account_id, sum(get_byte(md.values, 4 * i) "
                "    + get_byte(md.values, 4 * i + 1) * 256 "
                "    + get_byte(md.values, 4 * i + 2) * 65536 "
                "    + get_byte(md.values, 4 * i + 3)::bigint * 16777216) AS wh "
                "  FROM meters_meterday md "
                "  JOIN meters_meter m ON m.id = md.meter_id AND m.utility_id = %s "
                "  JOIN meters_meterassignment a ON a.meter_id = md.meter_id AND a.end IS NULL "
                "  CROSS JOIN generate_series(0, 95) AS i "
                "  WHERE md.day = %s AND get_byte(md.quality, i) IN (1, 2) "
                "  GROUP BY a.account_id), "
                "moved AS ("
                "  UPDATE bench_raw_balance b SET amount = b.amount - round(e.wh * %s / 1000, 3) "
                "  FROM energy e WHERE b.account_id = e.account_id "
                "  RETURNING b.account_id, e.wh, round(e.wh * %s / 1000, 3) AS cost, b.amount) "
                "INSERT INTO bench_raw_ledger "
                "SELECT account_id, wh / 1000.0, -cost, amount FROM moved",
                [utility_id, DAY, rate, rate],
            )
        seconds = time.perf_counter() - began
        conn.execute("DROP TABLE bench_raw_ledger, bench_raw_balance")
    return seconds


if __name__ == "__main__":
    main()
