from __future__ import annotations

import json
import os

import yaml

from config.celery import app as celery_app
from core import apis as core_apis


def test_healthz_reports_database_and_broker(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def broker_down(monkeypatch) -> None:
    """The broker's URL points where nothing listens (the discard port). Celery reads
    CELERY_BROKER_URL from the environment before its own setting: both are changed."""
    down = "redis://127.0.0.1:9/0"
    if "CELERY_BROKER_URL" in os.environ:
        monkeypatch.setenv("CELERY_BROKER_URL", down)
    monkeypatch.setattr(celery_app.conf, "broker_url", down)


def test_healthz_is_503_when_the_broker_is_down(client, db, monkeypatch):
    broker_down(monkeypatch)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "ok"
    assert response.json()["checks"]["broker"].startswith("error")


def test_healthz_asks_the_broker_once_in_a_while_not_on_every_call(
    client, db, settings, monkeypatch
):
    settings.HEALTHZ_BROKER_CACHE_SECONDS = 60
    core_apis._broker_checks.clear()  # nothing asked yet in this process
    opened = []
    real = celery_app.connection_for_write

    def counted(*args, **kwargs):
        opened.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(celery_app, "connection_for_write", counted)

    answers = [client.get("/healthz") for _ in range(5)]

    assert [a.status_code for a in answers] == [200] * 5
    assert {a.json()["checks"]["broker"] for a in answers} == {"ok"}
    assert len(opened) == 1

    settings.HEALTHZ_BROKER_CACHE_SECONDS = 0  # every call asks again
    client.get("/healthz")
    assert len(opened) == 2


def test_the_schema_describes_the_api(client, db):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    for path in [
        "/api/v1/auth/code/",
        "/api/v1/links/",
        "/api/v1/links/confirm/",
        "/api/v1/devices/",
    ]:
        assert path in schema["paths"], path


def test_the_docs_page_works_offline(client, db):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    assert b"swagger-ui" in page.content
    # The Swagger UI assets come from the sidecar package via our static files, not a CDN.
    assert b"cdn.jsdelivr" not in page.content and b"unpkg.com" not in page.content


def test_the_schema_is_json_when_asked_for(client, db):
    by_query = client.get("/api/schema/?format=json")
    by_accept = client.get("/api/schema/", HTTP_ACCEPT="application/json")

    for response in (by_query, by_accept):
        assert response.status_code == 200
        assert response["Content-Type"].startswith("application/")
        assert "json" in response["Content-Type"]
        assert json.loads(response.content)["openapi"].startswith("3.")
    assert json.loads(by_query.content) == yaml.safe_load(client.get("/api/schema/").content)
