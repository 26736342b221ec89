"""/metrics, read as Prometheus reads it: every page is parsed by prometheus_client's own parser,
and each figure is checked to follow what happened (a request, a top-up, an ingest, a push, a
task), in this process and, through the multiprocess files, in a real Celery worker's."""

from __future__ import annotations

import json
import math
import os
import re
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from celery import shared_task
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from billing import payments
from billing.charging import charges_run
from billing.gateway import GATEWAYS
from billing.models import ChargeCursor, TopUp
from config.celery import app as celery_app
from config.celery import queue_name
from core.metrics import figures
from core.replicas import replica_lag_seconds
from meters.models import MeterDay
from notifications import tasks as notification_tasks
from notifications.services import alert_create
from tests.accounts.factories import (
    AccountLinkFactory,
    ConsumerAccountFactory,
    UserFactory,
    UtilityFactory,
)
from tests.core.test_healthz_and_docs import broker_down
from tests.core.test_work_plans import analyze, explain, index_names, meters_bulk, seq_scans
from tests.e2e.celery_worker import worker_process
from tests.meters.factories import MeterFactory, head_end_token
from tests.notifications.factories import DeviceFactory

TOKEN = "scrape-token-for-tests"
SIM = GATEWAYS["simulated"]
DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"


class Page:
    """One scrape, parsed: sample values by sample name and labels."""

    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = [s for f in self.families.values() for s in f.samples]

    def value(self, name: str, **labels) -> float | None:
        """The sample `name` whose labels include `labels` (None when there is none)."""
        found = [
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]
        assert len(found) <= 1, (name, labels, found)
        return found[0] if found else None

    def count(self, name: str, **labels) -> float:
        """A counter's value, 0 before it was ever moved."""
        return self.value(name, **labels) or 0.0


