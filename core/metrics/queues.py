"""How many tasks wait in each of our queues, asked of the broker at scrape time.

- Redis: LLEN of each queue's lists (kombu keeps a list per priority step), in one pipeline.
- RabbitMQ: a passive queue_declare per queue, whose answer carries the message count.
- kombu's filesystem transport (the embedded default): the queue's message files counted.

One connection per process is kept and reused, with a short timeout: a broker that does not
answer makes the scrape say so (smartmeter_celery_broker_up 0), never hang.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from django.conf import settings

from config.celery import app as celery_app
from config.celery import queues_by_priority

logger = logging.getLogger(__name__)

AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")
# kombu's Redis transport: a queue's messages of priority step p > 0 are in "<queue>\x06\x16<p>".
REDIS_PRIORITY_SEPARATOR = "\x06\x16"
REDIS_PRIORITY_STEPS = (3, 6, 9)

_lock = threading.Lock()
_clients: dict[str, object] = {}


def queue_depths() -> dict[str, int]:
    """{queue name: messages waiting} for every queue of this deployment's base queue."""
    url = str(celery_app.conf.broker_url or "").split(";")[0]
    names = queues_by_priority()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return _redis_depths(url, names)
    if url.startswith(AMQP_SCHEMES):
        return _amqp_depths(url, names)
    if url.startswith("filesystem://"):
        return _filesystem_depths(names)
    raise ValueError(f"no queue depths for the broker {url.split('://')[0]}://")


def _timeout() -> float:
    return settings.METRICS_TIMEOUT_SECONDS


def _redis_depths(url: str, names: list[str]) -> dict[str, int]:
    import redis

    with _lock:
        client = _clients.get(url)
        if client is None:
            client = redis.Redis.from_url(
                url, socket_timeout=_timeout(), socket_connect_timeout=_timeout()
            )
            _clients[url] = client
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.llen(name)
        for step in REDIS_PRIORITY_STEPS:
            pipe.llen(f"{name}{REDIS_PRIORITY_SEPARATOR}{step}")
    lengths = pipe.execute()
    per_queue = 1 + len(REDIS_PRIORITY_STEPS)
    return {name: sum(lengths[i * per_queue : (i + 1) * per_queue]) for i, name in enumerate(names)}


def _amqp_depths(url: str, names: list[str]) -> dict[str, int]:
    with _lock:  # a kombu connection is not shared between threads
        for attempt in (1, 2):
            connection = _clients.get(url)
            if connection is None:
                connection = celery_app.connection_for_read(
                    url,
                    connect_timeout=_timeout(),
                    heartbeat=0,  # idle between scrapes; the timeouts find a dead peer
                    transport_options={"read_timeout": _timeout(), "write_timeout": _timeout()},
                )
                _clients[url] = connection
            try:
                return _amqp_declare_passive(connection, names)
            except Exception:
                # The broker closed the kept connection (a restart, an idle timeout): once more
                # on a new one, then the scrape says the broker is down.
                _clients.pop(url, None)
                connection.release()
                if attempt == 2:
                    raise
    raise AssertionError("unreachable")


def _amqp_declare_passive(connection, names: list[str]) -> dict[str, int]:
    connection.ensure_connection(max_retries=1, timeout=_timeout())
    depths = {}
    for name in names:
        channel = connection.channel()
        try:
            _, count, _ = channel.queue_declare(queue=name, passive=True)
            depths[name] = count
        except connection.channel_errors:
            # No such queue yet (no worker ever declared it): nothing waits in it. The broker
            # closed the channel over it; the connection itself is fine.
            depths[name] = 0
        finally:
            try:
                channel.close()
            except connection.channel_errors + connection.connection_errors:
                pass
    return depths


def _filesystem_depths(names: list[str]) -> dict[str, int]:
    folder = celery_app.conf.broker_transport_options.get("data_folder_in")
    depths = dict.fromkeys(names, 0)
    suffixes = {f".{name}.msg": name for name in names}
    # kombu names a message file "<time>_<uuid>.<queue>.msg": the queue follows the first dot.
    with os.scandir(Path(folder)) as entries:
        for entry in entries:
            name = suffixes.get("." + entry.name.partition(".")[2])
            if name is not None:
                depths[name] += 1
    return depths
