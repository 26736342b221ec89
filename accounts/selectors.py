"""Reads for accounts. Every consumer-facing read is scoped to the asking user's live links."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import AccountLink, ConsumerAccount, User, Utility
from core.errors import NotFound


def utilities_active() -> QuerySet[Utility]:
    return Utility.objects.filter(is_active=True)


def links_for_user(*, user: User) -> QuerySet[AccountLink]:
    return (
        AccountLink.objects.filter(user=user, unlinked_at__isnull=True)
        .select_related("account__utility")
        .order_by("created_at", "id")
    )


def link_get(*, user: User, link_id: int) -> AccountLink:
    link = links_for_user(user=user).filter(pk=link_id).first()
    if link is None:
        raise NotFound("You have no such link.", code="link_not_found")
    return link


def accounts_for_user(*, user: User) -> QuerySet[ConsumerAccount]:
    """The consumer accounts this user has proven, by code, the right to see."""
    return ConsumerAccount.objects.filter(
        links__user=user, links__unlinked_at__isnull=True
    ).distinct()
