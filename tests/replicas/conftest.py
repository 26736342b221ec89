"""A real streaming standby for the replica tests: scripts/pgpair.sh makes the pair, DATABASE_URL
names its primary and DATABASE_REPLICA_URLS its standby (docs/replicas.md). Without them these
tests skip; REQUIRE_REPLICA=1 (CI) turns that skip into a failure.

Django makes the test database on the primary only; the standby receives it by streaming. The
replica aliases are never created nor flushed by Django (they cannot be: a standby is read-only):
for each test they are pointed at the primary's test database name on the standby, and let
through the guard Django puts on aliases a test does not list."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connections
from django.test import TransactionTestCase
from django.test.testcases import _DatabaseFailure

from core.replicas import replica_readings_forget

WAIT_SECONDS = 30


def _control(settings_dict: dict, dbname: str) -> psycopg.Connection:
    """A connection of the test's own, beside the application's, named so in pg_stat_activity."""
    return psycopg.connect(
        host=settings_dict["HOST"] or None,
        port=settings_dict["PORT"] or None,
        user=settings_dict["USER"] or None,
        password=settings_dict["PASSWORD"] or None,
        dbname=dbname,
        autocommit=True,
        application_name="replica-tests",
    )


@dataclass
class Pair:
    alias: str
    dbname: str
    primary: psycopg.Connection
    standby: psycopg.Connection

    def on_standby(self, sql: str, params=()) -> list[tuple]:
        return self.standby.execute(sql, params).fetchall()

    def caught_up(self) -> None:
        """Wait until the standby has replayed all the primary has written so far."""
        self._wait_for("pg_last_wal_replay_lsn()", "replayed")

    def received(self) -> None:
        """Wait until the standby has received (not necessarily replayed) all written so far."""
        self._wait_for("pg_last_wal_receive_lsn()", "received")

    def _wait_for(self, position: str, what: str) -> None:
        (lsn,) = self.primary.execute("SELECT pg_current_wal_lsn()").fetchone()
        deadline = time.monotonic() + WAIT_SECONDS
        while not self.on_standby(f"SELECT {position} >= %s::pg_lsn", (str(lsn),))[0][0]:
            assert time.monotonic() < deadline, f"the standby has not {what} {lsn}"
            time.sleep(0.02)

    @contextmanager
    def replay_paused(self) -> Iterator[None]:
        """The standby receives WAL but applies none of it: it falls behind on purpose."""
        self.on_standby("SELECT pg_wal_replay_pause()")
        deadline = time.monotonic() + WAIT_SECONDS
        while self.on_standby("SELECT pg_get_wal_replay_pause_state()")[0][0] != "paused":
            assert time.monotonic() < deadline, "the standby's replay did not pause"
            time.sleep(0.02)
        try:
            yield
        finally:
            self.on_standby("SELECT pg_wal_replay_resume()")

    def application_queries(self) -> list[tuple[str, str]]:
        """(database, last query) of the application's connections to the standby."""
        return self.on_standby(
            "SELECT datname, query FROM pg_stat_activity WHERE application_name = %s",
            (f"smartmeter-{self.alias}",),
        )


@pytest.fixture
def standby(transactional_db, settings) -> Iterator[Pair]:
    aliases = list(django_settings.REPLICA_ALIASES)
    default = connections["default"]
    if not aliases or default.vendor != "postgresql":
        message = (
            "needs a PostgreSQL primary and its streaming standby: scripts/pgpair.sh up NAME "
            "PORT1 PORT2, then DATABASE_URL and DATABASE_REPLICA_URLS naming them"
        )
        if os.environ.get("REQUIRE_REPLICA"):
            pytest.fail(message)
        pytest.skip(message)
    test_name = default.settings_dict["NAME"]
    guards, names = {}, {}
    for alias in aliases:
        connection = connections[alias]
        connection.close()
        names[alias] = connection.settings_dict["NAME"]
        connection.settings_dict["NAME"] = test_name
        for method, _ in TransactionTestCase._disallowed_connection_methods:
            guard = getattr(connection, method)
            if isinstance(guard, _DatabaseFailure):
                guards[(alias, method)] = guard
                setattr(connection, method, guard.wrapped)
        # Connected before the test: Django's guard refuses to open a connection to an alias
        # the test does not list, not to use one that is open.
        connection.connect()

    alias = aliases[0]
    primary = _control(default.settings_dict, test_name)
    standby_control = _control(connections[alias].settings_dict, test_name)
    pair = Pair(alias=alias, dbname=test_name, primary=primary, standby=standby_control)
    _same_cluster(pair)
    settings.REPLICA_ALIASES = [alias]  # one standby: the tests know where reads went
    settings.REPLICA_LAG_CHECK_SECONDS = 0  # measured at every request
    cache.clear()
    replica_readings_forget()
    try:
        pair.caught_up()
        yield pair
    finally:
        replica_readings_forget()
        cache.clear()
        primary.close()
        standby_control.close()
        for alias_name in aliases:
            connection = connections[alias_name]
            connection.close()
            connection.settings_dict["NAME"] = names[alias_name]
        for (alias_name, method), guard in guards.items():
            setattr(connections[alias_name], method, guard)


def _same_cluster(pair: Pair) -> None:
    """The replica alias must be a standby of this very primary, or nothing here means much."""
    query = "SELECT system_identifier FROM pg_control_system()"
    (primary_id,) = pair.primary.execute(query).fetchone()
    (standby_id,) = pair.standby.execute(query).fetchone()
    (recovering,) = pair.standby.execute("SELECT pg_is_in_recovery()").fetchone()
    assert recovering and standby_id == primary_id, (
        f"{pair.alias} is not a streaming standby of the primary DATABASE_URL names"
    )
