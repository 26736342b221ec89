"""Failover benchmark: 1,000 concurrent top-ups and partner payments over HTTP while the primary
is killed with SIGKILL and its synchronous standby promoted; then the new primary's ledger is
reckoned against what the server acknowledged. No acknowledged payment may be missing (lost=0)
and none may be credited twice (duplicated=0). docs/failover.md says which settings make it so.

    REDIS_URL=redis://127.0.0.1:6379/9 .venv/bin/python bench/failover.py \\
        [--pair failover --primary-port 5453 --standby-port 5454] [--operations 1000] [--clients 50]

It makes a primary and a synchronous standby of its own (scripts/pgpair.sh: PostgreSQL clusters on
the two ports, never the machine's shared one) and removes them at the end, on error too.

1. A fresh database on the pair's primary, migrated; a utility with --accounts prepaid accounts,
   a user holding each, and a payment partner.
2. gunicorn serving the application with a DATABASE_URL that lists both nodes in libpq's form
   (host=…,…&port=…,…&target_session_attrs=read-write): each connection goes to whichever node
   takes writes, and Django's connection health checks replace connections to a dead one.
3. --clients threads make the operations, half of them app top-ups (POST …/topups/ with an
   Idempotency-Key, then the gateway's signed webhook with one event id), half payments by the
   partner against a payment code (its reference makes it once). A client retries the same
   request on a connection error, a 5xx or a 429 until it is answered or --deadline passes.
4. Once --kill-at of the operations are acknowledged, the primary is killed (SIGKILL) and, after
   --promote-after seconds (what a failover manager takes to decide), the standby is promoted.
5. The promoted node's ledger is read directly: every operation has an amount of its own in its
   account, so each credit there names the operation it belongs to, whatever our own bookkeeping
   (idempotency records, top-up rows) says.

Last line: acknowledged=… found=… lost=0 duplicated=0 seconds_to_first_write=…
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import requests
from _support import ROOT, bench_utility, running_server, setup_django

PAIR_SCRIPT = ROOT / "scripts" / "pgpair.sh"
DATABASE = "smartmeter_failover"
# Answers a client asks again for: the request may not have been done (or its answer was lost).
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
# The webhook's answers that say the event's credit is in the ledger (a replay finds it there).
CREDITED = frozenset({"credited", "already_credited", "duplicate"})


@dataclass
class Operation:
    """One payment a client makes: an app top-up or a partner's payment, `amount` its own."""

    index: int
    kind: str  # "topup" | "partner"
    account: int
    amount: Decimal
    acknowledged: bool = False
    refused: str = ""  # a 4xx answer: the code it gave
    retries: int = 0
    replayed: bool = False  # acknowledged by a retry that found it done


@dataclass(frozen=True)
class Write:
    """An answered request that wrote a credit: when it was sent and when its answer came."""

    sent: float
    answered: float


@dataclass(frozen=True)
class Reckoning:
    acknowledged: int
    found: int  # acknowledged, and credited exactly once
    lost: int  # acknowledged, and not credited
    duplicated: int  # credited more than once (acknowledged or not)
    strays: int  # credits that belong to no operation


def operation_amount(index: int) -> Decimal:
    """1.001, 1.002, … KWD: no two operations of a run share an amount, so a credit in an
    account's ledger names its operation (a run has at most 999,000 of them)."""
    return Decimal(1) + Decimal(index + 1) / 1000


def reckon(
    *, operations: Iterable[Operation], credits: Mapping[tuple[int, Decimal], int]
) -> Reckoning:
    """`credits`: how many top-up credits the ledger holds per (account, amount)."""
    acknowledged = found = lost = duplicated = 0
    claimed = set()
    for op in operations:
        key = (op.account, op.amount)
        claimed.add(key)
        times = credits.get(key, 0)
        if times > 1:
            duplicated += 1
        if op.acknowledged:
            acknowledged += 1
            if times == 0:
                lost += 1
            elif times == 1:
                found += 1
    strays = sum(n for key, n in credits.items() if key not in claimed)
    return Reckoning(acknowledged, found, lost, duplicated, strays)


def first_write_after(
    writes: Iterable[Write], *, kill_started: float, kill_done: float
) -> float | None:
    """Seconds from the kill to the first credit written after it. Only a request sent once the
    primary was dead counts: one sent before may have been written by the old primary."""
    answered = [w.answered for w in writes if w.sent >= kill_done]
    return min(answered) - kill_started if answered else None


