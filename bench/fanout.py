"""Benchmark: an outage notice to N consumers with M devices, through real Celery workers on
PostgreSQL + Redis, against the fake FCM server; and a bare HTTP client sending the same number of
requests to the same server, over as many connections as the workers have, for comparison.

    createdb -h 127.0.0.1 -U root sm_notif_bench
    DATABASE_URL=postgres://root@127.0.0.1:5432/sm_notif_bench REDIS_URL=redis://127.0.0.1:6379/12 \
        .venv/bin/python bench/fanout.py [--consumers 100000 --devices 150000 --workers 2]

The fake answers each request after --fcm-latency-ms (40 by default: FCM answers in tens of
milliseconds). Before issue 15 the fake took 43 ms or more by accident (Nagle's algorithm holding
each answer's body for the client's 40 ms delayed ACK, and a sum over every delivery per request), so
raw_http_per_s was 1,210-1,430 where it is now about 1,550: ratios from before are not comparable.
With latency, the figures say how well each path keeps its connections busy; with
--fcm-latency-ms 0, how much CPU each spends per push.

With --kill-after N the first worker is killed (SIGKILL) once the fake has accepted N pushes, and
this script runs the sweeper (as beat would) with a lease of a few seconds, until every alert is
finished; `duplicates` then counts the messages FCM accepted twice because the dead worker had sent
them without writing them down:
    … bench/fanout.py --consumers 3000 --devices 3000 --kill-after 1000

Consumers and devices are created once (usernames `bench-…`) and reused by later runs; each run's
alerts are deleted at the end. The last line is:
    pushes_per_s=… raw_http_per_s=… ratio=… seconds_to_last_push=… duplicates=… lost=…
    fcm_latency_ms=… worker_cpu_ms_per_push=…
pushes_per_s counts pushes accepted by the server from its first to its last; seconds_to_last_push
runs from the call to fanout_create (inbox rows included) to the last push; worker_cpu_ms_per_push is
the CPU time the workers used meanwhile (both threads: the task's and the sending loop's), per push.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
ACCESS_TOKEN = "bench-access-token"
KILL_LEASE_SECONDS = 5

from _support import celery_worker  # noqa: E402  (bench/ is on sys.path when run as a script)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--consumers", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=150_000)
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--concurrency", type=int, default=32, help="FCM requests per worker")
    parser.add_argument("--batch", type=int, default=500, help="alerts per push task")
    parser.add_argument("--timeout", type=int, default=1800)
    parser.add_argument("--fcm-latency-ms", type=float, default=40, help="the fake's answer time")
    parser.add_argument(
        "--kill-after",
        type=int,
        default=0,
        help="SIGKILL the first worker once the fake has accepted this many pushes; the sweeper "
        "(run here, with a short lease) sends again what it had claimed",
    )
    return parser.parse_args()


def start_fake(latency_ms: float) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.fcm",
            "--access-token",
            ACCESS_TOKEN,
            "--delay-ms",
            str(latency_ms),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    return process, process.stdout.readline().strip()


def cpu_seconds(processes: list[subprocess.Popen]) -> float:
    """CPU time (user + system) the processes have used so far, from /proc (Linux)."""
    ticks = 0
    for process in processes:
        if process.poll() is not None:
            continue
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def stats(base_url: str) -> dict:
    host = base_url.removeprefix("http://")
    conn = http.client.HTTPConnection(host, timeout=10)
    conn.request("GET", "/_stats")
    body = json.loads(conn.getresponse().read())
    conn.close()
    return body


def reset(base_url: str) -> None:
    conn = http.client.HTTPConnection(base_url.removeprefix("http://"), timeout=10)
    conn.request("POST", "/_reset", body=b"{}", headers={"Content-Type": "application/json"})
    conn.getresponse().read()
    conn.close()


def ensure_audience(consumers: int, devices: int) -> list[int]:
    from accounts.models import User
    from notifications.models import Device

    have = User.objects.filter(username__startswith="bench-").count()
    if have < consumers:
        languages = ("ar", "en", "hi")
        User.objects.bulk_create(
            [
                User(username=f"bench-{n:07d}", language=languages[n % 3], password="!")
                for n in range(have, consumers)
            ],
            batch_size=5000,
            ignore_conflicts=True,
        )
    user_ids = list(
        User.objects.filter(username__startswith="bench-")
        .order_by("username")
        .values_list("pk", flat=True)[:consumers]
    )
    Device.objects.filter(token__startswith="bench-").exclude(user_id__in=user_ids).delete()
    have_devices = Device.objects.filter(token__startswith="bench-").count()
    if have_devices != devices:
        Device.objects.filter(token__startswith="bench-").delete()
        Device.objects.bulk_create(
            [
                Device(
                    user_id=user_ids[n % len(user_ids)],
                    token=f"bench-{n:07d}-" + "t" * 150,
                    platform="android" if n % 2 else "ios",
                )
                for n in range(devices)
            ],
            batch_size=5000,
        )
    return user_ids


def raw_http(base_url: str, count: int, threads: int) -> float:
    """The same number of requests, as a bare keep-alive HTTP client sends them."""
    host = base_url.removeprefix("http://")
    path = "/v1/projects/bench/messages:send"
    counter = iter(range(count))
    lock = threading.Lock()

    def run() -> None:
        conn = http.client.HTTPConnection(host, timeout=30)
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                break
            body = json.dumps(
                {
                    "message": {
                        "token": f"bench-{n:07d}-" + "t" * 150,
                        "notification": {"title": "Power outage", "body": "Salmiya, block 4"},
                        "data": {"type": "outage_unplanned", "notification_id": str(n)},
                        "android": {"collapse_key": f"n{n}", "priority": "high"},
                    }
                }
            ).encode()
            conn.request(
                "POST",
                path,
                body=body,
                headers={
                    "Authorization": f"Bearer {ACCESS_TOKEN}",
                    "Content-Type": "application/json",
                },
            )
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
        conn.close()

    started = time.monotonic()
    pool = [threading.Thread(target=run) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return count / (time.monotonic() - started)


def start_workers(args, base_url: str, queue: str) -> list[subprocess.Popen]:
    env = {
        **os.environ,
        "CELERY_QUEUE": queue,
        "FCM_ENDPOINT": base_url + "/v1/projects/{0}/messages:send",
        "FCM_ACCESS_TOKEN": ACCESS_TOKEN,
        "FCM_PROJECT_ID": "bench",
        "FCM_MAX_CONCURRENCY": str(args.concurrency),
        "NOTIFY_BATCH_SIZE": str(args.batch),
        "LOG_LEVEL": "WARNING",
    }
    return [
        celery_worker(queue=queue, hostname=f"bench-{n}-{os.getpid()}@%h", env=env)
        for n in range(args.workers)
    ]


def main() -> None:
    args = parse_args()
    if not (
        os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL")
    ):
        sys.exit("Set DATABASE_URL (PostgreSQL) and REDIS_URL: the benchmark runs on both.")
    queue = f"bench-{os.getpid()}"
    os.environ["CELERY_QUEUE"] = queue
    if args.kill_after:
        # A dead worker's claims are taken back after the lease; keep the wait short.
        os.environ["NOTIFY_CLAIM_LEASE_SECONDS"] = str(KILL_LEASE_SECONDS)
        os.environ["NOTIFY_SWEEP_GRACE_SECONDS"] = str(KILL_LEASE_SECONDS)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction

    from notifications.delivery import notifications_sweep
    from notifications.models import Fanout, Notification
    from notifications.services import fanout_create

    call_command("migrate", verbosity=0)
    print(f"audience: {args.consumers} consumers, {args.devices} devices", flush=True)
    user_ids = ensure_audience(args.consumers, args.devices)

    fake, base_url = start_fake(args.fcm_latency_ms)
    workers: list[subprocess.Popen] = []
    key = f"bench:outage:{int(time.time())}"
    try:
        threads = args.workers * args.concurrency
        raw_per_s = raw_http(base_url, args.devices, threads)
        print(f"raw http: {raw_per_s:.0f} requests/s with {threads} connections", flush=True)
        reset(base_url)

        workers = start_workers(args, base_url, queue)
        time.sleep(3)  # let the workers connect before the clock starts
        cpu_at_start = cpu_seconds(workers)
        started = time.monotonic()
        with transaction.atomic():
            fanout, _ = fanout_create(
                user_ids=user_ids,
                category="outage_unplanned",
                dedupe_key=key,
                context={"area": "Salmiya, block 4", "outage_id": 1},
            )
        print(f"inbox rows written in {time.monotonic() - started:.1f}s", flush=True)
        deadline = started + args.timeout
        killed_at, dead_cpu = None, 0.0
        while time.monotonic() < deadline:
            current = stats(base_url)
            # After a kill, wait for the rows too: the dead worker's sent-but-unrecorded pushes go
            # again (the duplicates measured) only once the sweeper takes its claims back.
            if current["distinct"] >= args.devices and not (
                killed_at is not None
                and Notification.objects.filter(
                    fanout=fanout, push_status__in=["pending", "sending"]
                ).exists()
            ):
                break
            if args.kill_after and killed_at is None and current["accepted"] >= args.kill_after:
                dead_cpu = cpu_seconds(workers[:1])
                workers[0].send_signal(signal.SIGKILL)
                workers[0].wait()
                killed_at = current["accepted"]
                print(f"killed a worker after {killed_at} pushes", flush=True)
            if killed_at is not None:
                notifications_sweep()  # beat's job: the dead worker's claims, once the lease ends
            time.sleep(0.2 if args.kill_after else 1)
        if args.kill_after and killed_at is None:
            print("the fan-out finished before the worker was killed", flush=True)
        unfinished = Notification.objects.filter(
            fanout=fanout, push_status__in=["pending", "sending"]
        ).count()
        current = stats(base_url)
        worker_cpu = cpu_seconds(workers) + dead_cpu - cpu_at_start
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        fake.terminate()
        fake.wait(timeout=10)

    Notification.objects.filter(fanout__dedupe_key=key).delete()
    Fanout.objects.filter(dedupe_key=key).delete()

    window = max((current["last_at"] or 0) - (current["first_at"] or 0), 1e-9)
    pushes_per_s = current["accepted"] / window
    to_last = (current["last_at"] or time.monotonic()) - started
    lost = args.devices - current["distinct"]
    print(
        f"accepted={current['accepted']} distinct={current['distinct']} unfinished_rows={unfinished} "
        f"end_to_end_per_s={current['distinct'] / to_last:.0f}",
        flush=True,
    )
    print(
        f"pushes_per_s={pushes_per_s:.0f} raw_http_per_s={raw_per_s:.0f} "
        f"ratio={pushes_per_s / raw_per_s:.2f} seconds_to_last_push={to_last:.1f} "
        f"duplicates={current['duplicates']} lost={lost} fcm_latency_ms={args.fcm_latency_ms:g} "
        f"worker_cpu_ms_per_push={1000 * worker_cpu / max(current['accepted'], 1):.2f}"
    )


if __name__ == "__main__":
    main()
