"""RabbitMQ as the broker (docs/brokers.md): a real worker consumes durable quorum queues; a task
survives its worker killed under it and a broker restart while no worker runs, and is done once;
a countdown waits in RabbitMQ's delayed delivery, not in a worker.

Run when CELERY_BROKER_URL is amqp:// (with rabbitmqctl on this host, as CI has); skipped
otherwise, and REQUIRE_AMQP=1 makes that skip a failure."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import kombu.pools
import pytest
from celery import signals
from kombu import Connection

from config.celery import app as celery_app
from config.celery import broker_is_amqp, queue_name, queues_by_priority
from notifications.tasks import send_sms
from tests.e2e.celery_worker import ROOT, database_url, process_stop

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

PHONE = "+96560001111"


# A worker started with `--include tests.core.test_broker` and BROKER_TEST_STARTED set writes each
# task's id and process id to that file as the task starts; with BROKER_TEST_HOLD set as well, the
# first task to start there then waits, long enough to be killed in the middle.
def _task_started(task_id=None, **kwargs) -> None:
    path = Path(os.environ["BROKER_TEST_STARTED"])
    first = not path.read_text()
    with path.open("a") as started:
        started.write(f"{task_id} {os.getpid()}\n")
    if first and os.environ.get("BROKER_TEST_HOLD"):
        time.sleep(600)


if os.environ.get("BROKER_TEST_STARTED"):
    signals.task_prerun.connect(_task_started, weak=False)


def _wait(predicate, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Rabbit:
    """The run's RabbitMQ, seen from outside Celery: rabbitmqctl on the run's vhost (of the node
    rabbitmqctl addresses: the machine's, or RABBITMQ_NODENAME's)."""

    def __init__(self, url: str, binary: str) -> None:
        self.vhost = Connection(url).virtual_host or "/"
        self.binary = binary

    def ctl(self, *args: str) -> str:
        return subprocess.run(
            [self.binary, "-q", *args], check=True, capture_output=True, text=True, timeout=120
        ).stdout

    def queues(self) -> dict[str, dict[str, str]]:
        """name → {type, durable, consumers} of every queue of the vhost."""
        lines = self.ctl("-p", self.vhost, "list_queues", "name", "type", "durable", "consumers")
        rows = [line.split("\t") for line in lines.splitlines()]
        return {
            row[0]: {"type": row[1], "durable": row[2], "consumers": row[3]}
            for row in rows
            if len(row) == 4 and row[0] != "name"
        }

    def restart(self) -> None:
        """The broker stopped and started again: what it had in memory only is gone."""
        self.ctl("stop_app")
        self.ctl("start_app")
        self.ctl("await_startup")


def messages_in(name: str) -> int:
    """The messages ready in a queue (a passive declare: the queue is not made if missing)."""
    with celery_app.connection_for_write() as connection:
        return connection.default_channel.queue_declare(name, passive=True).message_count


def _purge(names: list[str]) -> None:
    with celery_app.connection_for_write() as connection:
        for name in names:
            connection.default_channel.queue_purge(name)


@pytest.fixture
def rabbit(settings, celery_eager):
    binary = shutil.which("rabbitmqctl")
    if not broker_is_amqp(settings.CELERY_BROKER_URL) or binary is None:
        reason = "needs CELERY_BROKER_URL=amqp://... (RabbitMQ) and rabbitmqctl"
        if os.environ.get("REQUIRE_AMQP") == "1":
            pytest.fail(f"REQUIRE_AMQP=1: {reason}")
        pytest.skip(reason)
    celery_app.conf.task_always_eager = False  # the test's tasks go to RabbitMQ
    rabbit = Rabbit(settings.CELERY_BROKER_URL, binary)
    yield rabbit
    _purge(queues_by_priority())  # nothing left for a later run's worker


@pytest.fixture
def start_worker(rabbit, sms_gateway, settings, tmp_path):
    """Starts real workers on every queue of the test's base queue, this module's hooks included;
    SMS go to the fake gateway."""
    settings.SMS_BACKEND = "locmem"  # were a task run in this process, the gateway would miss it
    started = tmp_path / "started"
    started.touch()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "SMS_BACKEND": "http",
        "SMS_HTTP_URL": sms_gateway.url,
        "SMS_HTTP_TOKEN": sms_gateway.token,
        "BROKER_TEST_STARTED": str(started),
    }
    env.pop("BROKER_TEST_HOLD", None)
    processes: list[subprocess.Popen] = []

    def start(*, hold: bool = False) -> subprocess.Popen:
        # The prefork pool, as in production: its main process keeps talking to RabbitMQ (and
        # acknowledges) while a child runs the task. A session of its own: killed as a whole.
        command = [
            sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "prefork",
            "--concurrency", "1", "--queues", ",".join(queues_by_priority()),
            "--without-mingle", "--without-gossip", "--loglevel", "WARNING",
            "--hostname", f"broker-test-{len(processes)}@%h", "--include", "tests.core.test_broker",
        ]  # fmt: skip
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**env, **({"BROKER_TEST_HOLD": "1"} if hold else {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append(process)
        return process

    start.started = started
    yield start
    for process in processes:
        process_stop(process)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # a pool child its killed parent left behind


def _starts(start_worker) -> list[tuple[str, int]]:
    """(task id, process id) of each task start in the workers, in order."""
    rows = [line.split() for line in start_worker.started.read_text().splitlines()]
    return [(task_id, int(pid)) for task_id, pid in rows]


def _all_sent(sms_gateway, count: int) -> list[str]:
    """The texts of the first `count` SMS, then of one more queued behind them once they came:
    what arrives before that last one is all the workers did, so a duplicate would be seen."""
    sms_gateway.wait_for(count, timeout=120)
    send_sms.apply_async(args=[PHONE, "sentinel"])
    return [m["text"] for m in sms_gateway.wait_for(count + 1, timeout=120)]


def test_a_worker_consumes_every_queue_as_a_durable_quorum_queue(rabbit, start_worker):
    names = queues_by_priority()
    start_worker()

    _wait(
        lambda: all(rabbit.queues().get(n, {}).get("consumers") == "1" for n in names),
        timeout=60,
        what="the worker to consume every queue",
    )
    queues = rabbit.queues()
    assert {n: (queues[n]["type"], queues[n]["durable"]) for n in names} == {
        n: ("quorum", "true") for n in names
    }


def test_a_task_whose_worker_is_killed_mid_task_is_done_once_by_another(
    rabbit, start_worker, sms_gateway
):
    send_sms.apply_async(args=[PHONE, "survives a kill"])

    first = start_worker(hold=True)
    _wait(lambda: _starts(start_worker), timeout=60, what="the task to start")
    os.killpg(first.pid, signal.SIGKILL)  # the whole worker, as when its machine dies
    first.wait(timeout=10)
    assert sms_gateway.messages == []

    start_worker()

    assert _all_sent(sms_gateway, 1) == ["survives a kill", "sentinel"]
    (killed, _), (again, _), _sentinel = _starts(start_worker)
    # The same message, taken again: it was not acknowledged before the task was done (acks
    # late), and RabbitMQ handed it back when the dead worker's connection closed.
    assert killed == again
    assert messages_in(queue_name("alerts")) == 0


def test_a_task_whose_pool_process_is_killed_is_handed_back_and_done_once(
    rabbit, start_worker, sms_gateway
):
    send_sms.apply_async(args=[PHONE, "survives a lost process"])

    start_worker(hold=True)
    _wait(lambda: _starts(start_worker), timeout=60, what="the task to start")
    [(_, child)] = _starts(start_worker)
    os.kill(child, signal.SIGKILL)  # the worker lives on; its pool starts a new process

    assert _all_sent(sms_gateway, 1) == ["survives a lost process", "sentinel"]
    (lost, first_child), (again, second_child), _sentinel = _starts(start_worker)
    # The worker rejected the lost task back to the queue (reject on worker lost) rather than
    # recording it failed, and took it again in its new process.
    assert lost == again
    assert first_child != second_child


def test_a_task_queued_with_no_worker_survives_a_broker_restart(rabbit, start_worker, sms_gateway):
    send_sms.apply_async(args=[PHONE, "survives a restart"])
    send_sms.apply_async(args=[PHONE, "delayed across a restart"], countdown=2)
    assert messages_in(queue_name("alerts")) == 1

    rabbit.restart()
    # This process's pooled connections died with the broker: new ones for what follows.
    celery_app.pool.force_close_all()
    kombu.pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    start_worker()

    sent = _all_sent(sms_gateway, 2)
    # The delayed task may come before or after the other; nothing after them but the sentinel.
    assert sorted(sent[:2]) == ["delayed across a restart", "survives a restart"]
    assert sent[2:] == ["sentinel"]


def test_a_countdown_waits_in_the_broker_not_in_a_worker(rabbit, start_worker, sms_gateway):
    # RabbitMQ's delayed delivery (Celery's "native delayed delivery" for quorum queues): the task
    # waits in the broker's celery_delayed_* queues until its time, then reaches its own queue.
    send_sms.apply_async(args=[PHONE, "in ten seconds"], countdown=10)
    delayed = [n for n in rabbit.queues() if n.startswith("celery_delayed_")]

    assert messages_in(queue_name("alerts")) == 0
    assert sum(messages_in(n) for n in delayed) == 1

    # A retry's backoff goes the same way: the gateway is busy once, and asks for a second.
    sms_gateway.fail_next(503, headers={"Retry-After": "1"})
    send_sms.apply_async(args=[PHONE, "retried"])
    start_worker()

    sent = sms_gateway.wait_for(2, timeout=120)
    assert sorted(m["text"] for m in sent) == ["in ten seconds", "retried"]
    assert sms_gateway.requests == 3  # the busy answer, then each SMS once
    assert sum(messages_in(n) for n in delayed) == 0