@pytest.fixture
def scrape(client, settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOW_NETS = []
    settings.METRICS_CACHE_SECONDS = 0  # every scrape reads afresh: the tests change the data

    def read() -> Page:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain")
        return Page(response.content.decode())

    return read


# --- Protection ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_refuses_a_scrape_without_the_token(client, settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOW_NETS = []

    for header in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": TOKEN}):
        response = client.get("/metrics", **header)
        assert response.status_code == 401, header
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert b"smartmeter_" not in response.content
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


@pytest.mark.django_db
def test_it_is_off_when_neither_a_token_nor_a_network_is_set(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOW_NETS = []

    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer ")

    assert response.status_code == 404
    assert b"smartmeter_" not in response.content


@pytest.mark.django_db
def test_an_allowed_network_scrapes_without_the_token(client, settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOW_NETS = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7").status_code == 401

    response = client.get("/metrics", REMOTE_ADDR="10.1.2.3")

    assert response.status_code == 200
    assert "smartmeter_http_requests" in Page(response.content.decode()).families
    # Behind a proxy that appends to X-Forwarded-For, its first address is the client's to
    # write: never trusted here, even where the rest of the server reads it.
    settings.USE_X_FORWARDED_FOR = True
    forged = client.get("/metrics", REMOTE_ADDR="192.0.2.7", HTTP_X_FORWARDED_FOR="10.0.0.1")
    assert forged.status_code == 401


# --- Requests --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_requests_are_counted_by_view_and_status_never_by_path(client, scrape):
    before = scrape()

    client.get("/healthz")
    client.get("/api/v1/links/")  # no token: 401
    client.get("/no/such/page-4d1c")

    after = scrape()
    requests = "smartmeter_http_requests_total"
    moved = {
        (view, status): after.count(requests, view=view, method="GET", status=status)
        - before.count(requests, view=view, method="GET", status=status)
        for view, status in (("healthz", "200"), ("links", "401"), ("unmatched", "404"))
    }
    assert moved == {("healthz", "200"): 1, ("links", "401"): 1, ("unmatched", "404"): 1}
    timed = after.count("smartmeter_http_request_duration_seconds_count", view="healthz")
    assert timed - before.count("smartmeter_http_request_duration_seconds_count", view="healthz")
    assert not any("page-4d1c" in value for s in after.samples for value in s.labels.values())


# --- Top-ups ---------------------------------------------------------------------------------


def _webhook(client, capture, topup: TopUp, *, succeeded: bool):
    body = SIM.event_body(
        reference=topup.gateway_reference,
        amount=topup.amount,
        currency=topup.currency,
        succeeded=succeeded,
    )
    with capture(execute=True):  # the credit is counted once its transaction commits
        return client.post(
            "/api/v1/payments/webhooks/simulated/",
            data=body,
            content_type="application/json",
            HTTP_SIM_SIGNATURE=SIM.sign(body),
        )


def test_a_top_up_is_pending_then_credited_and_a_failed_one_is_counted(
    make_api, client, scrape, django_capture_on_commit_callbacks
):
    link = AccountLinkFactory()
    api = make_api(link.user)
    utility = link.account.utility.code
    before = scrape()
    assert before.value("smartmeter_topups_pending", utility=utility) == 0

    for key in ("k-1", "k-2"):
        response = api.post(
            f"/api/v1/accounts/{link.account_id}/topups/",
            {"amount": "1.500", "channel": "app"},
            HTTP_IDEMPOTENCY_KEY=key,
        )
        assert response.status_code == 201
    assert scrape().value("smartmeter_topups_pending", utility=utility) == 2

    paid, refused = TopUp.objects.order_by("created_at")
    assert _webhook(client, django_capture_on_commit_callbacks, paid, succeeded=True).json() == {
        "status": "credited"
    }
    failed = _webhook(client, django_capture_on_commit_callbacks, refused, succeeded=False)
    assert failed.json()["status"] == "failed"

    after = scrape()
    assert after.value("smartmeter_topups_pending", utility=utility) == 0
    assert after.value("smartmeter_topups_failed_24h", utility=utility) == 1
    credited = "smartmeter_topups_credited_total"
    assert (
        after.count(credited, utility=utility, channel="app")
        - before.count(credited, utility=utility, channel="app")
        == 1
    )


# --- Readings and charging -------------------------------------------------------------------


def test_an_ingest_moves_the_newest_reading_the_silent_meters_and_the_charging_backlog(
    make_api, scrape, settings
):
    settings.CHARGE_SHARDS = 1
    meter = MeterFactory(serial="KW-METRICS-1")  # installed in 2020, never read: not reporting
    code = meter.utility.code
    before = scrape()
    assert before.value("smartmeter_meters_not_reporting", utility=code) == 1
    assert before.value("smartmeter_readings_newest_age_seconds", utility=code) is None
    assert before.value("smartmeter_charging_backlog_meter_days", utility=code) == 0

    hes = make_api()
    hes.client.credentials(HTTP_AUTHORIZATION=f"Bearer {head_end_token(meter.utility)}")
    now = timezone.now()
    start = now.replace(minute=now.minute // 15 * 15, second=0, microsecond=0) - timedelta(
        minutes=15
    )
    response = hes.client.post(
        "/api/v1/headend/readings/",
        data=json.dumps(
            {"readings": [{"meter": meter.serial, "start": start.isoformat(), "wh": 410}]}
        ),
        content_type="application/json",
    )
    assert response.status_code in (200, 201, 202), response.content

    after = scrape()
    assert after.value("smartmeter_meters_not_reporting", utility=code) == 0
    age = after.value("smartmeter_readings_newest_age_seconds", utility=code)
    assert 0 <= age <= (now - start).total_seconds() + 60
    assert 0 <= after.value("smartmeter_ingest_newest_batch_age_seconds", utility=code) < 60
    assert after.value("smartmeter_charging_backlog_meter_days", utility=code) == 1
    assert after.value("smartmeter_charging_backlog_oldest_age_seconds", utility=code) < 60
    assert after.value("smartmeter_charging_lag_seconds") is None  # charging never ran

    charges_run(shard=0, shards=1)

    charged = scrape()
    assert charged.value("smartmeter_charging_backlog_meter_days", utility=code) == 0
    assert charged.value("smartmeter_charging_backlog_oldest_age_seconds", utility=code) is None
    assert 0 <= charged.value("smartmeter_charging_lag_seconds") < 60


@pytest.mark.django_db
def test_counts_stop_at_the_cap(scrape, settings):
    settings.METRICS_COUNT_CAP = 2
    utility = UtilityFactory()
    for n in range(3):
        MeterFactory(utility=utility, serial=f"KW-SILENT-{n}")

    assert scrape().value("smartmeter_meters_not_reporting", utility=utility.code) == 2


# --- Pushes, SMS and tasks -------------------------------------------------------------------


@pytest.mark.django_db
def test_a_push_to_a_dead_token_moves_the_push_failures(
    fcm_server, scrape, django_capture_on_commit_callbacks
):
    utility = UtilityFactory()
    user = UserFactory()
    dead, alive = DeviceFactory(user=user), DeviceFactory(user=user)
    fcm_server.unregistered.add(dead.token)  # FCM answers 404 UNREGISTERED for it
    before = scrape()

    with django_capture_on_commit_callbacks(execute=True):
        alert_create(
            user=user,
            category="outage_restored",
            dedupe_key="outage:41:restored",
            context={"area": "Salmiya, block 4", "restored_at": timezone.now(), "outage_id": 41},
            utility=utility,
        )

    after = scrape()
    pushes = "smartmeter_pushes_total"
    moved = {
        outcome: after.count(pushes, utility=utility.code, outcome=outcome)
        - before.count(pushes, utility=utility.code, outcome=outcome)
        for outcome in ("sent", "token_removed", "failed")
    }
    assert moved == {"sent": 1, "token_removed": 1, "failed": 0}
    assert [m["token"] for m in fcm_server.accepted] == [alive.token]


@shared_task(name="tests.metrics.fails")
def _fails() -> None:
    raise ValueError("a task that fails")


@pytest.mark.django_db
def test_task_outcomes_and_sms_are_counted(scrape, sms_gateway):
    tasks = "smartmeter_celery_tasks_total"
    send = "notifications.tasks.send_sms"
    before = scrape()

    # Eager retries re-apply inline; let them run instead of raising the first Retry.
    celery_app.conf.task_eager_propagates = False  # the celery_eager fixture sets it back
    sms_gateway.fail_next(503, headers={"Retry-After": "0"})  # once: a retry, then sent
    notification_tasks.send_sms.apply(args=("+96550001234", "Your balance is low", "kw-mew"))
    assert _fails.apply().failed()

    after = scrape()

    def moved(name, **labels):
        return after.count(name, **labels) - before.count(name, **labels)

    assert len(sms_gateway.messages) == 1
    assert moved(tasks, task=send, state="retried") == 1
    assert moved(tasks, task=send, state="succeeded") == 1
    assert moved(tasks, task="tests.metrics.fails", state="failed") == 1
    sms = "smartmeter_sms_total"
    assert moved(sms, utility="kw-mew", country="KW", outcome="failed") == 1
    assert moved(sms, utility="kw-mew", country="KW", outcome="sent") == 1
    assert moved(sms, utility="none", country="KW", outcome="sent") == 0


@pytest.mark.django_db
def test_an_sms_about_an_account_is_counted_under_its_utility(
    scrape, sms_gateway, celery_eager, django_capture_on_commit_callbacks
):
    account = ConsumerAccountFactory(registered_mobile="+96550007777")
    sms = "smartmeter_sms_total"
    before = scrape()

    with django_capture_on_commit_callbacks(execute=True):
        payments.counter_payment_record(
            account=account, amount=Decimal("2.500"), cashier=UserFactory(is_staff=True)
        )

    after = scrape()
    assert [m["to"] for m in sms_gateway.messages] == ["+96550007777"]  # the receipt
    labels = {"country": "KW", "outcome": "sent"}
    assert (
        after.count(sms, utility="kw-mew", **labels) - before.count(sms, utility="kw-mew", **labels)
        == 1
    )
    assert after.count(sms, utility="none", **labels) == before.count(sms, utility="none", **labels)


# Marked for the broker passes (.ci/run runs `-m worker` on RabbitMQ): each broker's depth is read
# its own way (Redis lists, a passive declare on AMQP, files on the filesystem broker).
@pytest.mark.worker
@pytest.mark.django_db
def test_the_queue_depth_follows_the_tasks_waiting(scrape, celery_eager):
    celery_app.conf.task_always_eager = False  # published, and no worker takes it
    alerts = queue_name("alerts")
    try:
        before = scrape().value("smartmeter_celery_queue_depth", queue=alerts)
        notification_tasks.send_sms.delay("+96550001234", "waiting")
        notification_tasks.send_sms.delay("+96550001234", "waiting too")

        page = scrape()
    finally:
        with celery_app.connection_for_write() as conn:
            conn.default_channel.queue_purge(alerts)
    assert page.value("smartmeter_celery_queue_depth", queue=alerts) == before + 2
    assert page.value("smartmeter_metrics_source_up", source="broker") == 1
    assert {s.labels["queue"] for s in page.families["smartmeter_celery_queue_depth"].samples} == {
        queue_name(kind) for kind in ("codes", "payments", "alerts", "", "bulk")
    }


@pytest.mark.django_db
def test_an_unreachable_broker_is_a_figure_not_a_failed_scrape(scrape, monkeypatch):
    broker_down(monkeypatch)

    page = scrape()

    assert page.value("smartmeter_metrics_source_up", source="broker") == 0
    assert page.value("smartmeter_metrics_source_up", source="database") == 1
    assert page.families["smartmeter_celery_queue_depth"].samples == []


@pytest.mark.django_db
def test_replica_lag_is_exported_for_each_replica(scrape):
    page = scrape()

    lags = replica_lag_seconds()  # {} without replicas; the standby's figures in the replica pass
    up = {s.labels["alias"]: s.value for s in page.families["smartmeter_replica_up"].samples}
    lag = {
        s.labels["alias"]: s.value for s in page.families["smartmeter_replica_lag_seconds"].samples
    }
    assert up == {alias: float(seconds is not None) for alias, seconds in lags.items()}
    assert set(lag) == {alias for alias, seconds in lags.items() if seconds is not None}
    assert page.value("smartmeter_metrics_source_up", source="replicas") == 1


@pytest.mark.django_db
def test_figures_are_kept_for_a_few_seconds(scrape, settings):
    utility = UtilityFactory()
    settings.METRICS_CACHE_SECONDS = 60
    figures.cache.delete(figures.CACHE_KEY)
    try:
        assert scrape().value("smartmeter_meters_not_reporting", utility=utility.code) == 0
        MeterFactory(utility=utility, serial="KW-LATE-1")
        with CaptureQueriesContext(connection) as queries:
            page = scrape()
        assert page.value("smartmeter_meters_not_reporting", utility=utility.code) == 0
        assert not [q for q in queries if "meters_meter" in q["sql"]]
    finally:
        figures.cache.delete(figures.CACHE_KEY)


# --- Several processes -----------------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_scrape_sees_what_a_celery_worker_counted(scrape, sms_gateway, celery_eager, settings):
    celery_app.conf.task_always_eager = False
    settings.SMS_BACKEND = "locmem"  # were the task run here, the gateway would get nothing
    env = {
        **os.environ,
        "SMS_BACKEND": "http",
        "SMS_HTTP_URL": sms_gateway.url,
        "SMS_HTTP_TOKEN": sms_gateway.token,
        "CELERY_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
    }
    assert env["PROMETHEUS_MULTIPROC_DIR"]  # settings named it: the worker writes there too
    code_task = "notifications.tasks.send_code_sms"
    sms = {"utility": "none", "country": "KW", "outcome": "sent"}  # a sign-in code: no utility's
    first = scrape()
    before = first.count("smartmeter_celery_tasks_total", task=code_task, state="succeeded")
    sms_before = first.count("smartmeter_sms_total", **sms)

    with worker_process(env=env, queue=settings.CELERY_TASK_DEFAULT_QUEUE) as worker:
        notification_tasks.send_code_sms.delay("+96560001111", "123456 is your code")
        sms_gateway.wait_for(1, timeout=60)
        deadline = time.monotonic() + 30
        while True:  # the worker counts the task once it has returned
            after = scrape()
            done = after.count("smartmeter_celery_tasks_total", task=code_task, state="succeeded")
            if done > before or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert worker.poll() is None
    assert done == before + 1
    assert after.count("smartmeter_sms_total", **sms) == sms_before + 1


# --- Plans -----------------------------------------------------------------------------------


HISTORY = 20_000


@pytest.fixture
def postgresql(db):
    if connection.vendor != "postgresql":
        pytest.skip("query plans are PostgreSQL's")


def test_the_figures_read_indexes_not_every_meter_or_meter_day(postgresql, settings):
    """At a million meters a scrape must not read them all: over a long history beside a little
    work, ANALYZEd, no plan of the figures scans meters, meter-days or top-ups."""
    settings.CHARGE_SHARDS = 1
    utility = UtilityFactory()
    now = timezone.now()
    meters = meters_bulk(utility, HISTORY, "FIG", last_reading_at=now - timedelta(minutes=20))
    meters_bulk(utility, 3, "SILENT", last_reading_at=now - timedelta(days=3))
    today = now.astimezone(UTC).date()
    MeterDay.objects.bulk_create(
        MeterDay(
            meter=meter,
            day=today - timedelta(days=n),
            values=bytes(384),
            quality=bytes(96),
            updated_at=now - timedelta(days=n, hours=1),
        )
        for meter in meters[:4000]
        for n in range(5)
    )
    ChargeCursor.objects.create(name="energy:0/1", position=now - timedelta(minutes=30))
    link = AccountLinkFactory(account__utility=utility)
    TopUp.objects.bulk_create(
        TopUp(
            account=link.account,
            amount="1.000",
            currency="KWD",
            channel="app",
            status=TopUp.Status.SUCCEEDED if n else TopUp.Status.PENDING,
            created_at=now - timedelta(minutes=n),
        )
        for n in range(HISTORY)
    )
    analyze("meters_meter", "meters_meterday", "billing_topup", "accounts_consumeraccount")

    read = figures.figures_read()

    assert read.sources["database"] == 1
    one = read.utilities[utility.pk]
    assert (one.not_reporting, one.topups_pending, one.backlog) == (3, 1, 0)
    queries = [
        figures.meters_query(now=now),
        figures.backlog_query(since=figures.charging_position()),
        *figures.topups_queries(now=now).values(),
    ]
    for table in ("meters_meter", "meters_meterday", "billing_topup"):
        read_by = [query for query in queries if table in query.sql]
        assert read_by, table
        for query in read_by:
            plan = explain(connection.ops.compose_sql(query.sql, query.params))
            assert not seq_scans(plan, table), (query.sql, json.dumps(plan)[:3000])
    used = [index_names(explain(connection.ops.compose_sql(q.sql, q.params))) for q in queries]
    assert "meter_last_reading" in used[0], used[0]
    assert any("updated_at" in name for name in used[1]), used[1]
    assert "topup_pending_reconcile" in used[2] and "topup_failed_at" in used[3], used[2:]
    assert not math.isnan(one.newest_reading)
    assert abs(one.newest_reading - (now - timedelta(minutes=20)).timestamp()) < 1
    assert datetime.fromtimestamp(read.charging_position, UTC) < now


# --- The dashboard ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_every_dashboard_panel_asks_for_a_metric_the_endpoint_exports(scrape):
    page = scrape()
    exported = set(page.families) | {s.name for s in page.samples}
    # The families of counters and histograms, as a query names them.
    for family in page.families.values():
        if family.type == "counter":
            exported.add(f"{family.name}_total")
        if family.type == "histogram":
            exported |= {f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count")}
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p.get("type") != "row"]
    assert panels
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\bsmartmeter_[a-z0-9_]+", target["expr"]))
            assert names, (panel["title"], target["expr"])
            assert names <= exported, (panel["title"], names - exported)
