"""Scale benchmark (issue 19): a utility of N prepaid meters through push cycles of 15 minutes.

    DATABASE_URL=postgres://root@127.0.0.1:5432/smartmeter_scale REDIS_URL=redis://127.0.0.1:6379/4 \\
        .venv/bin/python bench/scale.py [--meters 1000000] [--cycles 3] [--workers 2] [--batch 50000]

Goals on this machine (the bench reports them, it does not assert them):
    cycle_s <= 300, balance_errors = 0, bookkeeping_bytes_per_meter_day <= readings_bytes_per_meter_day,
    feeder_scope_ms <= 20, publish_s <= 30, first_push_s <= 5; the default size in under 30 minutes.

1. The utility (code `scale-<N>`, Kuwait-like: KWD with 3 decimals, a flat prepaid tariff) is built
   once per size and reused: N accounts, each with a meter (transformers of 50, feeders of 10
   transformers, one area), its tenancy, a linked consumer with a device, and an opening top-up of
   50.000 KWD written as a top-up is (a ledger entry and its Balance). Bulk rows are made by
   INSERT … SELECT over generate_series, one statement a table, from a model instance's values.
2. One UTC day of history (96 intervals a meter, Wh from `slot_wh`) is loaded the same way and then
   charged by the real charging, run by the Celery workers before any cycle (so the cycles measure
   the steady state, not the first charge of a day). ANALYZE.
3. A few hundred consumers per run raise their low-balance amount to their balance
   (notifications.services.preferences_update), so the first cycle's checks really fire alerts.
4. Each cycle sends the next 15-minute interval of every meter to POST /api/v1/headend/readings/
   (JSON `blocks`) on gunicorn, `--batch` meters a request, `--clients` requests in flight, while
   the workers charge, check balances and queue alerts, pushed to a local fake FCM through the
   real firebase-admin path. Beat is played by this script: `charge_readings` is queued when the
   cycle starts and every `--beat` seconds (60 in production, where a push may also wait for
   the next minute).
5. A cycle ends when charging has nothing pending (billing.charging.charges_pending, every shard),
   the Redis queues of the run and kombu's `unacked` hash are empty, and no task is running (a
   Redis counter kept by task_prerun/task_postrun handlers this module adds to the workers), twice
   in a row 0.2 s apart. What it measures is the moment the last task of the cycle has finished:
   alerts queued and their pushes sent.
6. Then the stores are measured, every balance is reckoned independently, one feeder's outage scope
   is timed, and a planned outage of the whole area is published (outages.services.outage_publish)
   with the fake FCM's first accepted push timed from the call.

The last line is the figures:
    meters=… cycles=… cycle_s=<max> cycle_s_each=<a/b/c> push_meters_per_s=… charge_meter_days_per_s=…
    dead_bytes_per_push=… bookkeeping_bytes_per_push=… bookkeeping_bytes_per_meter_day=…
    bookkeeping_rest_bytes_per_meter_day=… readings_bytes_per_meter_day=…
    feeder_scope_ms=… publish_s=… first_push_s=… balance_errors=…
push_meters_per_s: meters / (first batch sent → last batch's 2xx), the worst cycle.
charge_meter_days_per_s: meter-days charged / charging wall time (the time at least one pass that
charged anything was running, from the workers' own clocks: the gaps between beat's ticks are not
charging), the worst cycle.
dead_bytes_per_push: mean growth per cycle of dead tuple bytes (pgstattuple_approx, else n_dead_tup ×
average row width) over meters_meterday, meters_meter, billing_chargedday, billing_ledgerentry and
billing_balance, autovacuum left to run as it would (no manual VACUUM).
bookkeeping_bytes_per_meter_day: what a meter's day of 15-minute pushes adds to billing_chargedday +
billing_ledgerentry (tables, indexes, TOAST; every partition): their growth over the cycles per meter
per push (bookkeeping_bytes_per_push), times the 96 pushes of a day, since each cycle is one push of
every meter (a cycle that opens a new UTC day adds each meter's charged copy of it: a meter-day's
cost, counted here as a push's); bookkeeping_rest_bytes_per_meter_day: what is kept at rest, the
size of billing_chargedday + billing_ledgerentry over the meter-days stored; readings_bytes_per_meter_day:
meters_meterday's size over its rows. feeder_scope_ms: median of 21 runs of outage_scope_meters
for a 500-meter feeder's draft outage, its meter ids listed. publish_s: the outage_publish call.
first_push_s: from the call to the first push the fake FCM accepted. balance_errors: accounts whose
Balance differs from opening − each local month's Wh × rate rounded half up (as bench/ledger.py
reckons, computed in SQL from `slot_wh`'s formula, not from stored readings), plus ledger_check().
"""

