"""Insight's daily pass at a utility's size: every household's finished local day read once for the
high-usage and sanctioned-load alerts (insight.daily), by real Celery workers from a cold queue;
and, in the same run, the raw baseline: the same day's MeterDay rows read by a bare psycopg cursor.

    DATABASE_URL=postgres://root@127.0.0.1:5432/smartmeter_bench REDIS_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python bench/insight.py [--meters 1000000] [--workers 2]

Builds (or reuses) a Kuwait-like utility of N meters, each its own household, with the day's
readings (two UTC rows a meter, as a local day spans them) and a 32-day baseline a household
already has; one household in 1,000 rises 60 % on the day after two high days, so the pass sends
real alerts. Each run starts the day again (the baselines are reset to the day before).
Last line: accounts_per_s=… seconds=… seconds_per_1m=… raw_rows_per_s=… ratio_to_raw=…
alerts=… expected_alerts=…
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, date, datetime, timedelta

from _support import bench_utility, celery_worker, raw_connection, setup_django

DAY = date(2026, 3, 10)  # the local day the pass reads
NORMAL_WH = 100  # a quarter-hour's use on a normal day: 9.6 kWh a day
HISTORY = 32  # days of baseline already kept
RISING_EVERY = 1000  # one household in this many is on its third high day


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--meters", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes.")
    args = parser.parse_args()

    os.environ.setdefault("CELERY_QUEUE", f"bench-insight-{os.getpid()}")
    setup_django()
    import json

    from django.db.models.functions import Mod

    from accounts.models import AccountLink, ConsumerAccount, User
    from insight.models import InsightPolicy
    from meters.demo import demo_meters
    from notifications.models import Notification

    utility = bench_utility(code=f"bench-insight-{args.meters}", name="Insight bench")
    InsightPolicy.objects.update_or_create(utility=utility, defaults={"day_started": None})
    print(f"preparing {args.meters} households …", flush=True)
    began = time.perf_counter()
    # In lots of 100,000 (each lot builds or reuses its own), to keep each query's lists short.
    for lot in range(0, args.meters, 100_000):
        demo_meters(
            utility=utility,
            count=min(100_000, args.meters - lot),
            prefix=f"I{utility.pk}-{lot // 100_000:02d}-",
        )
    # The rising households' holders, who hear the alert (the others are never told anything).
    rising_ids = list(
        ConsumerAccount.objects.filter(utility=utility)
        .annotate(rest=Mod("id", RISING_EVERY))
        .filter(rest=0)
        .exclude(links__isnull=False)
        .values_list("pk", flat=True)
    )
    users = User.objects.bulk_create(
        [User(username=f"insight-bench-{utility.pk}-{pk}") for pk in rising_ids], batch_size=2000
    )
    AccountLink.objects.bulk_create(
        [
            AccountLink(user=user, account_id=pk, verified_mobile="+96550000000")
            for user, pk in zip(users, rising_ids, strict=True)
        ],
        batch_size=2000,
    )
    zone = utility.zone
    start = datetime.combine(DAY, datetime.min.time(), zone).astimezone(UTC)
    utc_days = sorted({start.date(), (start + timedelta(hours=23, minutes=45)).date()})
    normal = json.dumps([NORMAL_WH * 96] * (HISTORY - 2))
    rising = json.dumps([NORMAL_WH * 96] * (HISTORY - 2) + [NORMAL_WH * 96 * 16 // 10] * 2)
    with raw_connection() as conn:
        # The day's readings, set-based: 100 Wh every quarter-hour, 160 for the rising households.
        for day in utc_days:
            conn.execute(
                """
                INSERT INTO meters_meterday (meter_id, day, values, quality, updated_at)
                SELECT m.id, %s,
                       CASE WHEN m.account_id %% %s = 0 THEN decode(repeat('a0000000', 96), 'hex')
                            ELSE decode(repeat('64000000', 96), 'hex') END,
                       decode(repeat('01', 96), 'hex'), now()
                FROM meters_meter m WHERE m.utility_id = %s
                ON CONFLICT DO NOTHING
                """,
                [day, RISING_EVERY, utility.pk],
            )
        # Each household's baseline as the pass left it yesterday.
        conn.execute(
            """
            INSERT INTO insight_usagebaseline
                (account_id, last_day, daily_wh, streak, alerted_streak_from, peak_demand_w,
                 updated_at)
            SELECT a.id, %s,
                   CASE WHEN a.id %% %s = 0 THEN %s::jsonb ELSE %s::jsonb END,
                   CASE WHEN a.id %% %s = 0 THEN 2 ELSE 0 END, NULL, NULL, now()
            FROM accounts_consumeraccount a WHERE a.utility_id = %s
            ON CONFLICT (account_id) DO UPDATE SET last_day = EXCLUDED.last_day,
                daily_wh = EXCLUDED.daily_wh, streak = EXCLUDED.streak,
                alerted_streak_from = NULL
            """,
            [DAY - timedelta(days=1), RISING_EVERY, rising, normal, RISING_EVERY, utility.pk],
        )
        conn.execute(
            "DELETE FROM notifications_notification WHERE category = 'high_usage' "
            "AND utility_id = %s",
            [utility.pk],
        )
        (households,) = conn.execute(
            "SELECT count(*) FROM accounts_consumeraccount WHERE utility_id = %s", [utility.pk]
        ).fetchone()
        (expected,) = conn.execute(
            "SELECT count(*) FROM accounts_consumeraccount WHERE utility_id = %s AND id %% %s = 0",
            [utility.pk, RISING_EVERY],
        ).fetchone()
        # As autovacuum would have by the next morning after a bulk load.
        for table in (
            "meters_meterday",
            "insight_usagebaseline",
            "meters_meterassignment",
            "accounts_consumeraccount",
            "accounts_accountlink",
        ):
            conn.execute(f"VACUUM ANALYZE {table}")
    print(f"prepared in {time.perf_counter() - began:.0f} s", flush=True)

    # The raw baseline: the same rows read by a bare cursor (what any pass must at least do).
    t0 = time.perf_counter()
    rows = 0
    with raw_connection() as conn, conn.cursor(binary=True) as cursor:
        cursor.execute(
            "SELECT d.meter_id, d.day, d.values, d.quality FROM meters_meterday d "
            "JOIN meters_meter m ON m.id = d.meter_id WHERE m.utility_id = %s AND d.day = ANY(%s)",
            [utility.pk, utc_days],
        )
        while batch := cursor.fetchmany(20_000):
            rows += len(batch)
    raw_seconds = time.perf_counter() - t0

    # Our path: the hourly beat's task on a cold queue, its chunks taken by real workers.
    from insight.tasks import insight_chunk

    workers = [
        celery_worker(
            queue=os.environ["CELERY_QUEUE"], hostname=f"insight{n}@%h", env={**os.environ}
        )
        for n in range(args.workers)
    ]
    try:
        time.sleep(3)
        t1 = time.perf_counter()
        InsightPolicy.objects.filter(utility=utility).update(day_started=DAY)
        insight_chunk.delay(utility.pk, DAY.isoformat(), 0)
        with raw_connection() as conn:
            while True:
                (done,) = conn.execute(
                    "SELECT count(*) FROM insight_usagebaseline b JOIN accounts_consumeraccount a "
                    "ON a.id = b.account_id WHERE a.utility_id = %s AND b.last_day = %s",
                    [utility.pk, DAY],
                ).fetchone()
                if done >= households:
                    break
                if time.perf_counter() - t1 > 3600:
                    raise RuntimeError(f"the pass did not finish: {done}/{households}")
                time.sleep(1.0)  # the count reads every baseline: not too often
        seconds = time.perf_counter() - t1
    finally:
        for worker in workers:
            worker.terminate()
    alerts = Notification.objects.filter(utility=utility, category="high_usage").count()
    figures = {
        "households": households,
        "accounts_per_s": round(households / seconds),
        "seconds": round(seconds, 1),
        "seconds_per_1m": round(seconds * 1_000_000 / households, 1),
        "raw_rows_per_s": round(rows / raw_seconds),
        "ratio_to_raw": round(seconds / raw_seconds, 1),
        "alerts": alerts,
        "expected_alerts": expected,
    }
    print(" ".join(f"{key}={value}" for key, value in figures.items()))


if __name__ == "__main__":
    main()
