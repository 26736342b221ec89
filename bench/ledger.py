"""Ledger benchmark: 200 concurrent clients top up over HTTP while 10,000 meters' readings are
charged by real Celery workers on Redis, then every balance is checked against the ledger and
against an independent reckoning of what was paid and consumed.

    DATABASE_URL=postgres://root@127.0.0.1:5432/smartmeter_bench REDIS_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python bench/ledger.py [--meters 10000] [--clients 200] [--topups-per-client 5]

Last line: topups_per_s=… charges_per_s=… balance_errors=0
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal

import requests
from _support import bench_utility, celery_worker, raw_connection, running_server, setup_django

RATE = Decimal("0.005")
TOPUP = Decimal("1.250")
DAY = date(2026, 1, 20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--topups-per-client", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes charging.")
    args = parser.parse_args()

    os.environ.setdefault("PAYMENT_WEBHOOK_SECRET", "bench-webhook-secret")
    os.environ["CHARGE_SHARDS"] = str(args.workers * 2)
    os.environ.setdefault("CELERY_QUEUE", f"bench-ledger-{os.getpid()}")
    setup_django()
    from django.db import models

    from accounts.models import AccountLink, User
    from accounts.services import tokens_issue
    from billing.gateway import GATEWAYS
    from billing.models import Balance, ChargedDay, LedgerEntry, Tariff
    from billing.selectors import ledger_check
    from meters.demo import demo_day_values, demo_meters
    from meters.models import MeterDay
    from meters.services import readings_ingest

    # A utility of its own each run: ledgers are append-only, so a run never reuses another's accounts.
    utility = bench_utility(
        code=f"bench-l-{int(time.time())}", name="Ledger bench", min_topup=Decimal("1.000")
    )
    Tariff.objects.get_or_create(
        utility=utility,
        payment_mode="prepaid",
        defaults=dict(name="flat", kind="flat", valid_from=date(2025, 1, 1), flat_rate=RATE),
    )
    print(f"preparing {args.meters} prepaid meters, {args.clients} clients …", flush=True)
    meters = demo_meters(utility=utility, count=args.meters, prefix=f"L{utility.pk}-")[
        : args.meters
    ]
    accounts = [m.account_id for m in meters]
    with raw_connection() as conn:
        conn.execute("DELETE FROM billing_chargecursor")
    start = datetime.combine(DAY, datetime.min.time(), UTC)
    for offset in range(0, len(meters), 2000):
        blocks = [
            {
                "meter": m.serial,
                "start": start.isoformat(),
                "values": demo_day_values(serial=m.serial, utility=utility, day=DAY),
            }
            for m in meters[offset : offset + 2000]
        ]
        readings_ingest(utility=utility, blocks=blocks, source="bench")

    clients = []
    per_client = max(1, len(accounts) // args.clients)
    for n in range(args.clients):
        user, _ = User.objects.get_or_create(username=f"bench-ledger-{utility.pk}-{n}")
        mine = accounts[n * per_client : (n + 1) * per_client] or accounts[:1]
        AccountLink.objects.bulk_create(
            [AccountLink(user=user, account_id=a, verified_mobile="+96550000000") for a in mine],
            ignore_conflicts=True,
        )
        clients.append((tokens_issue(user=user).access, mine))

    workers = [
        celery_worker(queue=os.environ["CELERY_QUEUE"], hostname=f"bench{n}@%h", env={**os.environ})
        for n in range(args.workers)
    ]
    sim = GATEWAYS["simulated"]
    done_topups: list[tuple[int, Decimal]] = []
    failures: list[str] = []
    lock = threading.Lock()
    try:
        with running_server(workers=3) as url:
            barrier = threading.Barrier(args.clients + 1)

            def client(token: str, mine: list[int]) -> None:
                session = requests.Session()
                session.headers["Authorization"] = f"Bearer {token}"
                barrier.wait()
                for k in range(args.topups_per_client):
                    account = mine[k % len(mine)]
                    key = str(uuid.uuid4())
                    try:
                        created = session.post(
                            f"{url}/api/v1/accounts/{account}/topups/",
                            json={"amount": str(TOPUP)},
                            headers={"Idempotency-Key": key},
                            timeout=120,
                        )
                        created.raise_for_status()
                        retry = session.post(
                            f"{url}/api/v1/accounts/{account}/topups/",
                            json={"amount": str(TOPUP)},
                            headers={"Idempotency-Key": key},
                            timeout=120,
                        )  # a client retry
                        assert retry.json() == created.json(), (
                            "an idempotent retry changed its answer"
                        )
                        # The gateway's reference is in the hosted page's address: no database here.
                        reference = created.json()["payment_url"].rstrip("/").rsplit("/", 1)[-1]
                        body = sim.event_body(
                            reference=reference,
                            amount=TOPUP,
                            currency="KWD",
                            succeeded=True,
                        )
                        for _ in range(2):  # the gateway delivers its webhook twice
                            hook = requests.post(
                                f"{url}/api/v1/payments/webhooks/simulated/",
                                data=body,
                                headers={
                                    "Content-Type": "application/json",
                                    "Sim-Signature": sim.sign(body),
                                },
                                timeout=120,
                            )
                            hook.raise_for_status()
                        with lock:
                            done_topups.append((account, TOPUP))
                    except (
                        Exception
                    ) as exc:  # counted and reported: the figures say how many failed
                        with lock:
                            failures.append(f"{type(exc).__name__}: {exc}"[:200])

            threads = [threading.Thread(target=client, args=c) for c in clients]
            for thread in threads:
                thread.start()
            from billing.tasks import charge_readings

            barrier.wait()
            began = time.perf_counter()
            charge_readings.delay()
            for thread in threads:
                thread.join()
            topup_seconds = time.perf_counter() - began
            ids = [m.pk for m in meters]
            total_days = MeterDay.objects.filter(meter_id__in=ids, day=DAY).count()
            while True:
                charged = ChargedDay.objects.filter(
                    meter_id__in=ids, day=DAY, version__gte=1
                ).count()
                if charged >= total_days:
                    break
                if time.perf_counter() - began > 900:
                    raise RuntimeError(f"charging did not finish: {charged}/{total_days}")
                time.sleep(0.2)
            charge_seconds = time.perf_counter() - began
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)

    # --- the check: the ledger against itself, and against an independent reckoning -----------
    consumed = {
        m.account_id: sum(demo_day_values(serial=m.serial, utility=utility, day=DAY))
        for m in meters
    }
    paid: dict[int, Decimal] = {}
    for account, amount in done_topups:
        paid[account] = paid.get(account, Decimal(0)) + amount
    errors = len(ledger_check())
    balances = dict(
        Balance.objects.filter(account_id__in=accounts).values_list("account_id", "amount")
    )
    credits = {}
    for account_id, count in (
        LedgerEntry.objects.filter(account_id__in=accounts, kind="topup")
        .values_list("account_id")
        .annotate(n=models.Count("id"))
    ):
        credits[account_id] = count
    for account in accounts:
        energy = (Decimal(consumed[account]) / 1000 * RATE).quantize(
            Decimal("0.001"), rounding=ROUND_HALF_UP
        )
        expected = paid.get(account, Decimal(0)) - energy
        if balances.get(account) != expected:
            errors += 1
        if credits.get(account, 0) != sum(1 for a, _ in done_topups if a == account):
            errors += 1
    topups = len(done_topups)
    print(
        f"{topups} top-ups ({len(failures)} failed) by {args.clients} clients in {topup_seconds:.1f} s; "
        f"{total_days} meter-days charged in {charge_seconds:.1f} s by {args.workers} workers"
    )
    if failures:
        print("first failures:", failures[:3])
    print(
        f"topups_per_s={topups / topup_seconds:.1f} charges_per_s={total_days / charge_seconds:.1f} "
        f"balance_errors={errors} failed_topups={len(failures)}"
    )


if __name__ == "__main__":
    main()
