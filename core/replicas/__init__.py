"""Read replicas: a consumer's reads go to a streaming standby whose lag is under a limit;
everything else reads and writes the primary (docs/replicas.md).

A read may go to a replica only inside a replica-eligible scope, which ReplicaReadMiddleware
opens for a GET or HEAD of a consumer read view (REPLICA_READ_URL_NAMES) by a consumer known from
their bearer token who has written nothing in the last READ_YOUR_WRITES_SECONDS. Outside one (a
write, a money check, the admin, a Celery task, a management command) ReplicaRouter answers
"default". Inside one, a read in a transaction on the primary, or after the request wrote, stays
on the primary too.

DATABASE_REPLICA_URLS (config/settings.py) makes the aliases replica1..N; with none set the router
and the middleware are not installed, and nothing here runs.
"""

from __future__ import annotations

from core.replicas.lag import (
    LAG_SQL,
    replica_aliases,
    replica_choose,
    replica_lag_seconds,
    replica_pick,
    replica_readings_forget,
    replica_unusable,
)
from core.replicas.middleware import REPLICA_READ_URL_NAMES, ReplicaReadMiddleware
from core.replicas.router import ReplicaRouter
from core.replicas.scope import (
    ReadScope,
    replica_reads,
    writer_forget,
    writer_mark,
    writer_recent,
    writers_mark,
)

__all__ = [
    "LAG_SQL",
    "REPLICA_READ_URL_NAMES",
    "ReadScope",
    "ReplicaReadMiddleware",
    "ReplicaRouter",
    "replica_aliases",
    "replica_choose",
    "replica_lag_seconds",
    "replica_pick",
    "replica_readings_forget",
    "replica_reads",
    "replica_unusable",
    "writer_forget",
    "writer_mark",
    "writer_recent",
    "writers_mark",
]
