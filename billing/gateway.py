"""Payment gateways: the one place that talks to card processors.

A gateway implements three calls. Those that reach the gateway raise TransientGatewayError
(unreachable, timed out, busy: ask again later, honouring `retry_after`) or PermanentGatewayError
(refused: asking again will not help; record it and stop):

- `checkout_create(topup_id, amount, currency)`: open a hosted checkout; its reference and URL.
- `webhook_verify(body, meta)`: check a signed event's signature and read it (DomainError if not).
- `payment_status(reference)`: what the gateway knows of a checkout: succeeded, failed, pending
  (open, nothing final yet) or unknown (it never saw it). Reconciliation settles top-ups whose
  webhook never came with it (billing.reconcile.topups_reconcile).

Saved cards (automatic top-ups, billing.autotopup; docs/auto-topup.md). The app hands the card to
the gateway's own tokenisation endpoint (a real gateway's client SDK does this), never to us; we
receive a single-use token and trade it for a reusable reference:

- `payment_method_attach(token)`: the reusable reference of a tokenised card, with what a person
  needs to recognise it (brand, last four digits, expiry). An unknown or used token: permanent.
- `charge_saved(reference, amount, currency, idempotency_key)`: charge a saved card off-session.
  Declined: PermanentGatewayError; the processor unreachable or busy: TransientGatewayError. The
  same idempotency key again is answered with the first charge and never charges twice.

`simulated` (the default) is a complete stand-in that behaves like a real gateway: its checkout
page is served by this project (/pay/simulated/<reference>/), it keeps its own books
(billing.models.SimulatedPayment), it sends the signed outcome to our webhook over HTTP and retries
with backoff from those books until delivered (a beat task, so a restart loses nothing), and it
answers status queries over HTTP with an API key. Its own side is the last section of this module.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from billing.models import SimulatedCharge, SimulatedPayment, SimulatedPaymentMethod
from core.errors import DomainError, Gone, NotFound
from core.parsers import json_loads_bounded

logger = logging.getLogger(__name__)


class GatewayError(Exception):
    pass


class TransientGatewayError(GatewayError):
    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentGatewayError(GatewayError):
    pass


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


@dataclass(frozen=True)
class PaymentStatus:
    reference: str
    status: str  # succeeded | failed | pending | unknown
    amount: Decimal | None = None
    currency: str = ""
    paid_at: datetime | None = None


STATUSES = ("succeeded", "failed", "pending", "unknown")


@dataclass(frozen=True)
class AttachedCard:
    reference: str  # reusable: what charge_saved is given
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class SavedCharge:
    reference: str  # the gateway's id of the charge
    outcome: str  # succeeded (a decline raises PermanentGatewayError)


def _retry_after(response: requests.Response) -> int | None:
    value = response.headers.get("Retry-After", "")
    return int(value) if value.isdigit() else None


class SimulatedGateway:
    name = "simulated"
    header = "HTTP_SIM_SIGNATURE"  # Sim-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>

    def checkout_create(self, *, topup_id: str, amount: Decimal, currency: str) -> Checkout:
        reference = f"sim_{secrets.token_urlsafe(16)}"
        simulated_checkout_open(reference=reference, amount=amount, currency=currency)
        return Checkout(
            reference=reference, url=f"{settings.PUBLIC_BASE_URL}/pay/simulated/{reference}/"
        )

    def payment_status(self, *, reference: str) -> PaymentStatus:
        """GET the gateway's status API, as a real gateway is asked: errors classed for retry."""
        try:
            response = requests.get(
                f"{settings.PUBLIC_BASE_URL}/pay/simulated/api/payments/{reference}/",
                headers={"Authorization": f"Bearer {settings.PAYMENT_GATEWAY_API_KEY}"},
                timeout=settings.PAYMENT_GATEWAY_TIMEOUT_SECONDS,
            )
        except requests.RequestException as exc:
            raise TransientGatewayError(f"gateway unreachable: {exc.__class__.__name__}") from exc
        if response.status_code == 404:
            return PaymentStatus(reference=reference, status="unknown")
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise TransientGatewayError(
                f"gateway answered {response.status_code}", retry_after=_retry_after(response)
            )
        if response.status_code != 200:
            raise PermanentGatewayError(f"gateway refused the query: {response.status_code}")
        try:
            data = response.json()
            status = data["status"]
            if status not in STATUSES:
                raise ValueError(status)
            paid_at = data.get("paid_at")
            return PaymentStatus(
                reference=reference,
                status=status,
                amount=Decimal(str(data["amount"])),
                currency=str(data["currency"]),
                paid_at=datetime.fromisoformat(paid_at) if paid_at else None,
            )
        except (ValueError, KeyError, TypeError, ArithmeticError, RecursionError):
            raise PermanentGatewayError("gateway answered something unreadable") from None

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
        return webhook_event_read(body)

    def payment_method_attach(self, *, token: str) -> AttachedCard:
        """Trade the app's single-use token for the card's reusable reference."""
        card = simulated_card_attach(token=token)
        return AttachedCard(
            reference=card.reference,
            brand=card.brand,
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
        )

    def charge_saved(
        self, *, reference: str, amount: Decimal, currency: str, idempotency_key: str
    ) -> SavedCharge:
        charge = simulated_charge(
            method_reference=reference,
            amount=amount,
            currency=currency,
            idempotency_key=idempotency_key,
        )
        return SavedCharge(reference=charge.reference, outcome=charge.outcome)

    def charge_find(self, *, idempotency_key: str) -> SavedCharge | None:
        """What the gateway did with a charge key, without charging: the charge, or None when
        it never charged one (a caller that gave up, or whose run may no longer be charged, asks
        this before saying it failed, lest money taken is never credited)."""
        charge = SimulatedCharge.objects.filter(idempotency_key=idempotency_key).first()
        if charge is None:
            return None
        return SavedCharge(reference=charge.reference, outcome=charge.outcome)

    def event_body(
        self,
        *,
        reference: str,
        amount: Decimal,
        currency: str,
        succeeded: bool,
        event_id: str | None = None,
    ) -> bytes:
        return json.dumps(
            {
                "id": event_id or f"evt_{secrets.token_hex(12)}",
                "type": "payment.succeeded" if succeeded else "payment.failed",
                "reference": reference,
                "amount": str(amount),
                "currency": currency,
            }
        ).encode()


