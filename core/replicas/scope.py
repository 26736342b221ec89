"""What the router knows of the work it serves (ReadScope, in a context variable), the writes
it sees, and the read-your-writes marks kept in the cache."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connections

from core.replicas.lag import replica_aliases

logger = logging.getLogger(__name__)

WRITER_KEY = "replicas:wrote:%s"
WRITE_VERBS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE", "COPY"})
WRITE_WORD = re.compile(r"\b(INSERT|UPDATE|DELETE|MERGE)\b", re.IGNORECASE)


@dataclass
class ReadScope:
    """What the router knows of the request it serves."""

    user_id: str | None = None
    eligible: bool = False  # this request's reads may go to a replica
    wrote: bool = False  # the request wrote on the primary
    replica: str | None = None  # chosen at the first read: an alias, or "" for the primary


read_scope: ContextVar[ReadScope | None] = ContextVar("replica_read_scope", default=None)


@contextmanager
def replica_reads(*, user_id: str | None = None) -> Iterator[ReadScope]:
    """Reads inside may go to a replica, as a consumer read request's do (a consumer's export
    built by a task, say); a write inside sends the rest back to the primary."""
    scope = ReadScope(user_id=user_id, eligible=bool(replica_aliases()))
    token = read_scope.set(scope)
    try:
        with connections[DEFAULT_DB_ALIAS].execute_wrapper(writes_seen):
            yield scope
    finally:
        read_scope.reset(token)


def writes_seen(execute, sql, params, many, context):
    """Execute wrapper on the primary: once a request writes, the rest of it reads the primary
    (it may read what it wrote), and its user is marked as a recent writer."""
    scope = read_scope.get()
    if scope is not None and not scope.wrote and _is_write(sql):
        scope.wrote = True
        scope.eligible = False
    return execute(sql, params, many, context)


def _is_write(sql) -> bool:
    head = str(sql).lstrip()[:8].upper()
    if head.startswith("WITH"):
        return WRITE_WORD.search(str(sql)) is not None
    return head.split(" ", 1)[0] in WRITE_VERBS


# --- Read-your-writes ---------------------------------------------------------------------------
# Kept in the cache (Redis in production) so that the web process that serves a consumer's next
# read knows of the write another process served.


def writer_mark(*, user_id: str) -> None:
    try:
        cache.set(WRITER_KEY % user_id, 1, timeout=settings.READ_YOUR_WRITES_SECONDS)
    except Exception as exc:  # a cache outage must not fail the write that was made
        logger.warning("Could not mark user %s as a recent writer: %s", user_id, exc)


def writer_recent(*, user_id: str) -> bool:
    try:
        return cache.get(WRITER_KEY % user_id) is not None
    except Exception as exc:  # unknown: read the primary, which is never behind
        logger.warning("Could not check user %s for recent writes: %s", user_id, exc)
        return True


def writer_forget(*, user_id: str) -> None:
    cache.delete(WRITER_KEY % user_id)


def writers_mark(user_ids) -> None:
    """Send these users' reads to the primary for READ_YOUR_WRITES_SECONDS: something they will
    look for was written on their behalf, not by their own request (a gateway's webhook crediting
    their top-up, their account made at sign-in). Nothing to do without replicas."""
    from core.replicas.lag import replica_aliases

    if not replica_aliases():
        return
    for user_id in {str(user_id) for user_id in user_ids if user_id is not None}:
        writer_mark(user_id=user_id)
