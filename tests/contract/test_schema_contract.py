"""The OpenAPI schema is the contract, checked by schemathesis against the app in-process (WSGI).

Every operation of /api/schema/ is called with data generated from the schema, twice: with the
credentials its security scheme names (a consumer's JWT, a head-end token, a payment partner's
token) and with none. Each answer must not be a server error, and its status, media type and body
must be the ones the schema documents; an input the schema calls valid must not be refused as
invalid (400, 422).

Bounded and deterministic: hypothesis derandomized (the same cases on every run), no shrinking
phase, no example database, no deadline (our tests never assert timings). Failures are collected
over all operations and reported together, one line per operation and check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.services import tokens_issue
from billing import payments
from meters import services as meter_services
from tests.billing.factories import flat_tariff
from tests.meters.factories import MeterFactory, head_end_token
from tests.notifications.factories import DeviceFactory, NotificationFactory
from tests.servicerequests.factories import ServiceRequestFactory, consumer, kuwait

pytestmark = pytest.mark.django_db(transaction=True)  # requests commit; on-commit work runs

# Per operation and generation mode (positive, negative): enough to reach each operation's
# branches, few enough that both runs take a few minutes on either backend.
MAX_EXAMPLES = 12

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    positive_data_acceptance,
]

# A valid input may still be refused by state (409: a closed account, a settled request), by a
# missing object (404: a generated id names nothing; 401/403: no or another's credential) or by a
# budget (429). These are documented on the operations that answer them; a 400 or 422 is not
# among them: a documented-valid input refused as invalid fails the run. A 5xx is reported by
# not_a_server_error, not twice.
ACCEPTED = ["2xx", "401", "403", "404", "409", "429", "5xx"]

# Operations whose valid-looking input is refused (400) by a rule no JSON Schema can state: a
# signature over the body, a one-time code or token only the server issued, check digits, a form
# defined per request type as data. Each is named with its reason; all other checks still run.
REFUSED_BY_SECRET_OR_DATA = {
    ("POST", "/api/v1/payments/webhooks/{gateway}/"): "HMAC signature of the body",
    ("POST", "/api/v1/auth/token/"): "the code sent by SMS",
    ("POST", "/api/v1/links/confirm/"): "the code sent by SMS",
    ("POST", "/api/v1/auth/logout/"): "a refresh token the server issued",
    ("POST", "/api/v1/auth/token/refresh/"): "a refresh token the server issued",
    ("GET", "/api/v1/partners/payment-codes/{code}/"): "ISO 7064 MOD 97-10 check digits",
    ("POST", "/api/v1/partners/payment-codes/{code}/payments/"): "ISO 7064 check digits",
    ("POST", "/api/v1/service-requests/"): "details follow the request type's form (data)",
    ("POST", "/api/v1/headend/readings/"): "readings must name the utility's meters, in the past",
    ("POST", "/api/v1/headend/events/"): "events must name the utility's meters, in the past",
    ("POST", "/api/v1/service-requests/{request_id}/attachments/"): "a JPEG, PNG or PDF file",
    ("POST", "/api/v1/auth/code/"): "a mobile number valid in its country's numbering plan",
    ("PATCH", "/api/v1/utility/accounts/{consumer_id}/"): "a mobile number valid in its plan",
    ("POST", "/api/v1/links/"): "a utility code of GET /utilities/ (data)",
    ("POST", "/api/v1/accounts/{account_id}/shares/"): "a mobile number valid in its plan",
    ("POST", "/api/v1/payment-methods/"): "a card token only the gateway issued",
    # Rules across fields: the monthly cap at least the amount, a schedule's fields by its trigger.
    ("POST", "/api/v1/accounts/{account_id}/auto-topups/"): "the cap at least the amount",
    (
        "PATCH",
        "/api/v1/accounts/{account_id}/auto-topups/{rule_id}/",
    ): "the cap at least the amount",
}


@dataclass
class World:
    """Demo-like data: a Kuwaiti consumer with a linked account and a meter with readings,
    a notification, a device, a service request, a top-up, a head-end and a payment partner."""

    tokens: dict[str, str]
    ids: dict[str, object]
    minimum: Decimal
    requests: int = 0
    failures: dict[tuple[str, str, str], str] = field(default_factory=dict)


@pytest.fixture
def world() -> World:
    utility = kuwait()
    flat_tariff(utility)
    user, account = consumer(utility)
    meter = MeterFactory(utility=utility, account=account)
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(3)
    meter_services.readings_ingest(
        utility=utility,
        blocks=[{"meter": meter.serial, "start": start.isoformat(), "values": [120] * 96 * 2}],
        source="test",
    )
    notification = NotificationFactory(user=user)
    device = DeviceFactory(user=user)
    request = ServiceRequestFactory(account=account)
    topup, _url = payments.topup_start(
        account=account, amount=Decimal("5.000"), channel="app", user=user
    )
    _partner, partner_token = payments.partner_token_create(utility=utility, name="network")
    return World(
        tokens={
            "jwtAuth": tokens_issue(user=user).access,
            "headEndToken": head_end_token(utility),
            "paymentPartnerToken": partner_token,
        },
        ids={
            "account_id": account.pk,
            "meter_id": meter.pk,
            "notification_id": str(notification.pk),
            "device_id": device.pk,
            "request_id": request.pk,
            "topup_id": str(topup.pk),
            "code": payments.payment_code_for(account),
            "consumer_id": account.consumer_id,
            "gateway": "simulated",
        },
        minimum=utility.min_topup,
    )


def _schema():
    return schemathesis.openapi.from_wsgi(
        "/api/schema/",
        WSGIHandler(),
        config=schemathesis.Config.from_dict(
            {
                "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}},
                # The API refuses NUL in any text, keys included (the schema's description says
                # so; JSON Schema cannot): valid cases carry none, invalid ones still may.
                "generation": {"deterministic": True, "allow-x00": False},
            }
        ),
    )


def _keep_to_the_prose(case, world: World) -> None:
    """What a description says and a JSON Schema cannot, kept in positive cases: a period's end
    after its start and within the longest period of its grouping; dates in this century; an
    amount between the utility's minimum and its cap."""
    query = case.query or {}
    if "period_from" in query or "period_to" in query:
        days = {"interval": 31, "hour": 92}.get(query.get("group_by"), 31)
        if "pattern" in case.path:
            days = 92
        seed = sum(map(ord, str(query.get("period_from", "")) + str(query.get("period_to", ""))))
        first = date(2025, 1, 1) + timedelta(seed % 700)
        query["period_from"] = first.isoformat()
        query["period_to"] = (first + timedelta(1 + seed % days)).isoformat()
    amount = case.body.get("amount") if isinstance(case.body, dict) else None
    if isinstance(amount, str) and re.fullmatch(r"\d+(\.\d+)?", amount):
        case.body["amount"] = str(world.minimum + Decimal(amount) % 50)