class Refused(Exception):
    """A 4xx: the request will not succeed by asking again."""


class Payers:
    """The app's users, the gateway and a payment network, paying over HTTP; each request is
    asked again, unchanged, on a connection error, a 5xx or a 429, as our clients do."""

    def __init__(self, *, tokens: dict, codes: dict, partner_token: str, deadline: float):
        from billing.gateway import GATEWAYS

        self.gateway = GATEWAYS["simulated"]
        self.tokens, self.codes, self.partner_token = tokens, codes, partner_token
        self.deadline = deadline
        self.acknowledged = 0
        self.writes: list[Write] = []
        self._lock = threading.Lock()
        self._local = threading.local()

    def pay(self, op: Operation, url: str) -> None:
        started = time.monotonic()
        try:
            if op.kind == "topup":
                created, _sent = self._send(
                    op,
                    f"{url}/api/v1/accounts/{op.account}/topups/",
                    started,
                    json={"amount": str(op.amount)},
                    headers={
                        "Authorization": f"Bearer {self.tokens[op.account]}",
                        "Idempotency-Key": str(uuid.uuid4()),
                    },
                )
                # The gateway's reference is the last part of its hosted page's address.
                reference = created.json()["payment_url"].rstrip("/").rsplit("/", 1)[-1]
                event = self.gateway.event_body(
                    reference=reference,
                    amount=op.amount,
                    currency="KWD",
                    succeeded=True,
                    event_id=f"evt_{reference}",
                )
                answer, sent = self._send(
                    op,
                    f"{url}/api/v1/payments/webhooks/simulated/",
                    started,
                    event=event,
                    headers={"Content-Type": "application/json"},
                )
                outcome = answer.json()["status"]
                done, wrote = outcome in CREDITED, outcome == "credited"
            else:
                answer, sent = self._send(
                    op,
                    f"{url}/api/v1/partners/payment-codes/{self.codes[op.account]}/payments/",
                    started,
                    json={"amount": str(op.amount), "reference": f"failover-{op.index}"},
                    headers={"Authorization": f"Bearer {self.partner_token}"},
                )
                done = answer.json()["status"] == "succeeded"
                wrote = done and answer.status_code == 201
        except (Refused, TimeoutError) as exc:
            op.refused = str(exc)
            return
        with self._lock:
            op.acknowledged, op.replayed = done, done and not wrote
            self.acknowledged += done
            if wrote:
                self.writes.append(Write(sent=sent, answered=time.monotonic()))

    def _send(
        self, op: Operation, url: str, started: float, *, headers: dict, json=None, event=None
    ) -> tuple[requests.Response, float]:
        """POST until answered (2xx) or refused (4xx): the answer, and when the request that got
        it was sent."""
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        pause = 0.05
        while True:
            if event is not None:  # the gateway signs each delivery when it makes it
                headers = {**headers, "Sim-Signature": self.gateway.sign(event)}
            sent = time.monotonic()
            try:
                response = self._local.session.post(
                    url, json=json, data=event, headers=headers, timeout=30
                )
            except requests.RequestException:
                response = None
            if response is not None and response.status_code not in RETRIED_STATUSES:
                if response.status_code >= 400:
                    raise Refused(f"{response.status_code} {response.text[:200]}")
                return response, sent
            if time.monotonic() - started > self.deadline:
                raise TimeoutError(f"no answer within {self.deadline} s")
            op.retries += 1
            wait = pause
            if response is not None and response.headers.get("Retry-After", "").isdigit():
                wait = min(float(response.headers["Retry-After"]), 1.0)
            time.sleep(wait * random.uniform(0.5, 1.5))
            pause = min(pause * 2, 1.0)