GATEWAYS = {"simulated": SimulatedGateway()}

# The longest event id and reference we keep (WebhookEvent.event_id, TopUp.gateway_reference).
EVENT_TEXT_MAX = 100


def webhook_event_read(body: bytes) -> PaymentEvent:
    """A signed event's JSON, read as json_loads_bounded reads any body (too deep, or text with
    NUL: 400), then checked field by field: anything we could not store or compare (an id over
    100 characters, an amount that is not a finite number) is a malformed event, refused (400) so
    the gateway stops sending it, never a server error."""
    data = json_loads_bounded(body)
    malformed = DomainError("The event is malformed.", code="malformed_event")
    if not isinstance(data, dict):
        raise malformed
    texts = {}
    for name in ("id", "type", "reference", "currency"):
        value = data.get(name)
        if not isinstance(value, str) or not 0 < len(value) <= EVENT_TEXT_MAX:
            raise malformed
        texts[name] = value
    raw_amount = data.get("amount")
    if isinstance(raw_amount, bool) or not isinstance(raw_amount, str | int | Decimal):
        raise malformed
    try:
        amount = Decimal(str(raw_amount).strip())
    except ArithmeticError:  # decimal.InvalidOperation: not a number
        raise malformed from None
    if not amount.is_finite():  # NaN or sNaN would fail the comparison with the top-up's amount
        raise malformed
    try:
        # As sent, numbers as JSON numbers (the Decimals above would not serialize into the
        # payload column); the body has passed the bounds, so a second read is safe. A number
        # past float's range (1e400) would be stored as Infinity, which JSON columns refuse.
        raw = json.loads(body, parse_float=_finite_float)
    except ValueError:
        raise malformed from None
    return PaymentEvent(
        event_id=texts["id"],
        kind=texts["type"],
        reference=texts["reference"],
        amount=amount,
        currency=texts["currency"],
        raw=raw,
    )


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is past a float's range")
    return value


