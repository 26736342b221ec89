"""Events benchmark: a feeder trip is a storm. The meters of a few feeders each send their power
failure ("last gasp") to the head-end, which forwards them to us over HTTP in bursts; the outage
detector, on a real Celery worker, turns them into one outage per tripped feeder and queues every
affected consumer's notice. In the same run, the raw baseline: the same events COPYed into a bare
table by psycopg, the fastest PostgreSQL takes rows from one client.

    DATABASE_URL=postgres://root@127.0.0.1:5432/smartmeter_bench REDIS_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python bench/events.py [--feeders 10 --tripped 4 --meters-per-feeder 25000]

The grid (one area of --feeders feeders, transformers of 50 meters, an account per meter, one in ten
with a person in the app) is made once and kept; each run clears the last run's events, periods,
outages and notices first. Last line:
    events_per_s=… raw_copy_per_s=… seconds_to_outage=… seconds_to_all_linked=…
    seconds_to_last_notice_queued=… outages=…
    feeders_tripped=… duplicate_notices=… meters_linked=…
events_per_s: events stored per second over HTTP, first request to last answer (--clients at once);
seconds_to_outage: from the last answer to the moment the last tripped feeder's outage was written
(detected, or grown to take in its last meters); seconds_to_all_linked: to the moment every tripped
meter's failure was linked to its outage and no failure was left to look at (polled);
seconds_to_last_notice_queued: from the last answer to the newest notice row written (app inbox and
push queued, or SMS to the registered mobile); goals: ≥ 20,000/s, ≤ 30 s, ≤ 60 s.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import requests
from _support import celery_worker, raw_connection, running_server, setup_django

CODE = "bench-events"
METERS_PER_TRANSFORMER = 50


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeders", type=int, default=10)
    parser.add_argument("--tripped", type=int, default=4, help="feeders that trip")
    parser.add_argument("--meters-per-feeder", type=int, default=25_000)
    parser.add_argument("--batch", type=int, default=10_000, help="events per HTTP request")
    parser.add_argument("--clients", type=int, default=4, help="requests at once")
    parser.add_argument("--server-workers", type=int, default=3)
    parser.add_argument("--timeout", type=int, default=300)
    return parser.parse_args()


def grid_ensure(args):
    """The benchmark's utility and grid, made once (bulk inserts) and kept for later runs."""
    from accounts.models import AccountLink, ConsumerAccount, User, Utility
    from meters.models import Feeder, GridArea, Meter, MeterAssignment, Transformer

    utility, _ = Utility.objects.get_or_create(
        # One utility per grid shape: a run of another shape never meets a half-made grid.
        code=f"{CODE}-{args.feeders}x{args.meters_per_feeder}",
        defaults=dict(
            name="Events bench",
            country="SA",
            timezone="Asia/Riyadh",
            currency="SAR",
            currency_minor_unit=2,
            languages=["ar", "en"],
            default_language="ar",
            weekend_days=[4, 5],
        ),
    )
    area, _ = GridArea.objects.get_or_create(utility=utility, code="A1", defaults={"name": "City"})
    per_feeder = args.meters_per_feeder // METERS_PER_TRANSFORMER
    installed = datetime(2020, 1, 1, tzinfo=UTC)
    for f in range(args.feeders):
        feeder, _ = Feeder.objects.get_or_create(
            area=area, code=f"F{f:03d}", defaults={"name": f"Feeder {f}", "locality": f"Block {f}"}
        )
        if Meter.objects.filter(transformer__feeder=feeder).count() >= args.meters_per_feeder:
            continue
        print(f"making feeder {f}: {args.meters_per_feeder} meters …", flush=True)
        Transformer.objects.bulk_create(
            [Transformer(feeder=feeder, code=f"T{f:03d}-{t:04d}") for t in range(per_feeder)],
            ignore_conflicts=True,
        )
        transformers = list(Transformer.objects.filter(feeder=feeder).order_by("code"))
        prefix = f"EV{utility.pk}-{f:03d}-"
        ConsumerAccount.objects.bulk_create(
            [
                ConsumerAccount(
                    utility=utility,
                    consumer_id=f"{prefix}{n:06d}",
                    registered_mobile=f"+9665{f:03d}{n:05d}"[:13],
                    name=f"Household {n}",
                    premises_address="",
                )
                for n in range(args.meters_per_feeder)
            ],
            batch_size=5000,
            ignore_conflicts=True,
        )
        accounts = dict(
            ConsumerAccount.objects.filter(
                utility=utility, consumer_id__startswith=prefix
            ).values_list("consumer_id", "pk")
        )
        Meter.objects.bulk_create(
            [
                Meter(
                    utility=utility,
                    serial=f"{prefix}{n:06d}",
                    account_id=accounts[f"{prefix}{n:06d}"],
                    rated_capacity_kw=Decimal("15.00"),
                    transformer=transformers[n // METERS_PER_TRANSFORMER % len(transformers)],
                    installed_at=installed,
                )
                for n in range(args.meters_per_feeder)
            ],
            batch_size=5000,
            ignore_conflicts=True,
        )
        meters = Meter.objects.filter(utility=utility, serial__startswith=prefix)
        MeterAssignment.objects.bulk_create(
            [
                MeterAssignment(meter_id=m, account_id=a, start=installed)
                for m, a in meters.values_list("pk", "account_id")
            ],
            batch_size=5000,
            ignore_conflicts=True,
        )
        # One household in ten has someone in the app; the others are told by SMS.
        users = User.objects.bulk_create(
            [
                User(username=f"{prefix}{n:06d}", language=("ar", "en")[n % 2], password="!")
                for n in range(0, args.meters_per_feeder, 10)
            ],
            batch_size=5000,
        )
        AccountLink.objects.bulk_create(
            [
                AccountLink(user=user, account_id=accounts[f"{prefix}{n * 10:06d}"])
                for n, user in enumerate(users)
            ],
            batch_size=5000,
        )
    return utility


def clear(utility) -> None:
    """The last run's events, periods, outages and notices."""
    from meters.models import IngestBatch, MeterEvent, SupplyPeriod
    from notifications.models import Fanout, Notification
    from outages.models import AffectedMeter, Outage, OutageEvent, OutageNotice

    outages = Outage.objects.filter(utility=utility)
    keys = [f"outage:{pk}:" for pk in outages.values_list("pk", flat=True)]
    for key in keys:
        Notification.objects.filter(dedupe_key__startswith=key).delete()
        Fanout.objects.filter(dedupe_key__startswith=key).delete()
    OutageNotice.objects.filter(outage__utility=utility).delete()
    AffectedMeter.objects.filter(outage__utility=utility).delete()
    OutageEvent.objects.filter(outage__utility=utility).delete()
    outages.update(merged_into=None)
    outages.delete()
    SupplyPeriod.objects.filter(utility=utility).delete()
    MeterEvent.objects.filter(utility=utility).delete()
    IngestBatch.objects.filter(utility=utility).delete()


def main() -> None:
    args = parse_args()
    os.environ.setdefault("CELERY_QUEUE", f"bench-events-{os.getpid()}")
    setup_django()
    from django.db.models import Count, Max

    from meters.models import Meter, SupplyPeriod
    from meters.services import service_token_create
    from notifications.models import Notification
    from outages.models import AffectedMeter, Outage, OutageEvent, OutageNotice

    utility = grid_ensure(args)
    clear(utility)
    _, token = service_token_create(utility=utility, name="events bench")
    tripped = list(
        Meter.objects.filter(
            utility=utility,
            transformer__feeder__code__in=[f"F{f:03d}" for f in range(args.tripped)],
        ).values_list("serial", flat=True)
    )
    random.Random(7).shuffle(tripped)
    trip_at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=60)
    events = [
        {
            "meter": serial,
            "kind": "power_off",
            "occurred_at": (trip_at + timedelta(seconds=i % 20)).isoformat(),
        }
        for i, serial in enumerate(tripped)
    ]
    bodies = [
        json.dumps({"batch_id": f"storm-{n}", "events": events[i : i + args.batch]}).encode()
        for n, i in enumerate(range(0, len(events), args.batch))
    ]
    print(f"{len(events)} events of {args.tripped} feeders in {len(bodies)} requests", flush=True)

    worker = celery_worker(
        queue=os.environ["CELERY_QUEUE"], hostname="bench-events@%h", env=dict(os.environ)
    )
    try:
        with running_server(workers=args.server_workers) as url:
            session_headers = {
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
            }

            def send(body: bytes) -> dict:
                response = requests.post(
                    f"{url}/api/v1/headend/events/", data=body, headers=session_headers, timeout=300
                )
                response.raise_for_status()
                return response.json()

            began = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                answers = list(pool.map(send, bodies))
            sent = time.perf_counter()
            sent_wall = datetime.now(UTC)
            stored = sum(a["stored"] for a in answers)
            events_per_s = stored / (sent - began)

            deadline = time.monotonic() + args.timeout
            linked = 0
            while time.monotonic() < deadline:
                linked = AffectedMeter.objects.filter(
                    outage__utility=utility, period__isnull=False
                ).count()
                if (
                    linked >= len(tripped)
                    and not SupplyPeriod.objects.filter(utility=utility, state="new").exists()
                ):
                    break
                time.sleep(0.2)
            seconds_to_all_linked = time.perf_counter() - sent
            outages = Outage.objects.filter(
                utility=utility, source="meters", merged_into__isnull=True
            )
            # When the last tripped feeder's outage was written (detected, or grown to take in its
            # last meters): the moment staff and consumers could see it.
            found = OutageEvent.objects.filter(
                outage__in=outages, action__in=["detected", "grown"]
            ).aggregate(at=Max("at"))["at"]
            seconds_to_outage = (found - sent_wall).total_seconds() if found else float("nan")
            keys = [f"outage:{pk}:" for pk in outages.values_list("pk", flat=True)]
            newest = [
                OutageNotice.objects.filter(outage__in=outages).aggregate(at=Max("created_at"))[
                    "at"
                ]
            ]
            inbox = Notification.objects.none()
            for key in keys:
                inbox = inbox | Notification.objects.filter(dedupe_key__startswith=key)
            newest.append(inbox.aggregate(at=Max("created_at"))["at"])
            newest = [at for at in newest if at is not None]
            seconds_to_notice = (
                (max(newest) - sent_wall).total_seconds() if newest else float("nan")
            )
            duplicates = (
                inbox.values("user_id").annotate(n=Count("pk")).filter(n__gt=1).count()
                + OutageNotice.objects.filter(outage__in=outages)
                .values("account_id")
                .annotate(n=Count("pk"))
                .filter(n__gt=1)
                .count()
            )
            outage_count = outages.count()
    finally:
        worker.terminate()
        worker.wait(timeout=60)

    raw_per_s = raw_copy(events)
    print(
        f"events_per_s={events_per_s:.0f} raw_copy_per_s={raw_per_s:.0f} "
        f"seconds_to_outage={max(seconds_to_outage, 0):.1f} "
        f"seconds_to_all_linked={seconds_to_all_linked:.1f} "
        f"seconds_to_last_notice_queued={max(seconds_to_notice, 0):.1f} outages={outage_count} "
        f"feeders_tripped={args.tripped} duplicate_notices={duplicates} meters_linked={linked}"
    )


def raw_copy(events: list[dict]) -> float:
    """The baseline: the same rows COPYed into a bare table with one unique index, one client."""
    with raw_connection() as conn:
        conn.execute("DROP TABLE IF EXISTS bench_raw_events")
        conn.execute(
            "CREATE TABLE bench_raw_events (meter text, kind text, occurred_at timestamptz, "
            "UNIQUE (meter, kind, occurred_at))"
        )
        buffer = io.StringIO()
        for event in events:
            buffer.write(f"{event['meter']}\t{event['kind']}\t{event['occurred_at']}\n")
        began = time.perf_counter()
        with conn.cursor().copy("COPY bench_raw_events FROM STDIN") as copy:
            copy.write(buffer.getvalue())
        elapsed = time.perf_counter() - began
        conn.execute("DROP TABLE bench_raw_events")
    return len(events) / elapsed


if __name__ == "__main__":
    main()
