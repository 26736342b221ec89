"""How far each replica lags, measured at most every few seconds per process, and which one a
read may use."""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db import Error as DatabaseError

logger = logging.getLogger(__name__)

# How far the primary has written, read just after the standby's replay position.
PRIMARY_LSN_SQL = "SELECT pg_current_wal_lsn()::text"
# The standby's state: whether it is one at all (a promoted one, or a URL of the primary, is never
# read from as a replica), how far it has replayed, and the age of the last transaction replayed.
LAG_SQL = (
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
    "EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())"
)


@dataclass(frozen=True)
class _Reading:
    lag: float | None
    at: float  # time.monotonic()


_readings: dict[str, _Reading] = {}


def replica_aliases() -> list[str]:
    return list(getattr(settings, "REPLICA_ALIASES", ()))


def replica_lag_seconds() -> dict[str, float | None]:
    """Each replica alias's lag in seconds, None when it is unreachable or not a standby.

    Measured at most every REPLICA_LAG_CHECK_SECONDS per process; a replica that failed is not
    asked again for REPLICA_RETRY_SECONDS."""
    lags = {}
    for alias in replica_aliases():
        reading = _readings.get(alias)
        now = time.monotonic()
        if reading is None or now - reading.at >= _reading_ttl(reading):
            reading = _Reading(lag=_lag_measure(alias), at=time.monotonic())
            _readings[alias] = reading
        lags[alias] = reading.lag
    return lags


def _reading_ttl(reading: _Reading) -> float:
    if reading.lag is None:
        return float(settings.REPLICA_RETRY_SECONDS)
    return float(settings.REPLICA_LAG_CHECK_SECONDS)


def _lag_measure(alias: str) -> float | None:
    """0 when the standby had replayed all that the primary had written by the moment after
    (so it holds every commit made before the check); else the age of the last transaction it
    replayed, infinite when it replayed none. Only the primary knows how much the standby has yet
    to receive: a standby cut off from it, or fed slower than it replays, looks caught up to
    itself."""
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute(LAG_SQL)
            recovering, replayed, age = cursor.fetchone()
        if not recovering:
            logger.warning("Replica %s is not a streaming standby: no reads go to it", alias)
            return None
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute(PRIMARY_LSN_SQL)
            (written,) = cursor.fetchone()
    except Exception as exc:  # whatever the failure, this replica serves no reads for a while
        logger.warning("Replica %s is unreachable, reads go elsewhere: %s", alias, exc)
        _close_quietly(alias)
        return None
    if replayed is not None and lsn_value(replayed) >= lsn_value(written):
        return 0.0
    if age is None:
        return math.inf
    return max(float(age), 0.0)  # a standby's clock a little ahead of the primary's


def lsn_value(lsn: str) -> int:
    """A WAL position ("16/B374D848") as a number, to compare two."""
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def _close_quietly(alias: str) -> None:
    with contextlib.suppress(DatabaseError):
        connections[alias].close()


def replica_unusable(alias: str) -> None:
    """A read on `alias` failed: skip it for REPLICA_RETRY_SECONDS in this process."""
    _readings[alias] = _Reading(lag=None, at=time.monotonic())
    _close_quietly(alias)


def replica_readings_forget() -> None:
    """Measure every replica again at the next read (tests; a changed REPLICA_ALIASES)."""
    _readings.clear()


def replica_choose() -> str | None:
    """A replica whose lag is under REPLICA_MAX_LAG_SECONDS, else None (read the primary)."""
    return replica_pick(replica_lag_seconds(), limit=float(settings.REPLICA_MAX_LAG_SECONDS))


def replica_pick(lags: dict[str, float | None], *, limit: float) -> str | None:
    usable = [alias for alias, lag in lags.items() if lag is not None and lag < limit]
    return random.choice(usable) if usable else None  # noqa: S311 (spreading load, not secrecy)