def pair(*args: str) -> str:
    """scripts/pgpair.sh, its output; its error output on failure."""
    done = subprocess.run(
        [str(PAIR_SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(
            f"pgpair.sh {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}"
        )
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pair", default="failover", help="The name of the pair's clusters.")
    parser.add_argument("--primary-port", type=int, default=5453)
    parser.add_argument("--standby-port", type=int, default=5454)
    parser.add_argument("--operations", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--clients", type=int, default=50, help="Concurrent client threads.")
    parser.add_argument("--server-workers", type=int, default=4, help="gunicorn workers.")
    parser.add_argument("--kill-at", type=float, default=0.3, help="Share acknowledged first.")
    parser.add_argument("--promote-after", type=float, default=1.0, help="Seconds after the kill.")
    parser.add_argument("--deadline", type=float, default=120, help="Seconds per operation.")
    parser.add_argument(
        "--stall-standby",
        type=float,
        default=0,
        help="Seconds the standby's WAL receiver is stopped before the kill, so that the primary "
        "dies with commits on its disk that the standby never received.",
    )
    args = parser.parse_args()
    if not PAIR_SCRIPT.exists():
        sys.exit(f"{PAIR_SCRIPT.relative_to(ROOT)} is missing.")

    print(f"bringing up the pair {args.pair} ({args.primary_port}, {args.standby_port}) …")
    try:
        pair("up", args.pair, str(args.primary_port), str(args.standby_port), "--sync")
        run(args)
    finally:
        pair("down", args.pair)


def run(args: argparse.Namespace) -> None:
    os.environ["DATABASE_URL"] = f"postgres://root@127.0.0.1:{args.primary_port}/{DATABASE}"
    os.environ.setdefault("PAYMENT_WEBHOOK_SECRET", "bench-webhook-secret")
    os.environ.setdefault("CELERY_QUEUE", f"bench-failover-{os.getpid()}")
    setup_django()
    from django.db import connection, connections

    from accounts.models import AccountLink, ConsumerAccount, User
    from accounts.services import tokens_issue
    from billing.models import Tariff
    from billing.payments import partner_token_create, payment_code_for
    from meters.demo import demo_meters

    with connection.cursor() as cursor:
        cursor.execute("SELECT application_name, sync_state FROM pg_stat_replication")
        standbys = cursor.fetchall()
    if not any(state == "sync" for _name, state in standbys):
        raise RuntimeError(f"the standby is not synchronous: {standbys}")

    utility = bench_utility(
        code=f"bench-f-{int(time.time())}", name="Failover bench", min_topup=Decimal("1.000")
    )
    Tariff.objects.get_or_create(
        utility=utility,
        payment_mode="prepaid",
        defaults=dict(
            name="flat", kind="flat", valid_from=date(2025, 1, 1), flat_rate=Decimal("0.005")
        ),
    )
    meters = demo_meters(utility=utility, count=args.accounts, prefix=f"F{utility.pk}-")
    accounts = sorted(m.account_id for m in meters)
    tokens, codes = {}, {}
    for account in ConsumerAccount.objects.filter(pk__in=accounts):
        user, _ = User.objects.get_or_create(username=f"bench-failover-{account.pk}")
        AccountLink.objects.get_or_create(
            user=user, account=account, defaults={"verified_mobile": "+96550000000"}
        )
        tokens[account.pk] = tokens_issue(user=user).access
        codes[account.pk] = payment_code_for(account)
    _partner, partner_token = partner_token_create(utility=utility, name="Failover bench network")
    operations = [
        Operation(
            index=n,
            kind="topup" if n % 2 == 0 else "partner",
            account=accounts[n % len(accounts)],
            amount=operation_amount(n),
        )
        for n in range(args.operations)
    ]
    # From here on the server writes through whichever node is primary; this process only reads
    # the promoted node at the end, by a connection of its own.
    connections.close_all()
    nodes = f"host=127.0.0.1,127.0.0.1&port={args.primary_port},{args.standby_port}"
    os.environ["DATABASE_URL"] = (
        f"postgres://root@/{DATABASE}?{nodes}&target_session_attrs=read-write"
    )

    payers = Payers(tokens=tokens, codes=codes, partner_token=partner_token, deadline=args.deadline)
    print(f"{len(operations)} operations by {args.clients} clients on {len(accounts)} accounts …")
    with running_server(workers=args.server_workers) as url:
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            futures = [pool.submit(payers.pay, op, url) for op in operations]
            while payers.acknowledged < args.kill_at * len(operations):
                if all(f.done() for f in futures):
                    raise RuntimeError("the operations ended before the kill")
                time.sleep(0.01)
            with standby_stalled(args.standby_port, seconds=args.stall_standby):
                waiting = commits_waiting(args.primary_port)
                kill_started = time.monotonic()
                pair("kill-primary", args.pair)
                kill_done = time.monotonic()
            at_kill = payers.acknowledged
            print(
                f"primary killed with {at_kill} acknowledged and {waiting} commits waiting for "
                "the standby; promoting …",
                flush=True,
            )
            time.sleep(args.promote_after)
            pair("promote", args.pair)
            promoted = time.monotonic() - kill_started
            for future in futures:
                future.result()
        elapsed = time.monotonic() - began

    credits, balance_errors, port = ledger_read(os.environ["DATABASE_URL"], accounts)
    if port != args.standby_port:
        raise RuntimeError(f"the writable node is on {port}, not the promoted standby")
    result = reckon(operations=operations, credits=credits)
    first_write = first_write_after(payers.writes, kill_started=kill_started, kill_done=kill_done)
    refused = [op for op in operations if op.refused]
    purge_queues()
    print(
        f"{len(operations)} operations in {elapsed:.1f} s; killed at {at_kill} acknowledged, "
        f"promoted {promoted:.1f} s after the kill; {sum(op.retries for op in operations)} "
        f"retried requests; {sum(op.replayed for op in operations)} payments acknowledged by a "
        f"retry that found them done; {len(refused)} not acknowledged"
    )
    if refused:
        print("first not acknowledged:", [op.refused for op in refused[:3]])
    figures = {
        "operations": len(operations),
        "acknowledged": result.acknowledged,
        # Refused (4xx) or never answered by the deadline: a payment the failover cost the payer.
        "unacknowledged": len(refused),
        "found": result.found,
        "lost": result.lost,
        "duplicated": result.duplicated,
        "strays": result.strays,
        "balance_errors": balance_errors,
        "seconds_to_first_write": "none" if first_write is None else f"{first_write:.2f}",
    }
    print(" ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
    if result.lost or result.duplicated or result.strays or balance_errors or refused:
        sys.exit(1)


def ledger_read(url: str, accounts: list[int]) -> tuple[Counter[tuple[int, Decimal]], int, int]:
    """From the node that now takes writes (libpq picks it from the URL): the top-up credits per
    (account, amount), the accounts whose balance is not the sum of their ledger, and its port."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        port = conn.execute("SELECT inet_server_port()").fetchone()[0]
        rows = conn.execute(
            "SELECT account_id, amount, count(*) FROM billing_ledgerentry"
            " WHERE kind = 'topup' AND account_id = ANY(%s) GROUP BY 1, 2",
            [accounts],
        ).fetchall()
        balance_errors = conn.execute(
            "SELECT count(*) FROM billing_balance b WHERE b.account_id = ANY(%s) AND b.amount <>"
            " (SELECT coalesce(sum(e.amount), 0) FROM billing_ledgerentry e"
            "  WHERE e.account_id = b.account_id)",
            [accounts],
        ).fetchone()[0]
    return Counter({(account, amount): n for account, amount, n in rows}), balance_errors, port


@contextmanager
def standby_stalled(port: int, *, seconds: float):
    """The standby's WAL receiver stopped (SIGSTOP) for `seconds` and while the block runs: the
    primary's commits meanwhile are on its disk, not the standby's, and wait unacknowledged."""
    if seconds <= 0:
        yield
        return
    import psycopg

    with psycopg.connect(f"postgres://root@127.0.0.1:{port}/postgres", autocommit=True) as conn:
        pid = conn.execute("SELECT pid FROM pg_stat_wal_receiver").fetchone()[0]
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def commits_waiting(port: int) -> int:
    """Transactions on the primary whose COMMIT waits for the synchronous standby."""
    import psycopg

    with psycopg.connect(f"postgres://root@127.0.0.1:{port}/postgres", autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
        ).fetchone()[0]


def purge_queues() -> None:
    """The tasks the run's payments queued (no worker takes them here) go with it."""
    from config.celery import app, queues_by_priority

    with app.connection_for_write() as broker:
        for name in queues_by_priority(os.environ["CELERY_QUEUE"]):
            # On RabbitMQ a queue nothing was sent to was never declared: nothing to purge.
            with suppress(*broker.channel_errors), broker.channel() as channel:
                channel.queue_purge(name)


if __name__ == "__main__":
    main()
