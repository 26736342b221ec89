"""Every bad input is a 4xx in the one error format, never a 500: JSON too deep or holding NUL,
amounts Python's Decimal would take but a person would not write, dates near year 1 or 9999, NUL
in query strings, paths, cookies and forms (PostgreSQL refuses NUL in text, even in a filter)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from core.errors import DomainError
from core.money import money_parse
from core.parsers import MAX_JSON_DEPTH, json_loads_bounded
from core.timebuckets import local_moment_parse
from tests.accounts.factories import AccountLinkFactory
from tests.meters.factories import MeterFactory

KUWAIT = ZoneInfo("Asia/Kuwait")
DEEP = b"[" * 2048 + b"]" * 2048  # as the probe sent it: 2 KB deep


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def refusal(response) -> str:
    """The error code of a 4xx in the one error format."""
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    body = response.json()
    assert set(body["error"]) >= {"code", "message", "fields"}
    return body["error"]["code"]


@pytest.fixture
def nul_refused(settings):
    """RefuseNulMiddleware where config/settings.py is to put it: right after SecurityMiddleware."""
    settings.MIDDLEWARE = [
        settings.MIDDLEWARE[0],
        "core.middleware.RefuseNulMiddleware",
        *settings.MIDDLEWARE[1:],
    ]


@pytest.fixture
def link(db):
    return AccountLinkFactory()


# --- JSON ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/v1/auth/code/", "/api/v1/auth/token/", "/api/v1/auth/token/refresh/"]
)
def test_json_nested_2_kb_deep_is_refused_on_sign_in(client, db, path):
    response = client.post(path, data=DEEP, content_type="application/json")
    assert refusal(response) == "too_deep"


def test_json_too_deep_is_refused_where_a_consumer_writes(make_api, link):
    api = make_api(link.user)
    response = api.client.post(
        f"/api/v1/accounts/{link.account_id}/topups/",
        data=DEEP,
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="deep",
    )
    assert refusal(response) == "too_deep"


def test_json_depth_is_bounded_at_a_documented_level():
    assert json_loads_bounded(nested(MAX_JSON_DEPTH)) is not None
    assert json_loads_bounded(b'{"a": ' * MAX_JSON_DEPTH + b"1" + b"}" * MAX_JSON_DEPTH)
    for body in (nested(MAX_JSON_DEPTH + 1), b'{"a": [' * 20 + b"1" + b"]}" * 20):
        with pytest.raises(DomainError) as refused:
            json_loads_bounded(body)
        assert refused.value.code == "too_deep"


@pytest.mark.parametrize(
    "body",
    [
        b'{"mobile": "+965\\u0000"}',
        b'{"mobile\\u0000": "+96550001234"}',
        b'{"mobile": "+96550001234", "x": [{"y": ["\\u0000"]}]}',
    ],
)
def test_nul_anywhere_in_json_is_refused(client, db, body):
    response = client.post("/api/v1/auth/code/", data=body, content_type="application/json")
    assert refusal(response) == "invalid_character"


def test_json_reads_what_clients_send_and_refuses_what_json_is_not():
    assert json_loads_bounded(b'{"amount": 1.005, "n": 2, "t": "\\\\u0000"}') == {
        "amount": Decimal("1.005"),
        "n": 2,
        "t": "\\u0000",  # a backslash and "u0000" as text: no NUL in it
    }
    assert json_loads_bounded(b"1e400") == Decimal("1E+400")
    for body in (b"[NaN]", b"[Infinity]", b"\xff", b"[1,", b"9" * 5000):
        with pytest.raises(DomainError) as refused:
            json_loads_bounded(body)
        assert refused.value.code == "parse_error"


# --- Money --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["1_000", "1 000", "١٠", "0x10", "Infinity", "-Infinity", "sNaN", "1.", ".5", True, [1]]
)
def test_amounts_decimal_would_take_but_a_person_would_not_write_are_refused(raw):
    with pytest.raises(DomainError) as refused:
        money_parse(raw, minor_unit=3)
    assert refused.value.code == "invalid_amount"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1000", "1000.000"),
        (" 1.5 ", "1.500"),
        ("15e-1", "1.500"),
        (Decimal("2.25"), "2.250"),
        (7, "7.000"),
    ],
)
def test_plain_amounts_and_json_numbers_within_bounds_are_taken(raw, expected):
    assert str(money_parse(raw, minor_unit=3)) == expected


@pytest.mark.parametrize("raw", [Decimal("1E+400"), "1e999999999999999999", 10**30])
def test_amounts_beyond_the_bound_are_refused_before_arithmetic(raw):
    with pytest.raises(DomainError) as refused:
        money_parse(raw, minor_unit=3)
    assert refused.value.code == "amount_too_large"


def test_a_tiny_exponent_is_too_many_decimals_not_zero():
    with pytest.raises(DomainError) as refused:
        money_parse("1e-999999999", minor_unit=3)
    assert refused.value.code == "too_many_decimals"


# --- Dates --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["0001-01-01", "9999-12-31", "1999-12-31", "0001-01-01T00:00:00+05:00"]
)
def test_period_edges_outside_the_sane_range_are_refused(raw):
    with pytest.raises(DomainError) as refused:
        local_moment_parse(raw, KUWAIT, field="period_from")
    assert refused.value.code == "period_out_of_range"
    assert "period_from" in refused.value.fields


def test_period_edges_at_the_ends_of_the_range_are_taken():
    assert local_moment_parse("2000-01-01", KUWAIT, field="f") == datetime(
        1999, 12, 31, 21, tzinfo=UTC
    )
    assert local_moment_parse("2100-01-01T00:00:00+00:00", KUWAIT, field="f") == datetime(
        2100, 1, 1, tzinfo=UTC
    )


@pytest.mark.parametrize("edge", ["0001-01-01", "9999-12-30", "0001-01-01T00:00:00+03:00"])
@pytest.mark.parametrize("endpoint", ["consumption", "pattern", "export"])
def test_meter_periods_near_year_1_or_9999_are_refused(make_api, link, endpoint, edge):
    meter = MeterFactory(account=link.account, utility=link.account.utility)
    api = make_api(link.user)
    response = api.get(
        f"/api/v1/meters/{meter.pk}/{endpoint}/",
        {"period_from": edge, "period_to": "9999-12-31"},
    )
    assert refusal(response) == "period_out_of_range"


@pytest.mark.parametrize("param", ["period_from", "period_to"])
def test_statement_periods_near_year_1_are_refused(make_api, link, param):
    api = make_api(link.user)
    response = api.get(f"/api/v1/accounts/{link.account_id}/statement/", {param: "0001-01-01"})
    assert refusal(response) == "period_out_of_range"


# --- NUL outside JSON -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/service-requests/?status=%00",
        "/api/v1/notifications/?kind=a%00",
        "/api/v1/partners/payment-codes/12%0034/",
        "/api/v1/payments/webhooks/sim%00ulated/",
    ],
)
def test_nul_in_a_query_string_or_path_is_refused(nul_refused, make_api, link, path):
    response = make_api(link.user).get(path)
    assert refusal(response) == "invalid_character"


def test_nul_in_a_form_body_is_refused(nul_refused, client, db):
    response = client.post(
        "/admin/login/",
        data="username=a%00&password=x",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    # The API reads no forms: it answers that, the body unread.
    api = client.post(
        "/api/v1/auth/code/", data="phone=%00", content_type="application/x-www-form-urlencoded"
    )
    assert refusal(api) == "unsupported_media_type"


def test_nul_in_a_cookie_is_refused(nul_refused, client, db):
    """The session cookie is looked up as given: on PostgreSQL this was a 500 on every admin page."""
    client.cookies["sessionid"] = "abcdefgh\x00ijkl"
    assert client.get("/admin/").status_code == 400
    assert refusal(client.get("/api/v1/utilities/")) == "invalid_character"


def test_nul_in_the_admin_login_form_is_a_400_page_not_a_500(nul_refused, client, db):
    response = client.post("/admin/login/", {"username": "admin\x00", "password": "x"})
    assert response.status_code == 400


def test_nul_in_a_multipart_upload_never_reaches_the_database(
    nul_refused, make_api, tmp_path, settings
):
    from tests.servicerequests.factories import ServiceRequestFactory, consumer, saudi

    settings.MEDIA_ROOT = tmp_path
    user, account = consumer(saudi())
    request = ServiceRequestFactory(account=account)
    api = make_api(user)
    url = f"/api/v1/service-requests/{request.pk}/attachments/"
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200

    field = api.client.post(
        url,
        {"file": SimpleUploadedFile("a.png", png, "image/png"), "note": "x\x00"},
        format="multipart",
    )
    # Django's multipart parser drops NUL from a file name itself.
    named = api.client.post(
        url, {"file": SimpleUploadedFile("b\x00.png", png, "image/png")}, format="multipart"
    )

    # The attachment view reads the file alone: a NUL in a field it never reads stores nothing.
    assert field.status_code == 201, field.content
    assert named.status_code == 201, named.content
    names = list(request.attachments.order_by("pk").values_list("original_name", flat=True))
    assert names == ["a.png", "b.png"]


def test_clean_requests_pass_the_nul_check(nul_refused, make_api, link):
    api = make_api(link.user)
    response = api.get(f"/api/v1/accounts/{link.account_id}/statement/", {"kind": "topup"})
    assert response.status_code == 200
    assert json.loads(response.content)["results"] == []


# --- Numbers and dates in a service request's details -----------------------------------------------


@pytest.mark.parametrize(
    ("details", "field", "code"),
    [
        ({"load_kw": "1_000"}, "load_kw", "invalid_number"),
        ({"load_kw": "Infinity"}, "load_kw", "invalid_number"),
        ({"load_kw": "1e999999999"}, "load_kw", "out_of_range"),
        ({"preferred_date": "0001-01-01"}, "preferred_date", "out_of_range"),
    ],
)
def test_service_request_details_are_read_as_amounts_and_periods_are(
    make_api, details, field, code
):
    from servicerequests.models import ServiceRequest
    from tests.servicerequests.factories import consumer, saudi

    user, account = consumer(saudi())
    kind = "meter_inspection" if field == "preferred_date" else "new_connection"
    base = (
        {"reason": "stopped"}
        if kind == "meter_inspection"
        else {
            "voltage": "low",
            "load_kw": "12.5",
            "premises_type": "residential",
            "plot_number": "1",
        }
    )
    response = make_api(user).post(
        "/api/v1/service-requests/",
        {"account": account.pk, "type": kind, "details": {**base, **details}},
    )
    assert refusal(response) == "invalid"
    assert response.json()["error"]["fields"][f"details.{field}"][0]["code"] == code
    assert not ServiceRequest.objects.exists()


def test_paging_numbers_past_what_the_database_takes_answer_a_page(db):
    """?limit=99999999999999999999 was LIMIT 99999999999999999999: a 500 on PostgreSQL."""
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from billing.ledger import ledger_post
    from billing.models import LedgerEntry
    from core.http import BoundedLimitOffsetPagination

    link = AccountLinkFactory()
    ledger_post(
        account=link.account, kind="adjustment", amount=Decimal(1), key="k", description="d"
    )
    for query, size in (
        ("limit=99999999999999999999", 1),
        ("limit=9223372036854775808&offset=0", 1),
        ("offset=99999999999999999999", 0),
    ):
        request = Request(APIRequestFactory().get(f"/x/?{query}"))
        page = BoundedLimitOffsetPagination().paginate_queryset(
            LedgerEntry.objects.order_by("id"), request
        )
        assert len(list(page)) == size, query


@pytest.mark.parametrize(
    "query", ["offset=null", "limit=0", "limit=-1", "offset=-5", "limit=1.5", "limit=", "offset=²"]
)
def test_paging_numbers_that_are_not_whole_numbers_in_range_are_refused(make_api, link, query):
    """DRF read them as the default page: a client's mistake answered as if it were right."""
    response = make_api(link.user).get(f"/api/v1/accounts/{link.account_id}/statement/?{query}")

    assert refusal(response) == "invalid_page"
    name = query.split("=")[0]
    assert response.json()["error"]["fields"][name][0]["code"] == "invalid_page"
