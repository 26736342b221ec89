"""Real Celery workers on a real broker: a worker killed in the middle of a fan-out, and a Redis
outage while an alert is committed. Nothing is lost, and each phone shows each alert once."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import kombu.pools
import pytest
from django.db import transaction

from config.celery import app as celery_app
from notifications.models import Notification
from notifications.services import alert_create, fanout_create
from tests.accounts.factories import UserFactory, UtilityFactory
from tests.e2e.celery_worker import database_url, process_stop
from tests.notifications.factories import DeviceFactory

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
CONTEXT = {"area": "Salmiya, block 4", "outage_id": 41}
CONCURRENCY = 4


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def workers(fcm_server, settings, tmp_path, celery_eager):
    """Starts real workers (the test's own tasks go to the broker, not run in-process)."""
    celery_app.conf.task_always_eager = False
    started: list[subprocess.Popen] = []

    def start(*, beat: bool, redis_url: str | None = None) -> subprocess.Popen:
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "CELERY_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
            "FCM_ENDPOINT": fcm_server.endpoint,
            "FCM_ACCESS_TOKEN": fcm_server.access_token,
            "FCM_PROJECT_ID": "smartmeter-test",
            "FCM_MAX_CONCURRENCY": str(CONCURRENCY),
            "NOTIFY_BATCH_SIZE": "20",
            "NOTIFY_SWEEP_SECONDS": "1",
            "NOTIFY_SWEEP_GRACE_SECONDS": "3",
            "NOTIFY_CLAIM_LEASE_SECONDS": "4",
        }
        if redis_url:
            env["REDIS_URL"] = redis_url
        command = [
            sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo",
            "--queues", settings.CELERY_TASK_DEFAULT_QUEUE, "--without-mingle",
            "--without-gossip", "--loglevel", "WARNING",
            "--hostname", f"notif-test-{len(started)}@%h",
        ]  # fmt: skip
        if beat:
            command += ["--beat", "--schedule", str(tmp_path / f"beat-{len(started)}")]
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process_stop(process)


def test_killing_a_worker_mid_fanout_loses_nothing_and_each_phone_shows_it_once(
    fcm_server, workers
):
    fcm_server.delay_seconds = 0.03  # slow enough to kill the worker half-way
    users = [UserFactory(language=("en", "ar", "hi")[n % 3]) for n in range(120)]
    devices = [DeviceFactory(user=u) for u in users] + [DeviceFactory(user=u) for u in users[::3]]
    tokens = {d.token for d in devices}

    with transaction.atomic():
        fanout, _ = fanout_create(
            user_ids=[u.pk for u in users],
            category="outage_unplanned",
            dedupe_key="outage:41:started",
            context=CONTEXT,
            utility=UtilityFactory(),
        )

    first = workers(beat=False)
    fcm_server.wait_for(lambda f: len(f.accepted) >= 40, timeout=60)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    reached_before_kill = len(fcm_server.accepted)
    assert reached_before_kill < len(tokens), "the worker finished before it was killed"

    workers(beat=True)
    fcm_server.wait_for(lambda f: tokens <= f.displayed.keys(), timeout=120)
    _wait(
        lambda: (
            not Notification.objects.filter(
                fanout=fanout, push_status__in=["pending", "sending"]
            ).exists()
        ),
        timeout=60,
        what="every alert to be finished",
    )

    assert Notification.objects.filter(fanout=fanout, push_status="sent").count() == len(users)
    # Each phone shows the alert once: a resend carries the same tag / collapse id.
    assert {token: len(shown) for token, shown in fcm_server.displayed.items()} == {
        token: 1 for token in tokens
    }
    # Only what had no result written when the worker died can have reached FCM twice: never more
    # than FCM_MAX_CONCURRENCY messages are out unrecorded (notifications/delivery.py).
    assert fcm_server.duplicates <= CONCURRENCY
    print(f"raw FCM duplicates after the kill: {fcm_server.duplicates}")


@pytest.fixture
def throwaway_redis():
    binary = shutil.which("redis-server")
    if not os.environ.get("REDIS_URL"):
        pytest.skip("the Redis outage test needs REDIS_URL (a PostgreSQL + Redis run)")
    if os.environ.get("CELERY_BROKER_URL"):
        # Celery prefers the environment's broker to its settings: _use_broker could not move
        # this process to the throwaway Redis (RabbitMQ's restart: tests/core/test_broker.py).
        pytest.skip("the Redis outage test needs REDIS_URL's Redis as the broker")
    if binary is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [binary, "--port", str(port), "--save", "", "--appendonly", "no"]
    state: dict[str, subprocess.Popen] = {}

    def up() -> None:
        state["process"] = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait(lambda: _answers(port), timeout=10, what="redis-server to start")

    def down() -> None:
        state["process"].kill()
        state["process"].wait(timeout=10)

    up()
    yield f"redis://127.0.0.1:{port}/0", up, down
    if state["process"].poll() is None:
        down()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _use_broker(url: str) -> None:
    """Point this process's Celery at another broker, with fresh connection pools: kombu's global
    pools would otherwise stay closed for every test after this one."""
    celery_app.pool.force_close_all()
    kombu.pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    celery_app.conf.broker_url = url


def test_a_redis_outage_during_an_alert_loses_nothing(
    fcm_server, workers, throwaway_redis, settings
):
    url, redis_up, redis_down = throwaway_redis
    original = celery_app.conf.broker_url
    _use_broker(url)
    try:
        device = DeviceFactory()
        workers(beat=True, redis_url=url)
        redis_down()

        with transaction.atomic():  # commits; the dispatch after commit finds no broker
            notification, _ = alert_create(
                user=device.user,
                category="outage_unplanned",
                dedupe_key="outage:42:started",
                context={"area": "Salmiya", "outage_id": 42},
                utility=UtilityFactory(),
            )
        notification.refresh_from_db()
        assert notification.push_status == "pending"
        assert fcm_server.accepted == []

        redis_up()
        fcm_server.wait_for(lambda f: len(f.accepted) >= 1, timeout=120)
        _wait(
            lambda: Notification.objects.get(pk=notification.pk).push_status == "sent",
            timeout=30,
            what="the alert to be marked sent",
        )
        time.sleep(3)  # a few more sweeps: nothing more may arrive
    finally:
        _use_broker(original)

    assert [m["token"] for m in fcm_server.accepted] == [device.token]
