"""The application behind pgbouncer in transaction mode (docs/pooling.md): each transaction may run
on another server connection, so nothing may outlive one.

Everywhere: a scan of the application's code for session state (session advisory locks, SET
without LOCAL, LISTEN/NOTIFY, temporary tables that outlive their transaction, held cursors,
named prepared statements), and the settings DATABASE_POOLED turns on.

Through pgbouncer only (DATABASE_POOLED=1; REQUIRE_POOLER=1 makes a skip a failure): the
connection really goes through a pooler in transaction mode that wipes session state after each
transaction (.ci/pgbouncer.sh), a transaction-scoped advisory lock holds for its transaction, and
a bulk ingest, a charging pass and a top-up work there.
"""

from __future__ import annotations

import ast
import json
import os
import re
import runpy
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, transaction

ROOT = Path(__file__).resolve().parents[2]
# What is not the application: the tests (their planner hints run inside a test's transaction),
# third-party code, and generated or local files.
NOT_SCANNED = {"tests", ".venv", "node_modules", "var", "build", ".git"}

# Each finding: (why it breaks under transaction pooling, pattern). Patterns look at string
# constants only, so SQL in comments or prose never counts; SQL keywords are matched at the start
# of a statement (the string's start or after a `;`), so `UPDATE t SET a = 1` is not a SET.
STATEMENT = r"(?:\A|;)\s*"
SQL_RULES = [
    (
        "session advisory lock (use pg_advisory_xact_lock)",
        re.compile(r"\bpg_(?:try_)?advisory_(?:lock|unlock)(?:_shared|_all)?\s*\(", re.I),
    ),
    (
        "SET without LOCAL",
        re.compile(
            STATEMENT + r"SET\s+(?!LOCAL\b|TRANSACTION\b|CONSTRAINTS\b)"
            r"(?:SESSION\b|TIME\s+ZONE\b|ROLE\b|SCHEMA\b|NAMES\b|[\w.\"]+\s*(?:=|\bTO\b))",
            re.I,
        ),
    ),
    ("set_config(..., false) (session)", re.compile(r"\bset_config\s*\([^;]*,\s*false\s*\)", re.I)),
    ("RESET (session)", re.compile(STATEMENT + r"RESET\s+\w", re.I)),
    ("LISTEN/NOTIFY", re.compile(STATEMENT + r"(?:UN)?LISTEN\s+\w|\bpg_notify\s*\(", re.I)),
    ("NOTIFY", re.compile(STATEMENT + r"NOTIFY\s+\w", re.I)),
    ("cursor WITH HOLD", re.compile(r"\bWITH\s+HOLD\b", re.I)),
    ("named prepared statement", re.compile(STATEMENT + r"(?:PREPARE|DEALLOCATE)\s+\w", re.I)),
]
TEMP_TABLE = re.compile(r"\bCREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?TEMP(?:ORARY)?\s+TABLE\b", re.I)
ON_COMMIT_DROP = re.compile(r"\bON\s+COMMIT\s+DROP\b", re.I)


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}"


