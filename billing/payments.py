"""Money coming in: top-ups on every channel, the gateway's webhook and reconciliation with the
gateway, payment links, the counter, payment codes, and what a payment sets off (debt recovery,
bills paid, reconnection, alerts). docs/payments.md tells the whole journey."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from stdnum.iso7064 import mod_97_10

from accounts.models import AccountLink, ConsumerAccount, User
from billing import affordability
from billing import gateway as gateways
from billing.ledger import ledger_post
from billing.models import (
    Balance,
    Bill,
    IdempotencyRecord,
    LedgerEntry,
    PartnerPayment,
    PaymentLink,
    PaymentPartner,
    TopUp,
    WebhookEvent,
)
from billing.relay import policy_for, reconnect_after_payment
from core import metrics
from core.errors import Conflict, DomainError, Gone, NotFound
from core.money import money_parse, utility_money
from core.replicas import replica_aliases, writers_mark

logger = logging.getLogger(__name__)

# --- Idempotency-Key --------------------------------------------------------------------------


def request_fingerprint(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def idempotent(
    *,
    user: User,
    scope: str,
    key: str,
    fingerprint: str,
    produce: Callable[[], tuple[int, dict]],
    replay: Callable[[int, dict], tuple[int, dict]] | None = None,
) -> tuple[int, dict]:
    """Run `produce` once per (user, scope, key); answer its retries from what it made.

    1. Insert the key first: a concurrent retry blocks on the unique index until this commits,
       then finds the stored answer instead of producing a second one.
    2. The same key with a different request is refused (400), never silently replayed.
    3. If `produce` refuses the request, the key is rolled back with it and may be used again.
    4. A retry is answered by `replay(status, first body)` when given: what the first request
       made may have moved on since (a top-up paid), and the retry must see it as it is now.
    """
    if not key or len(key) > 100:
        raise DomainError(
            "Send an Idempotency-Key header of 1 to 100 characters.",
            code="idempotency_key_required",
        )
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    user=user,
                    scope=scope,
                    key=key,
                    request_hash=fingerprint,
                    status_code=0,
                    body={},
                )
        except IntegrityError:
            record = IdempotencyRecord.objects.get(user=user, scope=scope, key=key)
            if record.request_hash != fingerprint:
                raise DomainError(
                    "This Idempotency-Key was used for a different request.",
                    code="idempotency_key_reused",
                ) from None
            if replay is not None:
                return replay(record.status_code, record.body)
            return record.status_code, record.body
        status, body = produce()
        record.status_code, record.body = status, body
        record.save(update_fields=["status_code", "body"])
    return status, body


# --- Top-ups ----------------------------------------------------------------------------------


# Whatever a utility's policy says (Kuwait: no cap at all), no payment is larger than this: an
# absurd figure (1e25) is refused before any arithmetic on it.
TOPUP_ABSOLUTE_MAX = Decimal(10**9)


def topup_amount_check(*, account: ConsumerAccount, raw: object) -> Decimal:
    """The amount of a payment into `account` (app, payment link, counter), checked; a closed
    account takes none: its money was settled when it closed. The utility's cap applies when it
    has one (BillingPolicy.max_topup; empty: none, as Kuwait's any amount from 1 KWD up)."""
    if account.status == ConsumerAccount.Status.CLOSED:
        raise Conflict("This consumer account is closed.", code="account_closed")
    utility = account.utility
    policy = policy_for(utility)
    cap = TOPUP_ABSOLUTE_MAX
    if policy.max_topup is not None:
        cap = min(cap, policy.max_topup)
    # money_parse compares with the cap before any arithmetic (1e25, 1e400 refused, not crashed on).
    amount = money_parse(raw, minor_unit=utility.currency_minor_unit, max_major=cap)
    if amount < utility.min_topup:
        raise DomainError.for_field(
            "amount",
            f"The smallest top-up is {utility_money(utility.min_topup, utility)}.",
            code="amount_below_minimum",
        )
    return amount


def topup_start(
    *,
    account: ConsumerAccount,
    amount: Decimal,
    channel: str,
    user: User | None = None,
    purpose: str = TopUp.Purpose.BALANCE,
) -> tuple[TopUp, str]:
    """Create a pending top-up and its hosted checkout; returns the top-up and the checkout URL.
    Reconciliation asks the gateway about it if it is still pending a few minutes on."""
    if account.status == ConsumerAccount.Status.CLOSED:
        raise Conflict("This consumer account is closed.", code="account_closed")
    gateway = gateways.gateway_get()
    now = timezone.now()
    topup = TopUp(
        account=account,
        amount=amount,
        currency=account.utility.currency,
        channel=channel,
        user=user,
        purpose=purpose,
        gateway=gateway.name,
        created_at=now,
        reconcile_at=now + timedelta(minutes=settings.PAYMENT_RECONCILE_AFTER_MINUTES),
    )
    checkout = gateway.checkout_create(
        topup_id=str(topup.pk), amount=amount, currency=topup.currency
    )
    topup.gateway_reference = checkout.reference
    topup.checkout_url = checkout.url
    topup.save(force_insert=True)
    return topup, checkout.url


def _receipt_number(topup: TopUp) -> str:
    # At most 26 characters whatever the utility's code: 10 of it, the date, 8 random hex digits.
    return f"{topup.account.utility.code[:10].upper()}-{timezone.now():%y%m%d}-{secrets.token_hex(4).upper()}"


@dataclass(frozen=True)
class Confirmation:
    topup: TopUp
    credited: bool


def topup_confirm(*, topup: TopUp, paid_at=None, created_by: User | None = None) -> Confirmation:
    """Credit a paid top-up, exactly once.

    1. Lock the top-up row; a second confirmation (a replayed webhook, a double click at the
       counter, the webhook and reconciliation at once) finds it already succeeded and credits
       nothing.
    2. Post the credit (keyed by the top-up). A part payment by an account cut for non-payment
       may have its unpaid balance rescheduled as debt (billing.affordability, where the policy
       allows it); then the utility's share for arrears still owed, within today's cap.
    3. Apply the money to unpaid bills, oldest first. A balance back at zero or above repays
       emergency credit in use.
    4. After commit: reconnect a disconnected meter, tell the consumer, re-arm balance alerts.
    A payment for a cost estimate (purpose "estimate") is only credited: the service request debits
    it as a service charge, and it must not repay arrears, pay bills or reconnect anything.

    A confirmation means the money was taken. A top-up that had expired or failed here first (the
    gateway's news came late or out of order) is credited all the same: refusing it would keep
    money the consumer paid and leave a refund to chase (docs/payments.md).
    """
    with transaction.atomic():
        # The account's Balance row first, as every money movement does (see charging).
        Balance.objects.get_or_create(account_id=topup.account_id)
        Balance.objects.select_for_update().get(account_id=topup.account_id)
        topup = (
            TopUp.objects.select_for_update().select_related("account__utility").get(pk=topup.pk)
        )
        if topup.status == TopUp.Status.SUCCEEDED:
            return Confirmation(topup=topup, credited=False)
        if topup.status != TopUp.Status.PENDING:
            logger.warning(
                "Top-up %s was %s here but paid at the gateway: credited", topup.pk, topup.status
            )
        account = topup.account
        paid_at = paid_at or timezone.now()
        posting = ledger_post(
            account=account,
            kind=LedgerEntry.Kind.TOPUP,
            amount=topup.amount,
            key=f"topup:{topup.pk}",
            description=(
                f"Top-up, {topup.get_channel_display()}"
                if topup.purpose == TopUp.Purpose.BALANCE
                else "Payment of a cost estimate"
            ),
            created_by=created_by,
            meta={
                "channel": topup.channel,
                "gateway_reference": topup.gateway_reference,
                **(
                    {"settled_late_from": topup.status}
                    if topup.status != TopUp.Status.PENDING
                    else {}
                ),
            },
        )
        for_balance = topup.purpose == TopUp.Purpose.BALANCE
        if for_balance:
            affordability.part_payment_reschedule(
                account=account, topup=topup, balance_before=posting.balance_before
            )
            affordability.debt_recover_from_topup(account=account, topup=topup)
            _allocate_to_bills(account=account, amount=topup.amount)
            affordability.emergency_credit_settle(account=account, now=paid_at)
        topup.status = TopUp.Status.SUCCEEDED
        topup.paid_at = paid_at
        topup.receipt_number = _receipt_number(topup)
        topup.ledger_entry = posting.entry
        topup.save(update_fields=["status", "paid_at", "receipt_number", "ledger_entry"])
        metrics.topup_credited(utility=account.utility.code, channel=topup.channel)
        _balance_readers_mark(account=account, topup=topup)
        if for_balance:
            reconnect_after_payment(account=account, payment_notified_at=paid_at)
            _after_balance_change(account=account, topup=topup)
    return Confirmation(topup=topup, credited=True)


def _balance_readers_mark(*, account: ConsumerAccount, topup: TopUp) -> None:
    """Whoever reads this balance reads the primary for the next few seconds (with read
    replicas): a top-up credited by the gateway's webhook or at a counter, not by the consumer's
    own request, shows at once (docs/replicas.md)."""
    if not replica_aliases():
        return

    def mark() -> None:
        readers = AccountLink.objects.filter(account=account, unlinked_at__isnull=True)
        writers_mark([*readers.values_list("user_id", flat=True), topup.user_id])

    transaction.on_commit(mark)


def _allocate_to_bills(*, account: ConsumerAccount, amount: Decimal) -> None:
    remaining = amount
    for bill in (
        Bill.objects.select_for_update()
        .filter(account=account, status=Bill.Status.UNPAID)
        .order_by("month")
    ):
        if remaining <= 0:
            break
        take = min(remaining, bill.unpaid)
        bill.paid_amount += take
        remaining -= take
        if bill.unpaid <= 0:
            bill.status = Bill.Status.PAID
        bill.save(update_fields=["paid_amount", "status"])


def _after_balance_change(*, account: ConsumerAccount, topup: TopUp | None = None) -> None:
    from billing.tasks import account_balance_changed

    transaction.on_commit(
        lambda: account_balance_changed.delay(account.pk, str(topup.pk) if topup else None)
    )


# --- Webhooks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookOutcome:
    status: str  # credited | already_credited | failed | duplicate | ignored
    reason: str = ""  # why an event was ignored: already_succeeded, unknown_event_type …


def webhook_receive(*, gateway_name: str, body: bytes, meta: dict) -> WebhookOutcome:
    """Handle one signed gateway event and say what became of it.

    The signature and timestamp are checked first; an event id is processed once (a replay is
    answered 200 and changes nothing); amount and currency must match the top-up. Events never
    move a settled top-up backwards: a failure after success (or after expiry) is ignored, and
    the answer says so. A success is credited whatever happened here before (topup_confirm).
    """
    gateway = gateways.gateway_get(gateway_name)
    event = gateway.webhook_verify(body=body, meta=meta)
    with transaction.atomic():
        try:
            with transaction.atomic():
                WebhookEvent.objects.create(
                    gateway=gateway.name, event_id=event.event_id, payload=event.raw
                )
        except IntegrityError:
            return WebhookOutcome("duplicate")
        topup = TopUp.objects.filter(
            gateway=gateway.name, gateway_reference=event.reference
        ).first()
        if topup is None:
            raise NotFound("No top-up has this reference.", code="unknown_reference")
        if event.amount != topup.amount or event.currency != topup.currency:
            raise DomainError(
                "The event's amount or currency does not match the top-up.", code="amount_mismatch"
            )
        if event.kind == "payment.succeeded":
            credited = topup_confirm(topup=topup).credited
            return WebhookOutcome("credited" if credited else "already_credited")
        if event.kind == "payment.failed":
            if TopUp.objects.filter(pk=topup.pk, status=TopUp.Status.PENDING).update(
                status=TopUp.Status.FAILED
            ):
                return WebhookOutcome("failed")
            status = TopUp.objects.values_list("status", flat=True).get(pk=topup.pk)
            return WebhookOutcome("ignored", reason=f"already_{status}")
    return WebhookOutcome("ignored", reason="unknown_event_type")


# --- Payment links (call centre) ----------------------------------------------------------------


def payment_link_create(
    *, account: ConsumerAccount, amount: Decimal, created_by: User | None
) -> tuple[PaymentLink, str]:
    """A one-use link for `amount`, sent by SMS to the account's registered mobile (never elsewhere)."""
    from notifications.tasks import send_sms

    amount = topup_amount_check(account=account, raw=amount)
    policy = policy_for(account.utility)
    link = PaymentLink.objects.create(
        account=account,
        amount=amount,
        token=secrets.token_urlsafe(24),
        created_by=created_by,
        expires_at=timezone.now() + timedelta(hours=policy.payment_link_hours),
    )
    url = f"{settings.PUBLIC_BASE_URL}/pay/link/{link.token}/"
    body = (
        f"{account.utility.name}: pay {utility_money(amount, account.utility)} for account "
        f"{account.consumer_id} at {url} (valid {policy.payment_link_hours} h, one use)."
    )
    transaction.on_commit(
        lambda: send_sms.delay(account.registered_mobile, body, account.utility.code)
    )
    return link, url


def payment_link_open(*, token: str) -> PaymentLink:
    link = (
        PaymentLink.objects.select_related("account__utility", "topup").filter(token=token).first()
    )
    if link is None:
        raise NotFound("This payment link does not exist.", code="unknown_link")
    if link.topup and link.topup.status == TopUp.Status.SUCCEEDED:
        raise Gone("This payment link has already been used.", code="link_used")
    if link.expires_at <= timezone.now():
        raise Gone(
            "This payment link has expired. Call the helpline for a new one.", code="link_expired"
        )
    return link


def payment_link_pay(*, token: str) -> str:
    """Start (or resume) the link's checkout; returns the hosted payment page to go to. A checkout
    that was cancelled, or is past its validity (expired, or about to be by reconciliation), is
    replaced by a new one while the link itself is valid."""
    lapsed = payment_link_open(token=token).topup
    if (
        lapsed is not None
        and lapsed.status == TopUp.Status.PENDING
        and lapsed.checkout_valid_until <= timezone.now()
    ):
        # Outside the transaction below: what the gateway says (a credit) is kept even when the
        # answer is that the link is used.
        _link_checkout_settle(topup=lapsed)
    with transaction.atomic():
        link = payment_link_open(token=token)
        # Two clicks at once: the second waits here and resumes the first one's checkout.
        link = PaymentLink.objects.select_for_update().get(pk=link.pk)
        topup = link.topup
        if topup is not None and topup.status == TopUp.Status.PENDING:
            if topup.checkout_valid_until > timezone.now():
                return topup.checkout_url
            raise Conflict(  # lapsed meanwhile: the next click asks the gateway about it
                "The last payment on this link is still being checked; try again in a minute.",
                code="payment_being_checked",
            )
        topup, url = topup_start(
            account=link.account, amount=link.amount, channel=TopUp.Channel.CALL_CENTRE
        )
        link.topup = topup
        link.save(update_fields=["topup"])
        return url


def _link_checkout_settle(*, topup: TopUp) -> None:
    """Before a one-use link's lapsed checkout is replaced, ask the gateway what became of it: paid
    with its webhook lost, the link is used (never a second payment); not paid, it expires and a
    new checkout may start; the gateway out of reach, nothing new starts until it answers."""
    from billing.reconcile import topups_reconcile

    topups_reconcile(topup_ids=[topup.pk])
    topup.refresh_from_db()
    if topup.status == TopUp.Status.SUCCEEDED:
        raise Gone("This payment link has already been used.", code="link_used")
    if topup.status == TopUp.Status.PENDING:
        raise Conflict(
            "The last payment on this link is still being checked; try again in a few minutes.",
            code="payment_being_checked",
        )


# --- The counter ----------------------------------------------------------------------------------


def counter_payment_record(*, account: ConsumerAccount, amount: object, cashier: User) -> TopUp:
    """Cash at an office counter: credited at once, with a receipt for the consumer."""
    from notifications.tasks import send_sms

    amount = topup_amount_check(account=account, raw=amount)
    with transaction.atomic():
        topup = TopUp.objects.create(
            account=account,
            amount=amount,
            currency=account.utility.currency,
            channel=TopUp.Channel.COUNTER,
            user=cashier,
            gateway="counter",
            gateway_reference=f"counter_{secrets.token_hex(8)}",
        )
        topup = topup_confirm(topup=topup, created_by=cashier).topup
        body = (
            f"{account.utility.name}: received {utility_money(amount, account.utility)} in cash "
            f"for account {account.consumer_id}. Receipt {topup.receipt_number}."
        )
        transaction.on_commit(
            lambda: send_sms.delay(account.registered_mobile, body, account.utility.code)
        )
    return topup


# --- Payment codes (Egypt's payment networks) ----------------------------------------------------


def payment_code_for(account: ConsumerAccount) -> str:
    """Ten digits of account number and two ISO 7064 MOD 97-10 check digits: every single-digit
    slip and every swap of two neighbouring digits makes an invalid code."""
    base = f"{account.pk:010d}"
    return base + mod_97_10.calc_check_digits(base)


def payment_code_account(*, code: str, partner: PaymentPartner) -> ConsumerAccount:
    digits = (code or "").replace(" ", "").replace("-", "")
    if len(digits) != 12 or not digits.isdigit() or not mod_97_10.is_valid(digits):
        raise DomainError.for_field(
            "code",
            "This payment code is not valid: check it digit by digit.",
            code="invalid_payment_code",
        )
    account = (
        ConsumerAccount.objects.select_related("utility")
        .filter(pk=int(digits[:10]), utility=partner.utility)
        .first()
    )
    if account is None:
        raise NotFound("No account has this payment code.", code="unknown_payment_code")
    if account.status == ConsumerAccount.Status.CLOSED:
        # Its money was settled at the move-out: a payment now would land where nobody draws.
        raise Conflict(
            "This account is closed; pay into the consumer's current account.",
            code="account_closed",
        )
    return account


def amount_due(account: ConsumerAccount) -> Decimal:
    balance = Balance.objects.filter(account=account).first()
    if balance is None:
        return Decimal(0)
    return max(Decimal(0), -balance.amount) + balance.debt


def partner_payment_record(
    *, partner: PaymentPartner, code: str, amount: object, reference: str
) -> tuple[TopUp, bool]:
    """A payment network paid against a payment code. The partner's reference makes it happen
    once: returns the top-up and whether this call made it.

    1. A reference already paid is answered from its top-up (a retry), or refused if it was used
       for another payment.
    2. Otherwise the top-up and its PartnerPayment are inserted and credited in one transaction.
       Two requests with one reference at once (a partner retrying on a timeout) race on the
       unique index: the second insert waits for the first transaction, then fails, and the
       loser answers as a retry with what the winner made, never a server error.
    """
    if not reference or len(reference) > 100:
        raise DomainError.for_field(
            "reference",
            "Give your payment reference (1 to 100 characters).",
            code="reference_required",
        )
    account = payment_code_account(code=code, partner=partner)
    amount = topup_amount_check(account=account, raw=amount)
    existing = _partner_payment_replay(
        partner=partner, reference=reference, account=account, amount=amount
    )
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            topup = TopUp.objects.create(
                account=account,
                amount=amount,
                currency=account.utility.currency,
                channel=TopUp.Channel.PAYMENT_CODE,
                gateway=f"partner:{partner.pk}",
                gateway_reference=reference,
            )
            PartnerPayment.objects.create(partner=partner, reference=reference, topup=topup)
            # Credited in the same transaction: the loser of a race only ever sees the winner's
            # top-up paid, with its receipt.
            topup = topup_confirm(topup=topup).topup
    except IntegrityError:
        existing = _partner_payment_replay(
            partner=partner, reference=reference, account=account, amount=amount
        )
        if existing is None:  # cannot happen while the unique rows are kept; refuse, not 500
            raise Conflict(
                "This reference is being paid right now; retry.", code="reference_in_flight"
            ) from None
        return existing, False
    return topup, True


def _partner_payment_replay(
    *, partner: PaymentPartner, reference: str, account: ConsumerAccount, amount: Decimal
) -> TopUp | None:
    """The top-up a reference already paid, if any; refused if it paid something else."""
    existing = (
        PartnerPayment.objects.filter(partner=partner, reference=reference)
        .select_related("topup")
        .first()
    )
    if existing is None:
        return None
    if existing.topup.amount != amount or existing.topup.account_id != account.pk:
        raise DomainError(
            "This reference was used for a different payment.", code="reference_reused"
        )
    return existing.topup


def partner_token_create(*, utility, name: str) -> tuple[PaymentPartner, str]:
    raw = "pp_" + secrets.token_urlsafe(32)
    partner = PaymentPartner.objects.create(
        utility=utility, name=name, digest=hashlib.sha256(raw.encode()).hexdigest(), prefix=raw[:10]
    )
    return partner, raw
