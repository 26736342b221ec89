"""A real Celery worker process for the end-to-end tests: it takes the test's queues on the real
broker (every queue named after the test's base queue, most urgent first, as `make run`'s general
worker does), and its output is shown when it did not stop cleanly."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from config.celery import queues_by_priority

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The test database, for a worker process (its own settings would name another)."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@contextmanager
def worker_process(
    *, env: dict, queue: str, hostname: str | None = None, queues: list[str] | None = None
) -> Iterator:
    """A worker on every queue of the base `queue` (CELERY_TASK_DEFAULT_QUEUE), or on `queues`."""
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo",
        "--queues", ",".join(queues or queues_by_priority(queue)), "--without-mingle", "--without-gossip", "--loglevel", "WARNING",
        *(["--hostname", hostname] if hostname else []),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        yield process
    finally:
        process_stop(process, clean=(0, -15))


def process_stop(process: subprocess.Popen, *, clean: tuple[int, ...] = (0, -15, -9)) -> None:
    """Stop a worker a test started (TERM, then KILL after 20 s) and show its output when it did
    not end in one of the `clean` ways (a test that kills a worker on purpose counts -9 clean)."""
    if process.poll() is None:
        process.terminate()
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    if process.returncode not in clean:
        print(output.decode(errors="replace"))