# ruff: noqa: S608 - the SQL here is built from integers and this module's constants only
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

RATE = Decimal("0.005")  # KWD a kWh
OPENING = Decimal("50.000")
ZONE = ZoneInfo("Asia/Kuwait")
SLOT = timedelta(minutes=15)
HISTORY_AGE_DAYS = 7  # the history day is this far back when first built: room for 600+ cycles
PER_TRANSFORMER, PER_FEEDER = (
    50,
    10,
)  # meters a transformer, transformers a feeder: 500-meter feeders
COUNTER_RUNNING = "scale:running"
COUNTER_CHARGES = "scale:charges"
TASK_SECONDS, TASK_COUNTS = "scale:task_seconds", "scale:task_counts"

# The Wh of meter n's interval number s (quarter-hours from the history day's 00:00 UTC), 40-1239:
# the same formula in Python (pushes) and SQL (the history and the reckoning). Operands are never
# negative, so % agrees in both.
WH_SQL = "(40 + mod({n} * 7919 + {s} * 104729 + mod({n} * {s}, 613), 1200))"


def slot_wh(n: int, s: int) -> int:
    return 40 + (n * 7919 + s * 104_729 + (n * s) % 613) % 1200


def month_slot_ranges(first_day: date, slots: int) -> list[tuple[int, int]]:
    """[start, end) slot ranges of `slots` quarter-hours from first_day 00:00 UTC, split where a
    local (Asia/Kuwait) month begins: charging rounds each account-month's running total."""
    start = datetime.combine(first_day, datetime.min.time(), UTC)
    ranges, begin = [], 0
    month = start.astimezone(ZONE).strftime("%Y-%m")
    for s in range(1, slots):
        local = (start + s * SLOT).astimezone(ZONE).strftime("%Y-%m")
        if local != month:
            ranges.append((begin, s))
            begin, month = s, local
    ranges.append((begin, slots))
    return ranges


def busy_seconds(spans: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one of the (start, end) spans: charging's wall time without
    the gaps between beat's ticks."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def blocks_body(batch_id: str, serials: list[str], start: datetime, values: list[int]) -> bytes:
    """One head-end request: a block of one interval for each meter."""
    when = start.isoformat()
    return json.dumps(
        {
            "batch_id": batch_id,
            "blocks": [
                {"meter": serial, "start": when, "values": [wh]}
                for serial, wh in zip(serials, values, strict=True)
            ],
        }
    ).encode()


# --- in the workers: a counter of running tasks and a log of charging passes --------------------


def _count_tasks() -> None:
    import redis
    from celery import signals

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    started: dict[str, float] = {}

    @signals.task_prerun.connect(weak=False)
    def _prerun(task_id=None, task=None, **kwargs):
        started[task_id] = time.time()
        client.incr(COUNTER_RUNNING)

    @signals.task_postrun.connect(weak=False)
    def _postrun(task_id=None, task=None, retval=None, **kwargs):
        began = started.pop(task_id, time.time())
        if task is not None:
            client.hincrbyfloat(TASK_SECONDS, task.name, time.time() - began)
            client.hincrby(TASK_COUNTS, task.name, 1)
        if (
            task is not None
            and task.name == "billing.tasks.charge_shard"
            and isinstance(retval, int)
        ):
            client.rpush(COUNTER_CHARGES, f"{began} {time.time()} {retval}")
        client.decr(COUNTER_RUNNING)


if __name__ != "__main__" and os.environ.get("SCALE_TASK_COUNTER"):
    _count_tasks()


# --- building the utility ------------------------------------------------------------------------


INSERTED: list[tuple[str, int, float]] = []  # (table, rows, seconds) of each insert_select


def insert_select(model, *, fixed: dict, computed: dict[str, str], source: str, params=()) -> int:
    """INSERT INTO model's table SELECT … FROM `source`: each column is `computed[attname]` (SQL) or
    the value a `model(**fixed)` instance would save (Python defaults included), so columns other
    code adds with a default are filled too. Returns the rows inserted."""
    from django.db import connection
    from django.db.models.expressions import DatabaseDefault
    from django.db.models.fields import AutoFieldMixin

    template = model(**fixed)
    columns, expressions, values = [], [], []
    for field in model._meta.concrete_fields:
        if field.column is None:
            continue
        if field.attname in computed:
            columns.append(field.column)
            expressions.append(computed[field.attname])
            continue
        if isinstance(field, AutoFieldMixin):
            continue
        value = field.pre_save(template, add=True)  # auto_now(_add) fields get their moment
        if isinstance(value, DatabaseDefault):
            continue
        columns.append(field.column)
        expressions.append(f"%s::{field.db_type(connection)}")
        values.append(field.get_db_prep_save(value, connection))
    began = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {model._meta.db_table} ({', '.join(map(connection.ops.quote_name, columns))}) "
            f"SELECT {', '.join(expressions)} FROM {source}",
            [*values, *params],
        )
        INSERTED.append((model._meta.db_table, cursor.rowcount, time.perf_counter() - began))
        return cursor.rowcount


