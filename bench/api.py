"""API benchmark: requests per second, p50 and p99 of the consumer's most frequent reads under 8 and
32 concurrent clients, each against the floor measured in the same run: a bare DRF view behind the
same JWT authentication, on the same gunicorn (the Procfile's workers and threads), which no
endpoint can beat.

    DATABASE_URL=postgres://root@127.0.0.1:5432/smartmeter_bench REDIS_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python bench/api.py [--seconds 30] [--levels 8,32] [--workers N --threads N]

Endpoints: the balance, consumption over 30 days by day, one day by interval, and the 30-day
pattern. The floor view is mounted by this benchmark only (api_floor_settings, api_floor_urls).
Requests go to 127.0.0.1 only, at most --max-requests per endpoint and level, for --seconds each,
in --rounds slices taken in turn (floor, balance, …, floor, balance, …) so that a machine whose
other load changes during the run weighs on every endpoint alike.

Last line: floor_rps_c8=… balance_rps_c8=… balance_p50_ms_c8=… … balance_ratio=… pattern_ratio=…
A ratio is the endpoint's req/s over the floor's at the same level, the worst of the levels.
Goals: balance and consumption at least 0.6, pattern at least 0.5.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from _support import ROOT, bench_utility, percentile, running_server, setup_django

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
DAYS = 62  # of readings: the 30-day pattern reads the 30 days before its period too


def procfile_web_options() -> tuple[int, int]:
    """The workers and threads the Procfile gives gunicorn: what production runs is what we measure."""
    web = next(
        line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:")
    )
    workers = re.search(r"--workers[ =](\d+)", web)
    threads = re.search(r"--threads[ =](\d+)", web)
    return int(workers.group(1)) if workers else 1, int(threads.group(1)) if threads else 1


def prepare() -> tuple[dict[str, str], str]:
    """A prepaid household with two months of readings, four weeks of charges and a top-up, a
    flat tariff, and a consumer linked to it. Returns the paths to load and the bearer token."""
    from accounts.models import AccountLink, User
    from accounts.services import tokens_issue
    from billing.ledger import ledger_post
    from billing.models import BillingPolicy, Tariff, TopUp
    from meters.demo import demo_day_values, demo_meters
    from meters.models import MeterAssignment
    from meters.services import readings_ingest

    utility = bench_utility(code="bench-api", name="Bench utility (API)")
    BillingPolicy.objects.update_or_create(
        utility=utility, defaults={"emergency_credit": Decimal("0.500")}
    )
    Tariff.objects.get_or_create(
        utility=utility,
        payment_mode="prepaid",
        kind=Tariff.Kind.FLAT,
        defaults={
            "name": "Bench flat",
            "valid_from": datetime(2020, 1, 1).date(),
            "flat_rate": Decimal("0.002"),
        },
    )
    meter = demo_meters(utility=utility, count=1, prefix="AB")[0]
    account = meter.account
    zone = utility.zone
    today = datetime.now(zone).date()
    first = today - timedelta(days=DAYS)
    # The tenancy holds every reading, so the reads measured are whole, not masked.
    MeterAssignment.objects.filter(meter=meter).update(
        start=datetime.combine(first - timedelta(days=1), datetime.min.time(), UTC)
    )
    print(f"loading {DAYS} days of readings, four weeks of charges …", flush=True)
    for n in range(DAYS):  # UTC days up to yesterday's
        day = first + timedelta(days=n)
        start = datetime.combine(day, datetime.min.time(), UTC)
        values = demo_day_values(serial=meter.serial, utility=utility, day=day)
        readings_ingest(
            utility=utility,
            blocks=[{"meter": meter.serial, "start": start.isoformat(), "values": values}],
            source="bench",
        )
    for back in range(1, 29):
        day = today - timedelta(days=back)
        local = datetime.combine(day, datetime.min.time(), zone)
        charge = Decimal("0.650") if day.weekday() in utility.weekend_days else Decimal("0.420")
        ledger_post(
            account=account,
            kind="energy_charge",
            amount=-charge,
            key=f"bench-api-{account.pk}-{day}",
            description="Energy",
            period_start=local,
            period_end=local + timedelta(days=1),
        )
    paid_at = datetime.combine(today - timedelta(days=3), datetime.min.time(), zone)
    topup, created = TopUp.objects.get_or_create(
        account=account,
        gateway="bench",
        gateway_reference=f"bench-api-{today}",
        defaults={
            "amount": Decimal("25.000"),
            "currency": utility.currency,
            "channel": TopUp.Channel.APP,
            "status": TopUp.Status.SUCCEEDED,
            "created_at": paid_at,
            "paid_at": paid_at,
        },
    )
    if created:
        ledger_post(
            account=account,
            kind="topup",
            amount=topup.amount,
            key=f"bench-api-topup-{topup.pk}",
            description="Top-up",
        )
    user, _ = User.objects.get_or_create(username="bench-api")
    AccountLink.objects.get_or_create(
        user=user,
        account=account,
        unlinked_at=None,
        defaults={"verified_mobile": account.registered_mobile},
    )
    month = f"period_from={today - timedelta(days=30)}&period_to={today}"
    paths = {
        "floor": "/bench/floor/",
        "balance": f"/api/v1/accounts/{account.pk}/balance/",
        "consumption_day": f"/api/v1/meters/{meter.pk}/consumption/?{month}&group_by=day",
        "consumption_interval": (
            f"/api/v1/meters/{meter.pk}/consumption/"
            f"?period_from={today - timedelta(days=1)}&period_to={today}&group_by=interval"
        ),
        "pattern": f"/api/v1/meters/{meter.pk}/pattern/?{month}",
    }
    return paths, tokens_issue(user=user).access


class Client:
    """One keep-alive HTTP/1.1 connection: a request's bytes are built once, a response is read by
    its Content-Length. Cheap enough that a few thousand requests a second cost the client little."""

    def __init__(self, port: int, request: bytes) -> None:
        self.port, self.request = port, request
        self.reader = self.writer = None

    async def get(self) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lowered = head.lower()
        at = lowered.find(b"content-length:")
        if at < 0:  # Django's CommonMiddleware always sets it; anything else is not understood here
            raise RuntimeError(f"a response without Content-Length: {head[:200]!r}")
        await self.reader.readexactly(int(head[at + 15 : head.find(b"\r\n", at)]))
        if b"connection: close" in lowered:
            self.writer.close()
            self.reader = self.writer = None
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def load(
    *, port: int, path: str, token: str, clients: int, seconds: float, max_requests: int
) -> tuple[list[float], int, float, float]:
    """`clients` connections sending one request after another for `seconds` or until
    `max_requests` in all. Returns latencies (ms), failures, elapsed seconds, client CPU seconds."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        "Accept: application/json\r\n\r\n"
    ).encode()
    latencies: list[float] = []
    failures = 0
    began, cpu = time.perf_counter(), time.process_time()
    deadline = began + seconds

    async def one(client: Client) -> None:
        nonlocal failures
        while time.perf_counter() < deadline and len(latencies) + failures < max_requests:
            sent = time.perf_counter()
            if await client.get() == 200:
                latencies.append((time.perf_counter() - sent) * 1000)
            else:
                failures += 1
        client.close()

    await asyncio.gather(*(one(Client(port, request)) for _ in range(clients)))
    return latencies, failures, time.perf_counter() - began, time.process_time() - cpu


