from __future__ import annotations

import json

import yaml

from config.celery import app as celery_app


def test_healthz_reports_database_and_broker(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_healthz_is_503_when_the_broker_is_down(client, db):
    previous = celery_app.conf.broker_url
    celery_app.conf.broker_url = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
    try:
        response = client.get("/healthz")
    finally:
        celery_app.conf.broker_url = previous
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "ok"
    assert response.json()["checks"]["broker"].startswith("error")


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