def build(utility, meters: int, log) -> date:
    """Every row of the utility (see the module's step 1 and 2); returns the history day."""
    from django.db import connection, transaction
    from django.utils import timezone

    from accounts.models import AccountLink, ConsumerAccount, User
    from billing.models import Balance, LedgerEntry
    from meters.models import Feeder, GridArea, Meter, MeterAssignment, MeterDay, Transformer
    from notifications.models import Device

    now = timezone.now()
    day = (now - timedelta(days=HISTORY_AGE_DAYS)).date()
    installed = datetime.combine(day - timedelta(days=30), datetime.min.time(), UTC)
    transformers = max(1, meters // PER_TRANSFORMER)
    feeders = (transformers + PER_FEEDER - 1) // PER_FEEDER
    uid, tag = utility.pk, f"scale{meters}"
    with transaction.atomic():
        area = GridArea.objects.create(utility=utility, code="A1", name="Kuwait City")
        insert_select(
            Feeder,
            fixed=dict(area=area, code="", name=""),
            computed={
                "code": "'F' || lpad((g + 1)::text, 4, '0')",
                "name": "'Feeder ' || (g + 1)",
            },
            source="generate_series(0, %s) AS g",
            params=[feeders - 1],
        )
        insert_select(
            Transformer,
            fixed=dict(feeder_id=0, code="", name=""),
            computed={
                "feeder_id": "f.id",
                "code": "'T' || lpad((g + 1)::text, 6, '0')",
                "name": "'Transformer ' || (g + 1)",
            },
            source="generate_series(0, %s) AS g JOIN meters_feeder f ON f.area_id = %s "
            f"AND f.code = 'F' || lpad((g / {PER_FEEDER} + 1)::text, 4, '0')",
            params=[transformers - 1, area.pk],
        )
        insert_select(
            ConsumerAccount,
            fixed=dict(
                utility=utility,
                consumer_id="",
                registered_mobile="+96550000000",
                name="",
                premises_address="",
            ),
            computed={
                "consumer_id": "'S-' || lpad(g::text, 8, '0')",
                "name": "'Household ' || g",
            },
            source="generate_series(0, %s) AS g",
            params=[meters - 1],
        )
        # n: the meter's number, from its account's consumer id.
        accounts = (
            "(SELECT a.id, substring(a.consumer_id from 3)::bigint AS n "
            f"FROM accounts_consumeraccount a WHERE a.utility_id = {uid}) AS a"
        )
        insert_select(
            Meter,
            fixed=dict(
                utility=utility,
                serial="",
                rated_capacity_kw=Decimal("15.00"),
                installed_at=installed,
            ),
            computed={
                "serial": "'S' || lpad(a.n::text, 8, '0')",
                "account_id": "a.id",
                "transformer_id": "t.id",
            },
            source=f"{accounts} JOIN meters_transformer t ON t.feeder_id IN "
            f"(SELECT id FROM meters_feeder WHERE area_id = {area.pk}) "
            f"AND t.code = 'T' || lpad((mod(a.n, {transformers}) + 1)::text, 6, '0')",
        )
        meter_rows = (
            "(SELECT m.id, m.account_id, substring(m.serial from 2)::bigint AS n "
            f"FROM meters_meter m WHERE m.utility_id = {uid}) AS m"
        )
        insert_select(
            MeterAssignment,
            fixed=dict(meter_id=0, account_id=0, start=installed),
            computed={"meter_id": "m.id", "account_id": "m.account_id"},
            source=meter_rows,
        )
        insert_select(
            User,
            fixed=dict(username="", password="!", date_joined=now),
            computed={
                "username": f"'{tag}-' || lpad(a.n::text, 8, '0')",
                "language": "CASE WHEN mod(a.n, 2) = 0 THEN 'ar' ELSE 'en' END",
            },
            source=accounts,
        )
        users = (
            f"{accounts} JOIN accounts_user u ON u.username = '{tag}-' || lpad(a.n::text, 8, '0')"
        )
        insert_select(
            AccountLink,
            fixed=dict(user_id=0, account_id=0, verified_mobile="+96550000000", created_at=now),
            computed={"user_id": "u.id", "account_id": "a.id"},
            source=users,
        )
        insert_select(
            Device,
            fixed=dict(user_id=0, token="", platform="android", created_at=now, last_seen_at=now),
            computed={
                "user_id": "u.id",
                "token": f"'{tag}-' || lpad(a.n::text, 8, '0') || '-' || repeat('t', 150)",
                "platform": "CASE WHEN mod(a.n, 2) = 0 THEN 'android' ELSE 'ios' END",
                "language": "u.language",
            },
            source=users,
        )
        # The opening balance as a top-up writes it: a ledger entry and the Balance it moved.
        insert_select(
            LedgerEntry,
            fixed=dict(
                account_id=0,
                kind="topup",
                amount=OPENING,
                balance_after=OPENING,
                currency="KWD",
                key="",
                description="Opening balance",
                created_at=now,
            ),
            computed={"account_id": "a.id", "key": "'scale-opening:' || a.id"},
            source=accounts,
        )
        insert_select(
            Balance,
            fixed=dict(account_id=0, amount=OPENING, updated_at=now),
            computed={"account_id": "a.id"},
            source=accounts,
        )
    log("rows: " + ", ".join(f"{table} {rows} in {sec:.1f} s" for table, rows, sec in INSERTED))
    # The history: 96 intervals a meter, each 4 bytes little endian (Wh < 65536), all actual.
    wh = WH_SQL.format(n="m.n", s="s")
    began = time.perf_counter()
    with transaction.atomic():
        rows = insert_select(
            MeterDay,
            fixed=dict(meter_id=0, day=day, values=b"", quality=b"", updated_at=now),
            computed={
                "meter_id": "m.id",
                "values": "(SELECT decode(string_agg(lpad(to_hex(mod(w, 256)), 2, '0') || "
                "lpad(to_hex(w / 256), 2, '0') || '0000', '' ORDER BY s), 'hex') "
                f"FROM (SELECT s, {wh} AS w FROM generate_series(0, 95) AS s) AS x)",
                "quality": "decode(repeat('01', 96), 'hex')",
            },
            source=meter_rows,
        )
    log(f"history: {rows} meter-days loaded in {time.perf_counter() - began:.0f} s")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return day


# --- measuring ---------------------------------------------------------------------------------

DEAD_TABLES = [
    "meters_meterday",
    "meters_meter",
    "billing_chargedday",
    "billing_ledgerentry",
    "billing_balance",
]


def leaves(conn, table: str) -> list[str]:
    """The table itself, or its partitions when it is partitioned."""
    return [
        name
        for (name,) in conn.execute(
            "SELECT relid::regclass::text FROM pg_partition_tree(%s::regclass) WHERE isleaf",
            [table],
        ).fetchall()
    ]


def total_bytes(conn, table: str) -> int:
    return sum(
        conn.execute("SELECT pg_total_relation_size(%s::regclass)", [leaf]).fetchone()[0]
        for leaf in leaves(conn, table)
    )


def dead_bytes(conn, exact: bool) -> dict[str, int]:
    found = {}
    for table in DEAD_TABLES:
        total = 0
        for leaf in leaves(conn, table):
            if exact:
                total += conn.execute(
                    "SELECT dead_tuple_len FROM pgstattuple_approx(%s::regclass)", [leaf]
                ).fetchone()[0]
            else:
                total += conn.execute(
                    "SELECT coalesce(s.n_dead_tup * pg_relation_size(c.oid) "
                    "/ nullif(c.reltuples, 0), 0)::bigint FROM pg_stat_user_tables s "
                    "JOIN pg_class c ON c.oid = s.relid WHERE s.relid = %s::regclass",
                    [leaf],
                ).fetchone()[0]
        found[table] = total
    return found


def reckoning_errors(conn, utility_id: int, first_day: date, slots: int) -> int:
    """Accounts whose Balance is not opening − Σ over local months of round(Wh × rate), the Wh
    from the formula of what was sent (slots 0 … slots − 1), not from what was stored."""
    ranges = month_slot_ranges(first_day, slots)
    wh = WH_SQL.format(n="m.n", s="s")
    (wrong,) = conn.execute(
        "WITH m AS (SELECT account_id, substring(serial from 2)::bigint AS n FROM meters_meter "
        "  WHERE utility_id = %s), "
        "months AS (SELECT * FROM unnest(%s::int[], %s::int[]) AS r(a, b)), "
        "spent AS (SELECT account_id, "
        f"  round(sum({wh}) * %s / 1000, 3) AS cost "
        "  FROM m CROSS JOIN months CROSS JOIN LATERAL generate_series(months.a, months.b - 1) AS s "
        "  GROUP BY account_id, months.a) "
        "SELECT count(*) FROM (SELECT account_id, %s - sum(cost) AS expected FROM spent "
        "  GROUP BY account_id) AS x LEFT JOIN billing_balance b USING (account_id) "
        "WHERE b.amount IS DISTINCT FROM x.expected",
        [utility_id, [a for a, _ in ranges], [b for _, b in ranges], RATE, OPENING],
    ).fetchone()
    return wrong


# --- the run -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=1_000_000)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--batch", type=int, default=50_000, help="meters a request")
    parser.add_argument("--clients", type=int, default=3, help="requests in flight")
    parser.add_argument("--server-workers", type=int, default=2, help="gunicorn processes")
    parser.add_argument("--beat", type=float, default=60, help="seconds between charge_readings")
    parser.add_argument("--near-low", type=int, default=300, help="alerts to fire in cycle 1")
    parser.add_argument("--fcm-latency-ms", type=float, default=40)
    parser.add_argument("--outage-wait", type=float, default=10, help="seconds of fan-out watched")
    args = parser.parse_args()

    t_run = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - t_run:7.1f} s] {text}", flush=True)

    os.environ["CHARGE_SHARDS"] = str(args.workers * 2)
    os.environ["CELERY_QUEUE"] = queue = f"scale-{os.getpid()}"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    from _support import (
        bench_utility,
        celery_worker,
        percentile,
        raw_connection,
        running_server,
        setup_django,
    )

    setup_django()
    import redis
    import requests
    from django.conf import settings
    from django.db import DatabaseError
    from django.utils import timezone
    from fanout import ACCESS_TOKEN, reset, start_fake, stats

    from accounts.models import AccountLink
    from billing.charging import charges_pending
    from billing.models import Balance, Tariff
    from billing.selectors import ledger_check
    from billing.tasks import charge_readings
    from config.celery import queues_by_priority
    from meters.models import Feeder, GridArea, Meter
    from meters.services import service_token_create
    from notifications.models import BalanceAlertState, Notification
    from notifications.services import preferences_update
    from outages.models import Outage
    from outages.selectors import outage_scope_meters
    from outages.services import outage_publish

    broker = redis.Redis.from_url(os.environ["REDIS_URL"])
    phases: dict[str, float] = {}

    # --- 1-2: the utility, built once per size ---------------------------------------------------
    began = time.perf_counter()
    utility = bench_utility(code=f"scale-{args.meters}", name=f"Scale bench {args.meters}")
    Tariff.objects.get_or_create(
        utility=utility,
        payment_mode="prepaid",
        defaults=dict(name="flat", kind="flat", valid_from=date(2025, 1, 1), flat_rate=RATE),
    )
    have = Meter.objects.filter(utility=utility).count()
    if have == 0:
        log(f"building {args.meters} prepaid meters …")
        build(utility, args.meters, log)
    elif have != args.meters:
        raise SystemExit(f"utility scale-{args.meters} holds {have} meters: drop the database")
    else:
        log(f"reusing the {have} meters of utility scale-{args.meters}")
    first = Meter.objects.filter(utility=utility, serial="S00000000").get()
    with raw_connection() as conn:
        (first_day,) = conn.execute(
            "SELECT min(day) FROM meters_meterday WHERE meter_id = %s", [first.pk]
        ).fetchone()
        last_day, quality = conn.execute(
            "SELECT day, quality FROM meters_meterday WHERE meter_id = %s ORDER BY day DESC LIMIT 1",
            [first.pk],
        ).fetchone()
    present = [k for k, q in enumerate(bytes(quality)) if q]
    next_slot = (last_day - first_day).days * 96 + present[-1] + 1
    origin = datetime.combine(first_day, datetime.min.time(), UTC)
    phases["build"] = time.perf_counter() - began

    fake, fcm_url = start_fake(args.fcm_latency_ms)
    env = {
        **os.environ,
        "FCM_ENDPOINT": fcm_url + "/v1/projects/{0}/messages:send",
        "FCM_ACCESS_TOKEN": ACCESS_TOKEN,
        "FCM_PROJECT_ID": "bench",
        "SCALE_TASK_COUNTER": "1",
    }
    broker.delete(COUNTER_RUNNING, COUNTER_CHARGES)
    workers = [
        celery_worker(
            queue=queue, hostname=f"scale{n}-{os.getpid()}@%h", env=env, include=("scale",)
        )
        for n in range(args.workers)
    ]
    queues = queues_by_priority(queue)
    shards = settings.CHARGE_SHARDS

    def state() -> tuple[int, int, int, int]:
        """(shards with charging pending, messages queued, reserved (unacked), tasks running)."""
        pending = sum(bool(charges_pending(limit=1, shard=s, shards=shards)) for s in range(shards))
        queued = sum(broker.llen(q) for q in queues)
        return pending, queued, broker.hlen("unacked"), int(broker.get(COUNTER_RUNNING) or 0)

    def settled() -> bool:
        try:
            return state() == (0, 0, 0, 0)
        except DatabaseError as exc:  # a busy shared server (locks, connections): ask again
            log(f"polling failed: {exc}")
            return False

    def wait_settled(limit: float = 3600) -> float:
        """Polls until settled twice in a row 0.2 s apart; returns the moment of the first."""
        began = time.monotonic()
        told = began
        while time.monotonic() < began + limit:
            if settled():
                at = time.perf_counter()
                time.sleep(0.2)
                if settled():
                    return at
            if time.monotonic() - told > 15:
                told = time.monotonic()
                log(
                    "waiting: pending shards {}, queued {}, reserved {}, running {}".format(
                        *state()
                    )
                )
            time.sleep(0.3)
        raise RuntimeError("the cycle did not settle")

    lines: dict[str, str] = {}
    try:
        # --- history charged by the workers (and checked: balances are healthy) ------------------
        began = time.perf_counter()
        charge_readings.delay()
        wait_settled()
        phases["history_charge"] = time.perf_counter() - began
        log(f"history charged in {phases['history_charge']:.1f} s")
        with raw_connection() as conn:
            conn.execute("ANALYZE")

        # --- 3: a few hundred consumers whose balance is at their low-balance level now -----------
        fired_before = BalanceAlertState.objects.filter(low_armed=False).values("account_id")
        chosen = list(
            AccountLink.objects.filter(account__utility=utility, unlinked_at__isnull=True)
            .exclude(account_id__in=fired_before)
            .select_related("user")
            .order_by("account_id")[: args.near_low]
        )
        levels = dict(
            Balance.objects.filter(account_id__in=[c.account_id for c in chosen]).values_list(
                "account_id", "amount"
            )
        )
        for link in chosen:
            preferences_update(user=link.user, low_balance_amount=levels[link.account_id])
        log(f"{len(chosen)} consumers' low-balance amount set to their balance")

        # --- 4-5: the push cycles ------------------------------------------------------------------
        _, token = service_token_create(utility=utility, name=f"scale-{os.getpid()}")
        serials = [f"S{n:08d}" for n in range(args.meters)]
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        with raw_connection() as conn:
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
                exact = True
            except Exception as exc:  # reported: the estimate is used instead
                log(f"pgstattuple unavailable ({exc}); dead bytes from n_dead_tup")
                exact = False
            dead = [dead_bytes(conn, exact)]
            book_before = total_bytes(conn, "billing_chargedday") + total_bytes(
                conn, "billing_ledgerentry"
            )
        cycle_s, push_rates, charge_rates, alerts = [], [], [], []
        with running_server(workers=args.server_workers) as url:
            sessions = [requests.Session() for _ in range(args.clients)]
            for cycle in range(args.cycles):
                slot = next_slot + cycle
                start = origin + slot * SLOT
                values = [slot_wh(n, slot) for n in range(args.meters)]
                bodies = [
                    blocks_body(
                        f"scale-{os.getpid()}-{cycle}-{offset}",
                        serials[offset : offset + args.batch],
                        start,
                        values[offset : offset + args.batch],
                    )
                    for offset in range(0, args.meters, args.batch)
                ]
                broker.delete(COUNTER_CHARGES, TASK_SECONDS, TASK_COUNTS)
                cycle_started_at = timezone.now()
                stop_beat = threading.Event()

                def beat(stop=stop_beat) -> None:
                    while True:
                        charge_readings.delay()
                        if stop.wait(args.beat):
                            return

                def send(index: int, bodies=bodies) -> float:
                    response = sessions[index % args.clients].post(
                        f"{url}/api/v1/headend/readings/",
                        data=bodies[index],
                        headers=headers,
                        timeout=600,
                    )
                    if response.status_code != 200:
                        raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
                    body = response.json()
                    if body["rejected"]:
                        raise RuntimeError(f"rejected: {body['rejections'][:3]}")
                    return time.perf_counter()

                t0 = time.perf_counter()
                ticker = threading.Thread(target=beat, daemon=True)
                ticker.start()
                with ThreadPoolExecutor(max_workers=args.clients) as pool:
                    answered = list(pool.map(send, range(len(bodies))))
                push_s = max(answered) - t0
                end = wait_settled()
                stop_beat.set()
                ticker.join()
                seconds = end - t0
                passes = [
                    tuple(map(float, item.split()))
                    for item in broker.lrange(COUNTER_CHARGES, 0, -1)
                ]
                charged = [p for p in passes if p[2] > 0]
                meter_days = int(sum(p[2] for p in charged))
                charge_wall = busy_seconds([(a, b) for a, b, _ in charged])
                fired = Notification.objects.filter(
                    created_at__gte=cycle_started_at, category__startswith="low_balance"
                ).count()
                with raw_connection() as conn:
                    dead.append(dead_bytes(conn, exact))
                growth = {t: dead[-1][t] - dead[-2][t] for t in DEAD_TABLES}
                counts = broker.hgetall(TASK_COUNTS)
                busy = {
                    name.decode().rsplit(".", 1)[-1]: f"{int(counts[name])}×{float(spent):.1f}s"
                    for name, spent in broker.hgetall(TASK_SECONDS).items()
                }
                cycle_s.append(seconds)
                push_rates.append(args.meters / push_s)
                charge_rates.append(meter_days / charge_wall if charge_wall else 0.0)
                alerts.append(fired)
                log(
                    f"cycle {cycle + 1}: slot {slot} ({start:%Y-%m-%d %H:%M} UTC) {seconds:.1f} s; "
                    f"pushed in {push_s:.1f} s ({len(bodies)} requests); {meter_days} meter-days "
                    f"charged in {charge_wall:.1f} s by {len(charged)} passes; {fired} low-balance "
                    f"alerts; dead bytes growth {growth}; tasks {busy}"
                )
        phases["cycles"] = sum(cycle_s)

        # --- 6: stores, reckoning, the outage ------------------------------------------------------
        began = time.perf_counter()
        with raw_connection() as conn:
            book_after = total_bytes(conn, "billing_chargedday") + total_bytes(
                conn, "billing_ledgerentry"
            )
            readings_bytes = total_bytes(conn, "meters_meterday")
            (stored_days,) = conn.execute("SELECT count(*) FROM meters_meterday").fetchone()
            errors = reckoning_errors(conn, utility.pk, first_day, next_slot + args.cycles)
        findings = ledger_check()
        phases["check"] = time.perf_counter() - began
        log(
            f"reckoning: {errors} balances differ, ledger_check: {len(findings)} findings "
            f"({phases['check']:.1f} s)"
        )

        area = GridArea.objects.get(utility=utility, code="A1")
        feeder = Feeder.objects.get(area=area, code="F0001")
        now = timezone.now()
        draft, _ = Outage.objects.get_or_create(
            utility=utility,
            reason="Scale bench: one feeder",
            status=Outage.Status.DRAFT,
            defaults=dict(
                planned_start=now + timedelta(days=30),
                planned_end=now + timedelta(days=30, hours=4),
            ),
        )
        draft.feeders.set([feeder])
        samples = []
        for _ in range(21):
            t = time.perf_counter()
            ids = list(outage_scope_meters(outage=draft).values_list("pk", flat=True))
            samples.append((time.perf_counter() - t) * 1000)
        feeder_ms = statistics.median(samples)
        log(
            f"feeder scope: {len(ids)} meters, median {feeder_ms:.1f} ms, p90 {percentile(samples, 90):.1f} ms"
        )

        starts = now + timedelta(hours=utility.outage_notice_hours + 24)
        outage = Outage.objects.create(
            utility=utility,
            kind=Outage.Kind.PLANNED,
            reason="Scale bench: city-wide maintenance",
            planned_start=starts,
            planned_end=starts + timedelta(hours=4),
        )
        outage.areas.set([area])
        reset(fcm_url)
        t_pub = time.monotonic()
        outage_publish(outage_id=outage.pk)
        publish_s = time.monotonic() - t_pub
        first_push_s = None
        deadline = time.monotonic() + max(60.0, args.outage_wait)
        while time.monotonic() < deadline:
            current = stats(fcm_url)
            if current["first_at"]:
                first_push_s = current["first_at"] - t_pub
                break
            time.sleep(0.05)
        time.sleep(max(0.0, args.outage_wait - (time.monotonic() - t_pub)))
        current = stats(fcm_url)
        log(
            f"outage of the whole area published in {publish_s:.1f} s; first push after "
            f"{first_push_s if first_push_s is None else round(first_push_s, 2)} s; "
            f"{current['accepted']} pushes accepted in the first {time.monotonic() - t_pub:.0f} s"
        )
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(timeout=120)
            except subprocess.TimeoutExpired:  # a long task of the fan-out: not ours to finish
                worker.kill()
                worker.wait()
        fake.terminate()
        fake.wait(timeout=10)
        # The run's queues go with it (a fan-out's unsent remainder included).
        for name in queues:
            broker.delete(name)

    phases["total"] = time.perf_counter() - t_run
    log("phases: " + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()))
    growth = [sum(b.values()) - sum(a.values()) for a, b in itertools.pairwise(dead)]
    per_push = (book_after - book_before) / (args.meters * args.cycles)
    lines = {
        "meters": str(args.meters),
        "cycles": str(args.cycles),
        "cycle_s": f"{max(cycle_s):.1f}",
        "cycle_s_each": "/".join(f"{s:.1f}" for s in cycle_s),
        "push_meters_per_s": f"{min(push_rates):.0f}",
        "charge_meter_days_per_s": f"{min(charge_rates):.0f}",
        "dead_bytes_per_push": f"{statistics.mean(growth):.0f}",
        "bookkeeping_bytes_per_push": f"{per_push:.1f}",
        "bookkeeping_bytes_per_meter_day": f"{per_push * 96:.1f}",
        "bookkeeping_rest_bytes_per_meter_day": f"{book_after / max(stored_days, 1):.1f}",
        "readings_bytes_per_meter_day": f"{readings_bytes / max(stored_days, 1):.1f}",
        "feeder_scope_ms": f"{feeder_ms:.1f}",
        "publish_s": f"{publish_s:.2f}",
        "first_push_s": "none" if first_push_s is None else f"{first_push_s:.2f}",
        "balance_errors": str(errors + len(findings)),
    }
    print(" ".join(f"{k}={v}" for k, v in lines.items()), flush=True)


if __name__ == "__main__":
    main()