def _run(world: World, *, credentials: bool) -> None:
    schema = _schema()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 50, "the schema lost operations"
    for operation in operations:
        security = operation.definition.raw.get("security") or [{}]
        scheme = next((name for req in security for name in req), None)
        headers = {}
        if credentials and scheme:
            headers["Authorization"] = f"Bearer {world.tokens[scheme]}"
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _exercise(world, operation, mode, headers)


def _exercise(world: World, operation, mode: GenerationMode, headers: dict) -> None:
    key = (operation.method.upper(), operation.path)

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), real=st.booleans())
    def check(case, real: bool) -> None:
        # Half the cases name the world's own objects, so that answers beyond 404 are checked.
        if real and case.path_parameters:
            for name in case.path_parameters:
                if name in world.ids and not (name == "link_id" and case.method == "DELETE"):
                    case.path_parameters[name] = world.ids[name]
        if mode == GenerationMode.POSITIVE:
            _keep_to_the_prose(case, world)
        checks = CHECKS
        if key in REFUSED_BY_SECRET_OR_DATA:
            checks = [c for c in CHECKS if c is not positive_data_acceptance]
        world.requests += 1
        response = case.call(headers=headers)
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                name = f"{key[0]} {key[1]}"
                title = re.sub(r"\s+", " ", failure.title)
                world.failures.setdefault(
                    (name, title, mode.value),
                    f"{name} [{mode.value}] {title}: {failure.message[:300]!r}"
                    f"\n    {case.as_curl_command(headers=headers)[:600]}"
                    f"\n    -> {response.status_code} {response.content[:300]!r}",
                )

    try:
        check()
    except Unsatisfiable:
        # Nothing to make invalid (no parameters, no body): the positive cases said it all.
        assert mode == GenerationMode.NEGATIVE, key


@pytest.mark.parametrize("credentials", [True, False], ids=["with-credentials", "anonymous"])
def test_every_operation_keeps_to_the_schema(world, credentials):
    _run(world, credentials=credentials)
    print(f"schemathesis: {len(world.failures)} failing checks in {world.requests} requests")
    assert not world.failures, f"{len(world.failures)} failing checks:\n" + "\n".join(
        world.failures.values()
    )