def session_state_findings(source: str, path: str = "<source>") -> list[Finding]:
    """Every use of session state in one Python module's source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            text = node.value if isinstance(node.value, str) else node.value.decode(errors="ignore")
            for rule, pattern in SQL_RULES:
                if pattern.search(text):
                    found.append(Finding(path, node.lineno, rule))
            if TEMP_TABLE.search(text) and not ON_COMMIT_DROP.search(text):
                found.append(
                    Finding(path, node.lineno, "temporary table kept past its transaction")
                )
        elif isinstance(node, ast.Attribute) and node.attr == "ServerCursor":
            found.append(Finding(path, node.lineno, "server-side cursor (psycopg.ServerCursor)"))
        elif isinstance(node, ast.Call):
            found.extend(_call_findings(node, path))
        elif _prepares(node):
            found.append(Finding(path, node.lineno, "prepared statements (prepare_threshold)"))
    return found


def _call_findings(node: ast.Call, path: str) -> list[Finding]:
    found = []
    name = node.func.attr if isinstance(node.func, ast.Attribute) else ""
    for keyword in node.keywords:
        value = keyword.value
        if keyword.arg == "withhold" and not _is_false(value):
            found.append(Finding(path, node.lineno, "cursor WITH HOLD (withhold=)"))
        if keyword.arg == "prepare" and not _is_false(value):
            found.append(Finding(path, node.lineno, "prepared statement (prepare=)"))
        if keyword.arg == "prepare_threshold" and _is_count(value):
            found.append(Finding(path, node.lineno, "prepared statements (prepare_threshold=)"))
        if keyword.arg == "name" and name == "cursor":
            found.append(Finding(path, node.lineno, "named (server-side) cursor"))
    first = node.args[0] if node.args else None
    if name == "cursor" and isinstance(first, ast.Constant) and isinstance(first.value, str):
        found.append(Finding(path, node.lineno, "named (server-side) cursor"))
    return found


def _prepares(node: ast.AST) -> bool:
    """A prepare_threshold of a number given in a dict, or assigned to a key or attribute."""
    if isinstance(node, ast.Dict):
        return any(
            isinstance(key, ast.Constant) and key.value == "prepare_threshold" and _is_count(value)
            for key, value in zip(node.keys, node.values, strict=True)
        )
    if isinstance(node, ast.Assign) and _is_count(node.value):
        for target in node.targets:
            if isinstance(target, ast.Attribute) and target.attr == "prepare_threshold":
                return True
            if isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant):
                return target.slice.value == "prepare_threshold"
    return False


def _is_false(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value in (False, None)


def _is_count(node: ast.expr) -> bool:
    """A literal number: a threshold that turns prepared statements on. (A value copied from
    elsewhere, such as a replica's copy of the default alias's options, is judged where it is set.)"""
    return isinstance(node, ast.Constant) and type(node.value) is int


def application_modules() -> list[Path]:
    modules = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in NOT_SCANNED]
        modules += [Path(folder, name) for name in files if name.endswith(".py")]
    return sorted(modules)


# --- Everywhere -------------------------------------------------------------------------------


def test_the_application_holds_no_session_state_across_transactions():
    modules = application_modules()
    assert len(modules) > 50 and any(p.match("billing/charging.py") for p in modules)
    findings = [
        finding
        for path in modules
        for finding in session_state_findings(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert [str(f) for f in findings] == []


@pytest.mark.parametrize(
    "source",
    [
        'cursor.execute("SELECT pg_advisory_lock(%s)", [1])',
        'cursor.execute("SELECT pg_try_advisory_lock(1, 2)")',
        'cursor.execute("select pg_advisory_unlock_all()")',
        "cursor.execute(\"SET lock_timeout = '5s'\")",
        'cursor.execute(f"SET statement_timeout TO {ms}")',
        "cursor.execute(\"set session work_mem = '64MB'\")",
        "cursor.execute(\"SET TIME ZONE 'UTC'\")",
        'cursor.execute("SET ROLE reporting")',
        'cursor.execute("SELECT 1; SET enable_seqscan = off")',
        "cursor.execute(\"SELECT set_config('search_path', %s, false)\", [p])",
        'cursor.execute("RESET ALL")',
        'cursor.execute("LISTEN balance_changed")',
        'cursor.execute("NOTIFY balance_changed")',
        'cursor.execute("SELECT pg_notify(%s, %s)", ["c", "x"])',
        'cursor.execute("CREATE TEMP TABLE batch (id bigint)")',
        'cursor.execute("CREATE TEMPORARY TABLE batch (id bigint) ON COMMIT DELETE ROWS")',
        'cursor.execute("DECLARE c CURSOR WITH HOLD FOR SELECT 1")',
        'cursor.execute("PREPARE q AS SELECT 1")',
        'cursor.execute("SELECT 1", prepare=True)',
        "psycopg.connect(dsn, prepare_threshold=5)",
        "connection.connection.prepare_threshold = 0",
        'DATABASES["default"]["OPTIONS"] = {"prepare_threshold": 5}',
        'DATABASES["default"]["OPTIONS"]["prepare_threshold"] = 5',
        "connection.connection.cursor(name='export', withhold=True)",
        "connection.cursor('export')",
        "psycopg.ServerCursor(conn, 'export')",
        'queryset = "SELECT 1"; cursor.execute(b"SET work_mem = 1")',
    ],
)
def test_the_scan_finds_session_state(source):
    assert session_state_findings(source), source


@pytest.mark.parametrize(
    "source",
    [
        'cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [1, 2])',
        'cursor.execute("SELECT pg_try_advisory_xact_lock(1)")',
        "cursor.execute(\"SET LOCAL lock_timeout = '5s'\")",
        'cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")',
        'cursor.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")',
        'cursor.execute("UPDATE meters_meter SET last_reading_at = %s WHERE id = %s")',
        'cursor.execute("""UPDATE t\nSET a = 1""")',
        "cursor.execute(\"SELECT set_config('app.user', %s, true)\", [u])",
        'cursor.execute("CREATE TEMP TABLE batch (id bigint) ON COMMIT DROP")',
        "# SET work_mem = 1 in a comment is prose\nx = 1",
        '"""Set a rule on an account the user may pay for."""',
        'cursor.execute("SELECT 1", prepare=False)',
        "psycopg.connect(dsn, prepare_threshold=None)",
        'DATABASES["default"]["OPTIONS"]["prepare_threshold"] = None',
        "connection.cursor()",
    ],
)
def test_the_scan_lets_transaction_state_be(source):
    assert session_state_findings(source) == [], source


def settings_under(monkeypatch, tmp_path, **env) -> dict:
    """The settings module as a process started with `env` reads it."""
    for name in ("DATABASE_POOLED", "CONN_MAX_AGE", "CONN_HEALTH_CHECKS", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SECRET_KEY", "x")
    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "config" / "settings.py"))


def test_pooled_settings_keep_nothing_on_a_server_connection(monkeypatch, tmp_path):
    url = "postgres://app@pooler.internal:6432/smartmeter"
    pooled = settings_under(monkeypatch, tmp_path, DATABASE_URL=url, DATABASE_POOLED="1")
    default = pooled["DATABASES"]["default"]
    assert default["DISABLE_SERVER_SIDE_CURSORS"] is True
    assert (
        "prepare_threshold" in default["OPTIONS"]
        and default["OPTIONS"]["prepare_threshold"] is None
    )
    assert default["CONN_MAX_AGE"] is None and default["CONN_HEALTH_CHECKS"] is True

    chosen = settings_under(
        monkeypatch, tmp_path, DATABASE_URL=url, DATABASE_POOLED="1", CONN_MAX_AGE="0"
    )
    assert chosen["DATABASES"]["default"]["CONN_MAX_AGE"] == 0

    direct = settings_under(monkeypatch, tmp_path, DATABASE_URL=url)["DATABASES"]["default"]
    assert direct.get("DISABLE_SERVER_SIDE_CURSORS", False) is False
    assert direct["CONN_MAX_AGE"] == 60


# --- Through pgbouncer ------------------------------------------------------------------------


def pooled() -> bool:
    return settings.DATABASE_POOLED and connection.vendor == "postgresql"


@pytest.fixture
def pooler():
    """Skips unless the tests run through pgbouncer; fails instead under REQUIRE_POOLER=1."""
    if not pooled():
        message = "needs DATABASE_POOLED=1 and a DATABASE_URL through pgbouncer (.ci/pgbouncer.sh)"
        if os.environ.get("REQUIRE_POOLER") == "1":
            pytest.fail(message)
        pytest.skip(message)


def pooler_admin(command: str) -> list[dict]:
    """The rows of a pgbouncer admin console command (database `pgbouncer`, same address)."""
    import psycopg

    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname="pgbouncer",
        autocommit=True,
    ) as admin:
        cursor = admin.execute(command)
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def other_connection():
    """A second client of the test database through the same pooler."""
    import psycopg

    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname=db["NAME"],
        autocommit=True,
    )


def our_local_port() -> int:
    connection.ensure_connection()
    fd = connection.connection.pgconn.socket
    # fromfd duplicates the descriptor: closing the copy leaves psycopg's socket open.
    with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as ours:
        return ours.getsockname()[1]


@pytest.mark.django_db
def test_the_connection_goes_through_pgbouncer_in_transaction_mode(pooler):
    port = our_local_port()
    with connection.cursor() as cursor:
        cursor.execute("SELECT inet_server_port(), inet_client_port(), current_database()")
        server_port, client_port_seen, database = cursor.fetchone()

    # The server listens elsewhere than we connect, and sees another client than us.
    assert server_port != int(connection.settings_dict["PORT"])
    assert client_port_seen != port
    # pgbouncer knows us as its client of the test database, pooled by transaction.
    (client,) = [row for row in pooler_admin("SHOW CLIENTS") if row["port"] == port]
    assert client["database"] == database == connection.settings_dict["NAME"]
    (pool,) = [row for row in pooler_admin("SHOW POOLS") if row["database"] == database]
    assert pool["pool_mode"] == "transaction"
    assert connection.connection.prepare_threshold is None


@pytest.mark.django_db
def test_the_pooler_forgets_session_state_after_each_transaction(pooler):
    """.ci/pgbouncer.sh resets every server connection after each transaction, so the pooled pass
    fails on any code that leans on a SET, a session lock or a held cursor, on every run."""
    config = {row["key"]: row["value"] for row in pooler_admin("SHOW CONFIG")}
    assert (config["server_reset_query_always"], config["server_reset_query"]) == (
        "1",
        "DISCARD ALL",
    ), "start the pooler with .ci/pgbouncer.sh"
    with other_connection() as other:  # autocommit: each statement its own transaction
        other.execute("SELECT set_config('smartmeter.probe', 'kept', false)")
        (value,) = other.execute("SELECT current_setting('smartmeter.probe', true)").fetchone()
    assert value in (None, "")


@pytest.mark.django_db(transaction=True)
def test_a_transaction_advisory_lock_holds_for_its_transaction_and_no_longer(pooler):
    from outages.detection import LOCK_NAMESPACE, _lock

    utility_id = 7_000_001
    try_lock = "SELECT pg_try_advisory_xact_lock(%s, %s)"
    held, release = threading.Event(), threading.Event()

    def detector_run():  # as outages_detect takes it, on its own connection
        try:
            with transaction.atomic():
                _lock(utility_id)
                held.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=detector_run)
    thread.start()
    try:
        assert held.wait(10)
        with other_connection() as other:
            assert other.execute(try_lock, [LOCK_NAMESPACE, utility_id]).fetchone() == (False,)
            release.set()
            thread.join(10)
            # Released at commit: the next transaction, on whichever server connection, takes it.
            assert other.execute(try_lock, [LOCK_NAMESPACE, utility_id]).fetchone() == (True,)
            (left,) = other.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            ).fetchone()
            assert left == 0
    finally:
        release.set()
        thread.join(10)


@pytest.mark.django_db(transaction=True)
def test_a_bulk_ingest_charging_and_a_top_up_work_through_the_pooler(pooler, make_api, client):
    from billing import charging
    from billing.models import Balance, LedgerEntry, TopUp
    from billing.selectors import ledger_check
    from tests.accounts.factories import AccountLinkFactory, UtilityFactory
    from tests.billing.factories import flat_tariff
    from tests.billing.test_topups import webhook
    from tests.meters.factories import MeterFactory, head_end_token

    utility = UtilityFactory()
    flat_tariff(utility, rate="0.005")  # 5 fils a kWh
    link = AccountLinkFactory(account__utility=utility)
    ours = MeterFactory(utility=utility, account=link.account)
    others = MeterFactory.create_batch(40, utility=utility)
    meters = [ours, *others]
    start = datetime(2026, 11, 1, 21, tzinfo=UTC)  # Kuwait midnight: two whole local days

    # A bulk ingest: a head-end batch of load profiles, twice (the second stores nothing).
    head_end = make_api()
    head_end.client.credentials(HTTP_AUTHORIZATION=f"Bearer {head_end_token(utility)}")
    body = {
        "blocks": [
            {"meter": meter.serial, "start": start.isoformat(), "values": [250] * 192}
            for meter in meters
        ]
    }
    for expected in (192 * len(meters), 0):
        response = head_end.client.post(
            "/api/v1/headend/readings/", data=json.dumps(body), content_type="application/json"
        )
        assert response.status_code in (200, 201, 202), response.content
        assert (response.json()["stored"], response.json()["rejected"]) == (expected, 0)

    # Charging passes, more than psycopg's 5 runs of one statement before it would prepare it.
    passes = [charging.charges_run() for _ in range(7)]
    assert passes[0][0] >= 1 and all(done == (0, set()) for done in passes[1:])
    # 192 quarter-hours of 250 Wh: 48 kWh at 5 fils.
    assert Balance.objects.get(account=link.account).amount == Decimal("-0.240")
    assert ledger_check() == []

    # A top-up from the app, confirmed by the gateway's webhook.
    api = make_api(link.user)
    started = api.post(
        f"/api/v1/accounts/{link.account_id}/topups/",
        {"amount": "5.000", "channel": "app"},
        HTTP_IDEMPOTENCY_KEY="pooled-1",
    )
    assert started.status_code == 201, started.json()
    topup = TopUp.objects.get(account=link.account)
    assert webhook(client, topup).json() == {"status": "credited"}
    assert Balance.objects.get(account=link.account).amount == Decimal("4.760")
    assert LedgerEntry.objects.filter(account=link.account, kind="topup").count() == 1
    assert ledger_check() == []
    # Fresh readings after the top-up are charged against the new balance.
    later = start + timedelta(days=2)
    block = {"meter": ours.serial, "start": later.isoformat(), "values": [1000] * 4}
    head_end.client.post(
        "/api/v1/headend/readings/",
        data=json.dumps({"blocks": [block]}),
        content_type="application/json",
    )
    charging.charges_run()
    assert Balance.objects.get(account=link.account).amount == Decimal("4.740")