def gateway_get(name: str | None = None):
    try:
        return GATEWAYS[name or settings.PAYMENT_GATEWAY]
    except KeyError:
        raise DomainError(f"No payment gateway {name!r}.", code="unknown_gateway") from None


# --- The simulated gateway's own side -------------------------------------------------------------
# What a real gateway does on its servers: keep the checkout, take the payment, deliver the outcome
# until our endpoint accepts it, answer status queries. Nothing of ours is read or written here.

# Delivery retries: 10 s, 20 s, 40 s … at most an hour apart, 16 attempts (about 10 hours) in all.
# Reconciliation settles what is still undelivered after that.
DELIVERY_FIRST_RETRY_SECONDS = 10
DELIVERY_MAX_RETRY_SECONDS = 3600
DELIVERY_MAX_ATTEMPTS = 16
# An attempt is claimed for this long: if its worker dies mid-attempt, the outcome is due again.
DELIVERY_LEASE_SECONDS = 60
DELIVERY_TIMEOUT_SECONDS = 10
DELIVERY_BATCH = 50


def simulated_checkout_open(
    *, reference: str, amount: Decimal, currency: str, now: datetime | None = None
) -> SimulatedPayment:
    now = now or timezone.now()
    return SimulatedPayment.objects.create(
        reference=reference,
        amount=amount,
        currency=currency,
        created_at=now,
        expires_at=now + timedelta(minutes=settings.PAYMENT_CHECKOUT_VALID_MINUTES),
    )


def simulated_pay(
    *, reference: str, succeeded: bool, now: datetime | None = None
) -> SimulatedPayment:
    """The payer pays (or cancels) on the checkout page: the outcome is recorded once and its
    delivery to the merchant's webhook queued. An expired checkout takes no payment."""
    from billing.tasks import simulated_gateway_deliver

    now = now or timezone.now()
    with transaction.atomic():
        # Two clicks at once: the second finds the outcome decided and changes nothing.
        payment = SimulatedPayment.objects.select_for_update().filter(reference=reference).first()
        if payment is None:
            raise NotFound("This payment page does not exist.", code="unknown_reference")
        if payment.outcome:
            return payment
        if payment.expires_at <= now:
            raise Gone("This payment page has expired. Nothing was charged.", code="expired")
        payment.outcome = (
            SimulatedPayment.Outcome.SUCCEEDED if succeeded else SimulatedPayment.Outcome.FAILED
        )
        payment.decided_at = now
        payment.event_id = f"evt_{secrets.token_hex(12)}"
        payment.next_attempt_at = now
        payment.save(update_fields=["outcome", "decided_at", "event_id", "next_attempt_at"])
        # The row is the delivery's truth; this task only saves waiting for the next beat.
        transaction.on_commit(lambda: simulated_gateway_deliver.delay(reference))
    return payment


def simulated_status(*, reference: str) -> dict | None:
    """The status API's answer, or None when the gateway never saw the reference."""
    payment = SimulatedPayment.objects.filter(reference=reference).first()
    if payment is None:
        return None
    return {
        "reference": payment.reference,
        "status": payment.outcome or "pending",
        "amount": str(payment.amount),
        "currency": payment.currency,
        "paid_at": payment.decided_at.isoformat()
        if payment.outcome == SimulatedPayment.Outcome.SUCCEEDED
        else None,
        "expires_at": payment.expires_at.isoformat(),
    }


