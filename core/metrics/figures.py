"""What a scrape reads from the database, the broker and the replicas, per utility where it is
per utility, and kept in the cache METRICS_CACHE_SECONDS so that repeated scrapes (every web
worker, two Prometheus servers) cost one read.

At a million meters no figure reads every meter or every meter-day: each query is bounded by an
index and, where what it counts could itself be large, by METRICS_COUNT_CAP rows (the figure then
reads "at least the cap"):
- newest reading: per utility, the first entry of meter_last_reading (utility, last_reading_at)
  read backwards: one index probe. last_reading_at is written at most every TOUCH_EVERY (30
  minutes, meters.services), so the age can read up to that much high; the newest batch's age
  (ingestbatch_received, one probe) says when the head-end last delivered to the minute.
- meters not reporting: per utility, a capped count of meter_last_reading's range "older than
  NOT_REPORTING_AFTER" and of its null entries installed before it: the silent meters only.
- charging backlog: the meter-days changed after the charging cursors' oldest position (what
  charging has not looked at yet), read in updated_at order from meterday_changes up to the
  cap, then kept as charges_pending keeps them (prepaid, assigned, not charged since): a count and
  the oldest change per utility. The cursors' own lag is exact and costs one tiny query.
- top-ups pending (the partial index topup_pending_reconcile holds only pending ones) and failed
  in the last day (topup_failed_at): capped counts.
All reads go to the primary (the figures are about it) under a statement timeout.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from django.apps import apps
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from core.sql import select

logger = logging.getLogger(__name__)

CACHE_KEY = "metrics:figures:v1"
FAILED_TOPUPS_WINDOW = timedelta(hours=24)
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # before any reading


@dataclass
class UtilityFigures:
    code: str
    newest_reading: float | None = None  # epoch seconds of the newest interval's start
    newest_batch: float | None = None  # epoch seconds of the newest ingest batch's arrival
    not_reporting: int = 0
    backlog: int = 0
    backlog_oldest: float | None = None  # epoch seconds of the oldest pending change
    topups_pending: int = 0
    topups_failed: int = 0


@dataclass
class Figures:
    read_at: float
    utilities: dict[int, UtilityFigures] = field(default_factory=dict)
    charging_position: float | None = None  # the charging cursors' oldest position
    queues: dict[str, int] = field(default_factory=dict)
    replicas: dict[str, float | None] = field(default_factory=dict)
    # Each source read (database, broker, replicas): 1, or 0 when it failed.
    sources: dict[str, int] = field(default_factory=dict)


def figures_kept() -> Figures:
    """The figures, from the cache when read less than METRICS_CACHE_SECONDS ago."""
    keep = settings.METRICS_CACHE_SECONDS
    if keep:
        try:
            found = cache.get(CACHE_KEY)
        except Exception as exc:  # the cache (Redis) down must not take the metrics with it
            logger.warning("metrics: cache unavailable: %s", exc)
            found, keep = None, 0
        if found is not None:
            return found
    figures = figures_read()
    if keep:
        try:
            cache.set(CACHE_KEY, figures, keep)
        except Exception as exc:
            logger.warning("metrics: cache unavailable: %s", exc)
    return figures


def figures_read() -> Figures:
    """Every source once; a source that fails is reported as down, the others still are."""
    from core.metrics.queues import queue_depths

    figures = Figures(read_at=time.time())
    for source, read in (
        ("database", _database_read),
        ("broker", lambda f: f.queues.update(queue_depths())),
        ("replicas", _replicas_read),
    ):
        try:
            read(figures)
            figures.sources[source] = 1
        except Exception as exc:  # one source's failure is a figure, not a failed scrape
            logger.warning("metrics: reading the %s failed: %s", source, exc)
            figures.sources[source] = 0
    return figures


def _replicas_read(figures: Figures) -> None:
    from core.replicas import replica_lag_seconds

    figures.replicas.update(replica_lag_seconds())


def _database_read(figures: Figures) -> None:
    """Every database figure, or none: a query that fails or times out must not leave the
    figures after it reading 0."""
    read = Figures(read_at=figures.read_at)
    with _statement_timeout(settings.METRICS_TIMEOUT_SECONDS):
        now = timezone.now()
        utility_model = apps.get_model("accounts", "Utility")
        for pk, code in utility_model.objects.order_by("pk").values_list("pk", "code"):
            read.utilities[pk] = UtilityFigures(code=code)
        if read.utilities:
            _meters_read(read, now=now)
            _backlog_read(read)
            _topups_read(read, now=now)
    figures.utilities, figures.charging_position = read.utilities, read.charging_position


@contextlib.contextmanager
def _statement_timeout(seconds: float):
    """PostgreSQL: the block's statements run in one transaction and are cancelled after
    `seconds` (SET LOCAL: it ends with the transaction, behind pgbouncer too; restored after
    the block when a caller's transaction holds this one). SQLite: no transaction, which would
    take its write lock (transaction_mode IMMEDIATE) from ingest for the scrape's length."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('statement_timeout')")
            (before,) = cursor.fetchone()
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, true)", [str(int(seconds * 1000))]
            )
        yield
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [before])


