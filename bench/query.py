"""Query benchmark: p50 and p99 over the API for a year by day, a month by interval and a 90-day
pattern, each against the raw SQL that computes the same answer from a row-per-reading table.

    DATABASE_URL=postgres://root@127.0.0.1:5432/smartmeter_bench REDIS_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python bench/query.py [--requests 200]

Last line: year_by_day_p50_ms=… pattern_p50_ms=… ratio_to_raw=…
ratio_to_raw is the worst of the three p50 ratios (API ÷ raw SQL).
"""

from __future__ import annotations

import argparse
import io
import time
from datetime import UTC, date, datetime, timedelta

import requests
from _support import bench_utility, percentile, raw_connection, running_server, setup_django

END = date(2026, 11, 1)  # local dates: the year ends here


def timed(call, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


# Each raw query answers what the API answers, as one JSON document, straight from PostgreSQL.
RAW_YEAR_BY_DAY = """
SELECT json_agg(json_build_object('day', day, 'energy_wh', energy, 'present_intervals', present,
                                  'estimated_intervals', estimated) ORDER BY day)
FROM (SELECT (ts AT TIME ZONE %(tz)s)::date AS day, sum(wh) FILTER (WHERE quality IN (1, 2)) AS energy,
             count(*) FILTER (WHERE quality IN (1, 2)) AS present, count(*) FILTER (WHERE quality = 2) AS estimated
      FROM bench_query_naive WHERE meter_id = %(meter)s AND ts >= %(start)s AND ts < %(end)s GROUP BY 1) d
"""
RAW_MONTH_BY_INTERVAL = """
SELECT json_agg(json_build_object('start', ts AT TIME ZONE %(tz)s, 'energy_wh', wh, 'quality', quality) ORDER BY ts)
FROM bench_query_naive WHERE meter_id = %(meter)s AND ts >= %(start)s AND ts < %(end)s
"""
RAW_PATTERN = """
WITH r AS (
  SELECT ts AT TIME ZONE %(tz)s AS local, wh FROM bench_query_naive
  WHERE meter_id = %(meter)s AND ts >= %(start)s AND ts < %(end)s AND quality IN (1, 2)
), days AS (
  SELECT local::date AS day, sum(wh) AS energy, count(*) AS n,
         min(wh) FILTER (WHERE extract(hour FROM local) < 5) AS night_min FROM r GROUP BY 1
)
SELECT (SELECT json_agg(p ORDER BY p.tod) FROM (SELECT local::time AS tod, avg(wh) AS avg_wh, count(*) AS n
                                                FROM r GROUP BY 1) p),
       (SELECT avg(energy) FILTER (WHERE extract(isodow FROM day) NOT IN (5, 6)) FROM days WHERE n = 96),
       (SELECT avg(energy) FILTER (WHERE extract(isodow FROM day) IN (5, 6)) FROM days WHERE n = 96),
       (SELECT json_build_array(local, wh) FROM r ORDER BY wh DESC, local LIMIT 1),
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY night_min) * 4 FROM days),
       (SELECT avg(energy) FROM days WHERE n = 96)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    setup_django()
    from accounts.models import AccountLink, User
    from accounts.services import tokens_issue
    from meters.demo import demo_day_values, demo_meters
    from meters.models import MeterAssignment
    from meters.services import readings_ingest

    utility = bench_utility(code="bench-q", name="Bench utility")
    meter = demo_meters(utility=utility, count=1, prefix="QB")[0]
    first_day = END - timedelta(
        days=456
    )  # a year, plus the 90 days before it for the pattern's comparison
    # The account's tenancy holds every reading: a reader's view is cut to it, and the raw SQL
    # below reads them all.
    MeterAssignment.objects.filter(meter=meter).update(
        start=datetime.combine(first_day - timedelta(days=1), datetime.min.time(), UTC)
    )
    print("loading a year and a quarter of readings …", flush=True)
    buffer = io.StringIO()
    day = first_day
    while day <= END:
        values = demo_day_values(serial=meter.serial, utility=utility, day=day)
        start = datetime.combine(day, datetime.min.time(), UTC)
        readings_ingest(
            utility=utility,
            blocks=[{"meter": meter.serial, "start": start.isoformat(), "values": values}],
            source="bench",
        )
        for slot, wh in enumerate(values):
            buffer.write(
                f"{meter.pk}\t{(start + slot * timedelta(minutes=15)).isoformat()}\t{wh}\t1\n"
            )
        day += timedelta(days=1)
    with raw_connection() as conn:
        conn.execute("DROP TABLE IF EXISTS bench_query_naive")
        conn.execute(
            "CREATE TABLE bench_query_naive (id bigserial PRIMARY KEY, meter_id bigint NOT NULL, "
            "ts timestamptz NOT NULL, wh integer NOT NULL, quality smallint NOT NULL)"
        )
        with conn.cursor().copy(
            "COPY bench_query_naive (meter_id, ts, wh, quality) FROM STDIN"
        ) as copy:
            copy.write(buffer.getvalue())
        conn.execute("CREATE INDEX ON bench_query_naive (meter_id, ts)")
        conn.execute("VACUUM ANALYZE bench_query_naive")
        conn.execute("VACUUM ANALYZE meters_meterday")

    user, _ = User.objects.get_or_create(username="bench-query")
    AccountLink.objects.get_or_create(
        user=user,
        account=meter.account,
        unlinked_at=None,
        defaults={"verified_mobile": meter.account.registered_mobile},
    )
    headers = {"Authorization": f"Bearer {tokens_issue(user=user).access}"}
    zone = utility.zone
    local = lambda d: datetime.combine(d, datetime.min.time(), zone)  # noqa: E731
    cases = {
        "year_by_day": (
            {
                "period_from": (END - timedelta(days=365)).isoformat(),
                "period_to": END.isoformat(),
                "group_by": "day",
            },
            "consumption",
            RAW_YEAR_BY_DAY,
            365,
        ),
        "month_by_interval": (
            {
                "period_from": (END - timedelta(days=31)).isoformat(),
                "period_to": END.isoformat(),
                "group_by": "interval",
            },
            "consumption",
            RAW_MONTH_BY_INTERVAL,
            31,
        ),
        "pattern_90d": (
            {"period_from": (END - timedelta(days=90)).isoformat(), "period_to": END.isoformat()},
            "pattern",
            RAW_PATTERN,
            90,
        ),
    }
    figures = {}
    with running_server(workers=1) as url, raw_connection() as conn:
        session = requests.Session()
        for name, (params, endpoint, sql, days) in cases.items():
            api_url = f"{url}/api/v1/meters/{meter.pk}/{endpoint}/"

            def api_call(api_url=api_url, params=params):
                response = session.get(api_url, params=params, headers=headers, timeout=30)
                response.raise_for_status()
                return response.json()

            sql_params = {
                "tz": str(zone),
                "meter": meter.pk,
                "start": local(END - timedelta(days=days)),
                "end": local(END),
            }

            def raw_call(sql=sql, sql_params=sql_params):
                return conn.execute(sql, sql_params).fetchall()

            api_call(), raw_call()  # warm both
            api_ms, raw_ms = timed(api_call, args.requests), timed(raw_call, args.requests)
            figures[name] = (
                percentile(api_ms, 50),
                percentile(api_ms, 99),
                percentile(raw_ms, 50),
                percentile(raw_ms, 99),
            )
            print(
                f"{name:18s} API p50 {figures[name][0]:7.2f} ms p99 {figures[name][1]:7.2f} ms | "
                f"raw SQL p50 {figures[name][2]:7.2f} ms p99 {figures[name][3]:7.2f} ms"
            )
        conn.execute("DROP TABLE bench_query_naive")
    ratios = {name: f[0] / f[2] for name, f in figures.items()}
    print(
        " ".join(
            [
                f"year_by_day_p50_ms={figures['year_by_day'][0]:.2f}",
                f"year_by_day_p99_ms={figures['year_by_day'][1]:.2f}",
                f"month_by_interval_p50_ms={figures['month_by_interval'][0]:.2f}",
                f"month_by_interval_p99_ms={figures['month_by_interval'][1]:.2f}",
                f"pattern_p50_ms={figures['pattern_90d'][0]:.2f}",
                f"pattern_p99_ms={figures['pattern_90d'][1]:.2f}",
                *(f"{name}_ratio={value:.2f}" for name, value in ratios.items()),
                f"ratio_to_raw={max(ratios.values()):.2f}",
            ]
        )
    )


if __name__ == "__main__":
    main()
