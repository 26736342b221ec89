"""Payment gateways: the one place that talks to card processors.

A gateway makes a hosted checkout for a top-up and signs the webhook that tells us its outcome.
`simulated` (the default) is a complete stand-in: its checkout page is served by this project
(/pay/simulated/<reference>/), and paying there sends a signed webhook to our endpoint over HTTP,
as a real gateway would. Real gateways plug in by adding a class with the same three methods.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from core.errors import DomainError


@dataclass(frozen=True)
class Checkout:
    reference: str
    url: str


@dataclass(frozen=True)
class PaymentEvent:
    event_id: str
    kind: str  # payment.succeeded | payment.failed
    reference: str
    amount: Decimal
    currency: str
    raw: dict


class SimulatedGateway:
    name = "simulated"
    header = "HTTP_SIM_SIGNATURE"  # Sim-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>

    def checkout_create(self, *, topup_id: str, amount: Decimal, currency: str) -> Checkout:
        reference = f"sim_{secrets.token_urlsafe(16)}"
        return Checkout(
            reference=reference, url=f"{settings.PUBLIC_BASE_URL}/pay/simulated/{reference}/"
        )

    @staticmethod
    def sign(body: bytes, *, timestamp: int | None = None) -> str:
        timestamp = int(time.time()) if timestamp is None else timestamp
        digest = hmac.new(
            settings.PAYMENT_WEBHOOK_SECRET.encode(),
            f"{timestamp}.".encode() + body,
            hashlib.sha256,
        ).hexdigest()
        return f"t={timestamp},v1={digest}"

    def webhook_verify(self, *, body: bytes, meta: dict) -> PaymentEvent:
        """Check the signature and its timestamp, then read the event. Refuses with DomainError."""
        header = meta.get(self.header, "")
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        try:
            timestamp = int(parts.get("t", ""))
        except ValueError:
            raise DomainError("Missing or malformed signature.", code="bad_signature") from None
        if abs(time.time() - timestamp) > settings.PAYMENT_WEBHOOK_TOLERANCE_SECONDS:
            raise DomainError(
                "The signature's timestamp is too old or in the future.", code="stale_signature"
            )
        expected = self.sign(body, timestamp=timestamp).split("v1=", 1)[1]
        if not hmac.compare_digest(expected, parts.get("v1", "")):
            raise DomainError("The signature does not match.", code="bad_signature")
        try:
            data = json.loads(body, parse_float=Decimal)
            return PaymentEvent(
                event_id=str(data["id"]),
                kind=str(data["type"]),
                reference=str(data["reference"]),
                amount=Decimal(str(data["amount"])),
                currency=str(data["currency"]),
                raw=json.loads(body),
            )
        except (ValueError, KeyError, TypeError, ArithmeticError):
            raise DomainError("The event is malformed.", code="malformed_event") from None

    def event_body(
        self, *, reference: str, amount: Decimal, currency: str, succeeded: bool
    ) -> bytes:
        return json.dumps(
            {
                "id": f"evt_{secrets.token_hex(12)}",
                "type": "payment.succeeded" if succeeded else "payment.failed",
                "reference": reference,
                "amount": str(amount),
                "currency": currency,
            }
        ).encode()


GATEWAYS = {"simulated": SimulatedGateway()}


def gateway_get(name: str | None = None):
    try:
        return GATEWAYS[name or settings.PAYMENT_GATEWAY]
    except KeyError:
        raise DomainError(f"No payment gateway {name!r}.", code="unknown_gateway") from None