def _tables() -> dict[str, str]:
    return {
        label.split(".")[1].lower(): apps.get_model(label)._meta.db_table
        for label in (
            "accounts.Utility",
            "accounts.ConsumerAccount",
            "meters.Meter",
            "meters.MeterDay",
            "meters.MeterAssignment",
            "meters.IngestBatch",
            "billing.ChargedDay",
            "billing.ChargeCursor",
            "billing.TopUp",
        )
    }


def _epoch(value) -> float | None:
    return value.timestamp() if value is not None else None


class Query(NamedTuple):
    """One statement of the figures, for core.sql.select (and for tests to EXPLAIN)."""

    sql: str
    params: list
    fields: list


def meters_query(*, now: datetime) -> Query:
    """Per utility: its newest reading and batch, and its meters not reporting, each count read
    from meter_last_reading's range up to METRICS_COUNT_CAP entries."""
    from meters.selectors import NOT_REPORTING_AFTER, REPORTING_STATUSES

    t = _tables()
    meter = apps.get_model("meters", "Meter")
    batch = apps.get_model("meters", "IngestBatch")
    since = now - NOT_REPORTING_AFTER
    cap = settings.METRICS_COUNT_CAP
    # The statuses of meter_last_reading's condition, said as it says them, so the planner
    # sees that each subquery's rows are in that partial index.
    statuses = ", ".join(f"'{s}'" for s in REPORTING_STATUSES)
    reporting = f"m.utility_id = u.id AND m.status IN ({statuses})"
    return Query(
        f"SELECT u.id, "  # noqa: S608 (table names and statuses are ours, values are parameters)
        f"(SELECT m.last_reading_at FROM {t['meter']} m WHERE {reporting} "
        f"AND m.last_reading_at IS NOT NULL ORDER BY m.last_reading_at DESC LIMIT 1), "
        f"(SELECT b.received_at FROM {t['ingestbatch']} b WHERE b.utility_id = u.id "
        f"ORDER BY b.received_at DESC LIMIT 1), "
        f"(SELECT COUNT(*) FROM (SELECT 1 FROM {t['meter']} m WHERE {reporting} "
        f"AND m.last_reading_at < %s LIMIT %s) late), "
        f"(SELECT COUNT(*) FROM (SELECT 1 FROM {t['meter']} m WHERE {reporting} "
        f"AND m.last_reading_at IS NULL AND m.installed_at < %s LIMIT %s) never) "
        f"FROM {t['utility']} u",
        [since, cap, since, cap],
        [
            None,
            meter._meta.get_field("last_reading_at"),
            batch._meta.get_field("received_at"),
            None,
            None,
        ],
    )