def simulated_deliveries_due(*, now: datetime) -> QuerySet:
    """(id, next_attempt_at) of the outcomes due a delivery attempt, oldest first: a range scan
    of the partial index simulated_delivery_due, which holds undelivered outcomes only."""
    return (
        SimulatedPayment.objects.filter(next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", "next_attempt_at")
    )


def simulated_deliveries_send(
    *, now: datetime | None = None, limit: int = DELIVERY_BATCH, reference: str | None = None
) -> dict[str, int]:
    """Send the outcomes whose delivery is due (or only `reference`'s), each once per attempt.

    1. Find due outcomes through the partial index on next_attempt_at, oldest first, `limit`.
    2. Claim each with a conditional update (next_attempt_at moves a lease ahead, attempts + 1):
       two workers sweeping at once, or the sweep and the fast-path task, never send one attempt
       twice; a worker that dies mid-attempt leaves the row due again when the lease runs out.
    3. POST the signed event (the same event id every time, so the merchant can de-duplicate).
       2xx: delivered. Unreachable, 408, 429 or 5xx: again after a doubling wait. Another 4xx:
       the merchant refuses the event, so sending it again would not help: stop and record it.
    """
    pinned = now
    due = simulated_deliveries_due(now=pinned or timezone.now())
    if reference is not None:
        due = due.filter(reference=reference)
    counts = {"delivered": 0, "retrying": 0, "given_up": 0, "claimed_elsewhere": 0}
    for pk, seen in due[:limit]:
        # Each attempt's own clock: a batch of slow endpoints must not start with a spent lease.
        now = pinned or timezone.now()
        lease = now + timedelta(seconds=DELIVERY_LEASE_SECONDS)
        claimed = SimulatedPayment.objects.filter(pk=pk, next_attempt_at=seen).update(
            next_attempt_at=lease, attempts=F("attempts") + 1
        )
        if not claimed:
            counts["claimed_elsewhere"] += 1
            continue
        counts[_simulated_attempt(pk=pk, lease=lease, now=now)] += 1
    return counts


def _simulated_attempt(*, pk: int, lease: datetime, now: datetime) -> str:
    payment = SimulatedPayment.objects.get(pk=pk)
    gateway = GATEWAYS["simulated"]
    body = gateway.event_body(
        reference=payment.reference,
        amount=payment.amount,
        currency=payment.currency,
        succeeded=payment.outcome == SimulatedPayment.Outcome.SUCCEEDED,
        event_id=payment.event_id,
    )
    url = f"{settings.PUBLIC_BASE_URL}/api/v1/payments/webhooks/simulated/"
    try:
        response = requests.post(
            url,
            data=body,
            headers={"Content-Type": "application/json", "Sim-Signature": gateway.sign(body)},
            timeout=DELIVERY_TIMEOUT_SECONDS,
        )
        retry, error = _delivery_verdict(response)
    except requests.RequestException as exc:
        retry, error = True, f"{url} unreachable: {exc.__class__.__name__}"
    # Only while the claim is still ours: a lease that ran out belongs to another attempt now.
    mine = SimulatedPayment.objects.filter(pk=pk, next_attempt_at=lease)
    if not error:
        mine.update(delivered_at=now, next_attempt_at=None, last_error="")
        return "delivered"
    if retry and payment.attempts < DELIVERY_MAX_ATTEMPTS:
        wait = min(
            DELIVERY_FIRST_RETRY_SECONDS * 2 ** (payment.attempts - 1), DELIVERY_MAX_RETRY_SECONDS
        )
        mine.update(next_attempt_at=now + timedelta(seconds=wait), last_error=error[:200])
        logger.warning(
            "Simulated gateway: %s delivery %d failed (%s); again in %d s",
            payment.reference,
            payment.attempts,
            error,
            wait,
        )
        return "retrying"
    mine.update(next_attempt_at=None, last_error=error[:200])
    logger.error(
        "Simulated gateway: %s not delivered after %d attempts: %s",
        payment.reference,
        payment.attempts,
        error,
    )
    return "given_up"


def _delivery_verdict(response: requests.Response) -> tuple[bool, str]:
    """(worth retrying, error) for the merchant's answer; no error when it took the event."""
    if 200 <= response.status_code < 300:
        return False, ""
    error = f"webhook answered {response.status_code}: {response.text[:120]}"
    return response.status_code in (408, 429) or response.status_code >= 500, error


# Saved cards. The tokenisation endpoint (/pay/simulated/tokens/, billing.pages) stands for a real
# gateway's client SDK: the app sends the card there, and only the token comes to our API. The
# gateway's books keep the last four digits and how a test card behaves, never the number or CVC.
# Test numbers as real gateways publish them (Stripe's): any other valid number succeeds.
TEST_CARDS = {
    "4242424242424242": "succeed",
    "4000000000000002": "decline",
    "4000000000000119": "transient",  # the processor errs: ask again later
}


def _luhn_valid(number: str) -> bool:
    total = 0
    for index, digit in enumerate(reversed(number)):
        value = int(digit) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _card_brand(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"51", "52", "53", "54", "55"} or 2221 <= int(number[:4]) <= 2720:
        return "mastercard"
    if number[:2] in {"34", "37"}:
        return "amex"
    return "card"


def simulated_card_tokenise(
    *, number: object, exp_month: object, exp_year: object, cvc: object, now: datetime | None = None
) -> SimulatedPaymentMethod:
    """The gateway checks a card and keeps it, answering a single-use token. Refuses (400, with a
    code per field as a gateway's SDK does) a number that fails its check digit, a past expiry or
    a CVC that is not 3 or 4 digits."""
    now = now or timezone.now()
    digits = str(number or "").replace(" ", "").replace("-", "")
    if not (digits.isascii() and digits.isdigit() and 12 <= len(digits) <= 19) or not _luhn_valid(
        digits
    ):
        raise DomainError.for_field(
            "number", "The card number is not valid.", code="invalid_number"
        )
    try:
        month, year = int(str(exp_month)), int(str(exp_year))
    except ValueError:
        month, year = 0, 0
    if year < 100:
        year += 2000
    if not (1 <= month <= 12 and now.year <= year <= now.year + 50) or (year, month) < (
        now.year,
        now.month,
    ):
        raise DomainError.for_field(
            "exp_month", "The card has expired or its expiry is not valid.", code="invalid_expiry"
        )
    cvc_text = str(cvc or "")
    if not (cvc_text.isascii() and cvc_text.isdigit() and len(cvc_text) in (3, 4)):
        raise DomainError.for_field("cvc", "The security code is not valid.", code="invalid_cvc")
    return SimulatedPaymentMethod.objects.create(
        reference=f"pm_sim_{secrets.token_urlsafe(16)}",
        single_use_token=f"tok_sim_{secrets.token_urlsafe(16)}",
        brand=_card_brand(digits),
        last4=digits[-4:],
        exp_month=month,
        exp_year=year,
        behaviour=TEST_CARDS.get(digits, "succeed"),
        created_at=now,
    )


def simulated_card_attach(*, token: str) -> SimulatedPaymentMethod:
    """The reusable card a token stands for. A token attaches one card: sent again (the merchant
    retrying after a lost answer) it answers that same card, never a new one; the merchant keeps
    each card with the customer who attached it first."""
    card = SimulatedPaymentMethod.objects.filter(single_use_token=token).first()
    if card is None:
        raise PermanentGatewayError("unknown token")
    SimulatedPaymentMethod.objects.filter(pk=card.pk, attached_at__isnull=True).update(
        attached_at=timezone.now()
    )
    return card


def simulated_charge(
    *, method_reference: str, amount: Decimal, currency: str, idempotency_key: str
) -> SimulatedCharge:
    """Charge a saved card, once per idempotency key.

    1. A key seen before answers its first charge (a decline is declined again), whatever was
       asked now; the same key with another card or amount is refused, as real gateways do.
    2. A card that fails transiently records nothing: asking again may succeed.
    3. Two charges with one key at once race on the unique key: the loser answers the winner's.
    """
    first = SimulatedCharge.objects.filter(idempotency_key=idempotency_key).first()
    if first is None:
        card = SimulatedPaymentMethod.objects.filter(
            reference=method_reference, attached_at__isnull=False
        ).first()
        if card is None:
            raise PermanentGatewayError("no such saved card")
        if card.behaviour == "transient":
            raise TransientGatewayError("processing error: try again")
        today = timezone.now()
        expired = (card.exp_year, card.exp_month) < (today.year, today.month)
        try:
            with transaction.atomic():
                first = SimulatedCharge.objects.create(
                    idempotency_key=idempotency_key,
                    method_reference=method_reference,
                    amount=amount,
                    currency=currency,
                    reference=f"ch_sim_{secrets.token_urlsafe(16)}",
                    outcome="declined" if expired or card.behaviour == "decline" else "succeeded",
                )
        except IntegrityError:
            first = SimulatedCharge.objects.get(idempotency_key=idempotency_key)
    if (first.method_reference, first.amount, first.currency) != (
        method_reference,
        amount,
        currency,
    ):
        raise PermanentGatewayError("idempotency key reused for another charge")
    if first.outcome != "succeeded":
        raise PermanentGatewayError("card declined")
    return first
