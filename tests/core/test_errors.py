"""Every 4xx speaks one format: {"error": {"code", "message", "fields"}}."""

from __future__ import annotations

from accounts.models import OneTimeCode


def assert_error(response, status: int, code: str):
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert isinstance(error["fields"], dict)
    return error


def test_malformed_json_is_a_400(api):
    response = api.client.post(
        "/api/v1/auth/code/", data=b'{"phone": ', content_type="application/json"
    )
    assert_error(response, 400, "parse_error")


def test_an_oversize_body_is_a_413_and_writes_nothing(api, settings):
    body = (
        b'{"phone": "+96550001234", "padding": "'
        + b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
        + b'"}'
    )
    response = api.client.post("/api/v1/auth/code/", data=body, content_type="application/json")
    assert_error(response, 413, "payload_too_large")
    assert not OneTimeCode.objects.exists()


def test_a_form_body_is_a_415(api):
    response = api.client.post("/api/v1/auth/code/", data={"phone": "+96550001234"})
    assert_error(response, 415, "unsupported_media_type")


def test_a_json_list_instead_of_an_object_is_a_400(api):
    response = api.client.post(
        "/api/v1/auth/code/", data=b"[1, 2]", content_type="application/json"
    )
    assert_error(response, 400, "invalid")


def test_unknown_api_paths_answer_json(api):
    assert_error(api.get("/api/v1/no-such-thing/"), 404, "not_found")


def test_a_wrong_method_is_a_405(api):
    assert_error(api.get("/api/v1/auth/code/"), 405, "method_not_allowed")


def test_field_errors_name_their_field_and_code(api):
    error = assert_error(api.post("/api/v1/auth/code/", {"language": "fr"}), 400, "invalid")
    assert set(error["fields"]) == {"phone", "language"}
    assert error["fields"]["phone"][0]["code"] == "required"
    assert error["fields"]["language"][0]["code"] == "invalid_choice"


def test_the_log_keeps_tracebacks_for_server_errors_only():
    """Every admin 403 logged its whole PermissionDenied traceback: thousands of lines that buried
    the server errors. The console handler of the settings' LOGGING keeps them for 5xx only."""
    import logging
    import sys

    from core.logs import ClientErrorsWithoutTraceback

    console = next(
        h
        for h in logging.getLogger().handlers
        if any(isinstance(f, ClientErrorsWithoutTraceback) for f in h.filters)
    )

    def written(status: int) -> str:
        try:
            raise PermissionError("refused")
        except PermissionError:
            record = logging.getLogger("django.request").makeRecord(
                "django.request", logging.WARNING, __file__, 1, "Forbidden: /admin/x/", (),
                sys.exc_info(), extra={"status_code": status},
            )  # fmt: skip
        assert console.filter(record)
        return console.format(record)

    assert "Traceback" not in written(403) and "Forbidden: /admin/x/" in written(403)
    assert "Traceback" in written(500)


def _database_error(cause: Exception | None):
    from django.db import OperationalError

    error = OperationalError(str(cause) if cause else "server closed the connection unexpectedly")
    error.__cause__ = cause
    return error


def test_a_database_going_away_is_a_503_to_retry_and_a_fault_of_ours_is_not():
    """A broken connection, a server shutting down, a deadlock or a busy SQLite file may pass in a
    moment: 503 with Retry-After. A statement timeout, a full disk or a missing table will not:
    left to the 500 handler, which logs the traceback."""
    import sqlite3

    import psycopg.errors

    from core.errors import api_exception_handler

    for cause in (
        None,  # no connection could be made, or it broke mid-query (the client's own error)
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.DeadlockDetected("deadlock detected"),
        psycopg.errors.SerializationFailure("could not serialize access"),
        psycopg.errors.ConnectionFailure("connection failure"),
        sqlite3.OperationalError("database is locked"),
    ):
        response = api_exception_handler(_database_error(cause), {})
        assert response is not None and response.status_code == 503, cause
        assert response.data["error"]["code"] == "database_unavailable"
        assert response.headers["Retry-After"] == "1"
    for cause in (
        psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
        psycopg.errors.DiskFull("could not extend file"),
        psycopg.errors.ProgramLimitExceeded("index row size exceeds maximum"),
        sqlite3.OperationalError("no such table: billing_topup"),
    ):
        assert api_exception_handler(_database_error(cause), {}) is None, cause
