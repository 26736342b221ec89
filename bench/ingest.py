"""Ingest benchmark: one day for 10,000 meters (960,000 readings) through the real HTTP endpoint of a
running server, against a raw COPY of the same readings into a bare one-row-per-reading table.

    DATABASE_URL=postgres://root@127.0.0.1:5432/smartmeter_bench REDIS_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python bench/ingest.py [--meters 10000] [--clients 4] [--batch 500]

Last line: readings_per_s=… raw_copy_per_s=… ratio=… bytes_per_reading=…
"""

from __future__ import annotations

import argparse
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import requests
from _support import bench_utility, raw_connection, running_server, setup_django

BENCH_DAY = date(2026, 1, 15)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument(
        "--clients",
        type=int,
        default=4,
        help="Concurrent HTTP clients (the head-end's connections).",
    )
    parser.add_argument("--batch", type=int, default=500, help="Meters per request.")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes.")
    args = parser.parse_args()

    setup_django()
    from meters.demo import demo_day_values, demo_meters
    from meters.services import service_token_create

    utility = bench_utility(code="bench", name="Bench utility")
    print(f"preparing {args.meters} meters …", flush=True)
    meters = demo_meters(utility=utility, count=args.meters, prefix="BN")[: args.meters]
    _, token = service_token_create(utility=utility, name="bench")
    start = datetime.combine(BENCH_DAY, datetime.min.time(), UTC)
    days = {
        m.serial: demo_day_values(serial=m.serial, utility=utility, day=BENCH_DAY) for m in meters
    }
    readings = sum(len(v) for v in days.values())
    bodies = []
    for offset in range(0, len(meters), args.batch):
        chunk = meters[offset : offset + args.batch]
        bodies.append(
            json.dumps(
                {
                    "batch_id": f"bench-{offset}",
                    "blocks": [
                        {"meter": m.serial, "start": start.isoformat(), "values": days[m.serial]}
                        for m in chunk
                    ],
                }
            ).encode()
        )

    with raw_connection() as conn:
        conn.execute(
            "DELETE FROM meters_meterday WHERE meter_id = ANY(%s)", [[m.pk for m in meters]]
        )
        conn.execute("VACUUM meters_meterday")

    # --- our path: HTTP → parse and check → merge into MeterDay rows ------------------------------
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with running_server(workers=args.workers) as url:
        session_pool = [requests.Session() for _ in range(args.clients)]

        def send(index: int) -> dict:
            response = session_pool[index % args.clients].post(
                f"{url}/api/v1/headend/readings/", data=bodies[index], headers=headers, timeout=300
            )
            response.raise_for_status()
            return response.json()

        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            results = list(pool.map(send, range(len(bodies))))
        ours_seconds = time.perf_counter() - began
    stored = sum(r["stored"] for r in results)
    rejected = sum(r["rejected"] for r in results)
    assert stored == readings and rejected == 0, (stored, readings, rejected)

    # --- baseline: COPY the same readings into a bare row-per-reading table ----------------------
    buffer = io.StringIO()
    for m in meters:
        for slot, wh in enumerate(days[m.serial]):
            buffer.write(f"{m.pk}\t{(start + slot * timedelta(minutes=15)).isoformat()}\t{wh}\t1\n")
    text = buffer.getvalue()
    with raw_connection() as conn:
        conn.execute("DROP TABLE IF EXISTS bench_naive_readings")
        conn.execute(
            "CREATE TABLE bench_naive_readings (id bigserial PRIMARY KEY, meter_id bigint NOT NULL, "
            "ts timestamptz NOT NULL, wh integer NOT NULL, quality smallint NOT NULL)"
        )
        began = time.perf_counter()
        with conn.cursor().copy(
            "COPY bench_naive_readings (meter_id, ts, wh, quality) FROM STDIN"
        ) as copy:
            copy.write(text)
        raw_seconds = time.perf_counter() - began
        conn.execute("VACUUM ANALYZE bench_naive_readings")
        conn.execute("VACUUM ANALYZE meters_meterday")
        naive_bytes = conn.execute(
            "SELECT pg_total_relation_size('bench_naive_readings')"
        ).fetchone()[0]
        # A partitioned table's own size is 0: its partitions hold the rows.
        ours_bytes = conn.execute(
            "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('meters_meterday')"
        ).fetchone()[0]
        ours_rows = conn.execute("SELECT count(*) FROM meters_meterday").fetchone()[0]
        conn.execute("DROP TABLE bench_naive_readings")

    ours_rate, raw_rate = readings / ours_seconds, readings / raw_seconds
    print(
        f"our ingest: {readings} readings in {ours_seconds:.2f} s over {len(bodies)} requests, {args.clients} clients"
    )
    print(f"raw COPY:   {readings} readings in {raw_seconds:.2f} s")
    print(
        f"storage: ours {ours_bytes / (ours_rows * 96):.2f} B/reading (all MeterDay rows, PK included), "
        f"naive {naive_bytes / readings:.1f} B/reading"
    )
    print(
        f"readings_per_s={ours_rate:.0f} raw_copy_per_s={raw_rate:.0f} ratio={ours_rate / raw_rate:.2f} "
        f"bytes_per_reading={ours_bytes / (ours_rows * 96):.2f} naive_bytes_per_reading={naive_bytes / readings:.1f}"
    )


if __name__ == "__main__":
    main()