def _meters_read(figures: Figures, *, now: datetime) -> None:
    cap = settings.METRICS_COUNT_CAP
    for pk, newest, received, late, never in select(*meters_query(now=now)):
        if pk in figures.utilities:
            one = figures.utilities[pk]
            one.newest_reading, one.newest_batch = _epoch(newest), _epoch(received)
            one.not_reporting = min(late + never, cap)


def charging_position() -> datetime | None:
    """The charging cursors' oldest position (billing.charging.charges_pending keeps one per
    shard of CHARGE_SHARDS); None while a shard has never run: it has read nothing."""
    cursor_model = apps.get_model("billing", "ChargeCursor")
    shards = settings.CHARGE_SHARDS
    names = [f"energy:{shard}/{shards}" for shard in range(shards)]
    positions = dict(cursor_model.objects.filter(name__in=names).values_list("name", "position"))
    return min(positions.values()) if len(positions) == len(names) else None


def backlog_query(*, since: datetime) -> Query:
    """Meter-days waiting to be charged, per utility: the first METRICS_COUNT_CAP changed after
    `since` (the oldest cursor), by change time, kept as charges_pending keeps them (prepaid,
    assigned, changed since last charged or set aside); their count and oldest change."""
    t = _tables()
    day_model = apps.get_model("meters", "MeterDay")
    return Query(
        "SELECT m.utility_id, COUNT(*), MIN(w.updated_at) "  # noqa: S608 (our table names)
        f"FROM (SELECT meter_id, day, updated_at FROM {t['meterday']} WHERE updated_at >= %s "
        "ORDER BY updated_at LIMIT %s) w "
        f"JOIN {t['meter']} m ON m.id = w.meter_id "
        f"LEFT JOIN {t['chargedday']} cd ON cd.meter_id = w.meter_id AND cd.day = w.day "
        "WHERE m.payment_mode = 'prepaid' "
        f"AND EXISTS (SELECT 1 FROM {t['meterassignment']} a WHERE a.meter_id = w.meter_id) "
        "AND (cd.meter_id IS NULL OR (w.updated_at > cd.charged_at "
        "AND (cd.blocked_at IS NULL OR w.updated_at > cd.blocked_at))) "
        "GROUP BY m.utility_id",
        [since, settings.METRICS_COUNT_CAP],
        [None, None, day_model._meta.get_field("updated_at")],
    )


def _backlog_read(figures: Figures) -> None:
    oldest = charging_position()
    figures.charging_position = _epoch(oldest)
    for pk, count, first in select(*backlog_query(since=oldest or EPOCH)):
        if pk in figures.utilities:
            figures.utilities[pk].backlog = count
            figures.utilities[pk].backlog_oldest = _epoch(first)


def topups_queries(*, now: datetime) -> dict[str, Query]:
    """Top-ups pending (topup_pending_reconcile holds only those), and failed in the last
    FAILED_TOPUPS_WINDOW (topup_failed_at), per utility: METRICS_COUNT_CAP at most."""
    t = _tables()
    cap = settings.METRICS_COUNT_CAP
    queries = {}
    for attribute, condition, params in (
        ("topups_pending", "status = 'pending'", []),
        ("topups_failed", "status = 'failed' AND created_at >= %s", [now - FAILED_TOPUPS_WINDOW]),
    ):
        queries[attribute] = Query(
            "SELECT a.utility_id, COUNT(*) "  # noqa: S608 (our table names and statuses)
            f"FROM (SELECT account_id FROM {t['topup']} WHERE {condition} LIMIT %s) p "
            f"JOIN {t['consumeraccount']} a ON a.id = p.account_id GROUP BY a.utility_id",
            [*params, cap],
            [None, None],
        )
    return queries


def _topups_read(figures: Figures, *, now: datetime) -> None:
    for attribute, query in topups_queries(now=now).items():
        for pk, count in select(*query):
            if pk in figures.utilities:
                setattr(figures.utilities[pk], attribute, count)