def main() -> None:
    workers, threads = procfile_web_options()
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30, help="Per endpoint and level.")
    parser.add_argument("--levels", default="8,32", help="Concurrent clients, comma-separated.")
    parser.add_argument("--max-requests", type=int, default=300_000, help="Per endpoint and level.")
    parser.add_argument(
        "--rounds", type=int, default=5, help="Slices of each endpoint's time, taken in turn."
    )
    parser.add_argument(
        "--workers", type=int, default=workers, help="gunicorn workers (Procfile's)."
    )
    parser.add_argument(
        "--threads", type=int, default=threads, help="gunicorn threads (Procfile's)."
    )
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]

    # The token must outlive the run: it is checked by the server, made here.
    os.environ.setdefault("JWT_ACCESS_MINUTES", "240")
    setup_django()
    paths, token = prepare()
    os.environ["DJANGO_SETTINGS_MODULE"] = "api_floor_settings"
    os.environ["PYTHONPATH"] = os.pathsep.join([BENCH_DIR, os.environ.get("PYTHONPATH", "")])
    os.environ["GUNICORN_CMD_ARGS"] = f"--threads {args.threads}"
    print(
        f"gunicorn: {args.workers} workers × {args.threads} threads, {os.cpu_count()} cores; "
        f"{args.seconds:g} s per endpoint and level",
        flush=True,
    )
    results: dict[tuple[str, int], tuple[float, float, float]] = {}
    with running_server(workers=args.workers) as url:
        port = int(url.rsplit(":", 1)[1])
        for name, path in paths.items():  # warm every worker and thread, and check each answers
            latencies, failures, _, _ = asyncio.run(
                load(
                    port=port,
                    path=path,
                    token=token,
                    clients=max(levels),
                    seconds=60,
                    max_requests=4 * max(levels) * args.workers,
                )
            )
            if failures or not latencies:
                raise SystemExit(f"{name}: {path} does not answer 200")
        for clients in levels:
            # Each endpoint's time is cut into rounds taken in turn with the floor's, so that a
            # change in what else the machine runs weighs on all of them alike.
            runs = {name: ([], 0.0, 0.0) for name in paths}
            for _ in range(args.rounds):
                for name, path in paths.items():
                    latencies, failures, elapsed, cpu = asyncio.run(
                        load(
                            port=port,
                            path=path,
                            token=token,
                            clients=clients,
                            seconds=args.seconds / args.rounds,
                            max_requests=args.max_requests // args.rounds,
                        )
                    )
                    if failures:
                        raise SystemExit(f"{name}: {failures} requests failed")
                    done, took, used = runs[name]
                    runs[name] = (done + latencies, took + elapsed, used + cpu)
            for name, (latencies, elapsed, cpu) in runs.items():
                rps = len(latencies) / elapsed
                results[name, clients] = (rps, percentile(latencies, 50), percentile(latencies, 99))
                ratio = rps / results["floor", clients][0]
                print(
                    f"{name:21s} c={clients:<3d} {rps:7.0f} req/s  p50 {results[name, clients][1]:6.2f} ms  "
                    f"p99 {results[name, clients][2]:6.2f} ms  ×floor {ratio:.2f}  "
                    f"client CPU {cpu / elapsed:4.0%}",
                    flush=True,
                )
    figures = []
    for clients in levels:
        for name in paths:
            rps, p50, p99 = results[name, clients]
            figures += [
                f"{name}_rps_c{clients}={rps:.0f}",
                f"{name}_p50_ms_c{clients}={p50:.2f}",
                f"{name}_p99_ms_c{clients}={p99:.2f}",
            ]
    for name in list(paths)[1:]:
        worst = min(results[name, c][0] / results["floor", c][0] for c in levels)
        figures.append(f"{name}_ratio={worst:.2f}")
    print(" ".join(figures))


if __name__ == "__main__":
    main()
