"""What the benchmarks share: a PostgreSQL database of their own, Django set up on it, a real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE_URL = "postgres://root@127.0.0.1:5432/smartmeter_bench"


def setup_django() -> None:
    """Point Django at the benchmark database (PostgreSQL is required) and migrate it."""
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/9")
    os.environ.setdefault("VAR_DIR", str(ROOT / "var" / "bench"))
    # As `make run` does: a key of the benchmarks' own, made once in VAR_DIR (never in the repo).
    os.environ.setdefault("SECRET_KEY_FILE", str(Path(os.environ["VAR_DIR"]) / "secret-key"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    if not os.environ["DATABASE_URL"].startswith("postgres"):
        sys.exit("The benchmarks run on PostgreSQL: set DATABASE_URL to a postgres:// URL.")
    sys.path.insert(0, str(ROOT))
    _create_database(os.environ["DATABASE_URL"])
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def _create_database(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def bench_utility(*, code: str, name: str, **extra):
    """A Kuwait-like utility of the benchmark's own (created on first use)."""
    from accounts.models import Utility

    defaults = dict(
        name=name,
        country="KW",
        timezone="Asia/Kuwait",
        currency="KWD",
        currency_minor_unit=3,
        languages=["ar", "en"],
        weekend_days=[4, 5],
        **extra,
    )
    return Utility.objects.get_or_create(code=code, defaults=defaults)[0]


def celery_worker(
    *, queue: str, hostname: str, env: dict, include: tuple[str, ...] = ()
) -> subprocess.Popen:
    """One real Celery worker process (solo pool) on every queue of the base `queue` (the run's
    CELERY_QUEUE), most urgent first; the caller terminates it. `include`: modules the worker
    imports besides the tasks' (a benchmark's signal handlers; bench/ is on its path)."""
    from config.celery import queues_by_priority

    if include:
        env = {
            **env,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(ROOT / "bench"), env.get("PYTHONPATH")])
            ),
        }

    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool",
            "solo",
            "--queues",
            ",".join(queues_by_priority(queue)),
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "WARNING",
            "--hostname",
            hostname,
            *(["--include", ",".join(include)] if include else []),
        ],
        cwd=ROOT,
        env=env,
    )


def raw_connection():
    import psycopg

    return psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(workers: int = 2):
    """gunicorn serving config.wsgi on a free port, as in production; stopped on exit."""
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--timeout",
            "300",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**os.environ, "DEBUG": "0"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if requests.get(f"{url}/healthz", timeout=5).status_code in (200, 503):
                    break
            except requests.RequestException:
                time.sleep(0.1)
        else:
            raise RuntimeError("the server did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]
