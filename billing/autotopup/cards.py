"""Saved cards: a card the gateway tokenised becomes a PaymentMethod of its user; card data never
reaches us (docs/auto-topup.md)."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from billing import gateway as gateways
from billing.models import AutoTopUp, PaymentMethod
from core.errors import Conflict, DomainError, NotFound

# --- Saved cards ----------------------------------------------------------------------------------


def payment_methods_for_user(*, user: User):
    return PaymentMethod.objects.filter(user=user, removed_at__isnull=True)


def payment_method_save(*, user: User, gateway_token: str) -> tuple[PaymentMethod, bool]:
    """Trade the app's single-use gateway token for a saved card of `user`; returns it and whether
    it is new. The same token again (a retry after a lost answer) returns the same card; a token
    another user attached, or an unknown one, is refused."""
    gateway = gateways.gateway_get()
    try:
        card = gateway.payment_method_attach(token=gateway_token)
    except gateways.PermanentGatewayError:
        raise DomainError.for_field(
            "gateway_token",
            "This card token is unknown or used; enter the card again.",
            code="invalid_gateway_token",
        ) from None
    except gateways.TransientGatewayError:
        raise Conflict(
            "The payment gateway did not answer; try again in a minute.",
            code="gateway_unavailable",
        ) from None
    try:
        with transaction.atomic():
            method, created = PaymentMethod.objects.get_or_create(
                gateway=gateway.name,
                reference=card.reference,
                defaults={
                    "user": user,
                    "brand": card.brand,
                    "last4": card.last4,
                    "exp_month": card.exp_month,
                    "exp_year": card.exp_year,
                },
            )
    except IntegrityError:  # the same token posted twice at once: the other request saved it
        method, created = (
            PaymentMethod.objects.get(gateway=gateway.name, reference=card.reference),
            False,
        )
    if method.user_id != user.pk or method.removed_at is not None:
        raise DomainError.for_field(
            "gateway_token",
            "This card token is unknown or used; enter the card again.",
            code="invalid_gateway_token",
        )
    return method, created


def payment_method_remove(*, user: User, method_id: int) -> None:
    with transaction.atomic():
        # Locked as auto_topup_create locks it: a rule being set with this card at the same moment
        # either commits first (and this refuses) or finds the card removed.
        method = (
            payment_methods_for_user(user=user).select_for_update().filter(pk=method_id).first()
        )
        if method is None:
            raise NotFound("You have no such saved card.", code="payment_method_not_found")
        if AutoTopUp.objects.filter(payment_method=method, is_active=True).exists():
            raise Conflict(
                "An automatic top-up pays with this card: change or delete it first.",
                code="payment_method_in_use",
            )
        method.removed_at = timezone.now()
        method.save(update_fields=["removed_at"])
