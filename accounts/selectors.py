"""Reads for accounts. Every consumer-facing read is scoped to the asking user's links.

A live link lets its holder see and act on the account; a link ended by the account's closing
leaves its holder a read-only view of the account's own history. Either way the holder sees the
account from the link's `visible_from` on (when the number they proved became the registered
mobile): never what a previous holder of the account lived through. See docs/tenancy.md.
"""

from __future__ import annotations

from django.db.models import F, Min, Q, QuerySet

from accounts.models import AccountLink, ConsumerAccount, User, Utility
from core.errors import Conflict, NotFound

LIVE = Q(unlinked_at__isnull=True)
READABLE = LIVE | Q(end_reason=AccountLink.EndReason.ACCOUNT_CLOSED)


def utilities_active() -> QuerySet[Utility]:
    return Utility.objects.filter(is_active=True)


def links_for_user(*, user: User) -> QuerySet[AccountLink]:
    """The user's links that still show something: live ones and those of closed accounts."""
    return (
        AccountLink.objects.filter(READABLE, user=user)
        .select_related("account__utility")
        .prefetch_related("account__meter_assignments__meter")
        .order_by("created_at", "id")
    )


def link_get(*, user: User, link_id: int) -> AccountLink:
    link = links_for_user(user=user).filter(pk=link_id).first()
    if link is None:
        raise NotFound("You have no such link.", code="link_not_found")
    return link


def accounts_for_user(*, user: User, acting: bool = False) -> QuerySet[ConsumerAccount]:
    """The consumer accounts this user has proven, by code, the right to see (with `acting`: to
    act on), each annotated with `visible_from`, the earliest moment of it the user may see."""
    links = AccountLink.objects.filter(LIVE if acting else READABLE, user=user)
    return ConsumerAccount.objects.filter(links__in=links.values("pk")).annotate(
        visible_from=Min("links__visible_from")
    )


def account_get_for_user(*, user: User, account_id: int, acting: bool = False) -> ConsumerAccount:
    """One of the user's accounts. `acting` (a top-up, a request) needs a live link to an open
    account; a closed account's former holder may read its history but is told why not more."""
    account = accounts_for_user(user=user).select_related("utility").filter(pk=account_id).first()
    if account is None:
        raise NotFound("You have no such account.", code="account_not_found")
    if acting and account.status == ConsumerAccount.Status.CLOSED:
        raise Conflict(
            "This consumer account is closed; its history can be read but nothing more.",
            code="account_closed",
        )
    return account


def visible_to(
    user: User, *, account_path: str = "account", moment: str = "created_at", acting: bool = False
) -> Q:
    """A filter for rows of other models that belong to the user's accounts and to the user's own
    period of each (`moment` at or after the link's `visible_from`). Use it in one filter() call,
    with distinct(), so that every condition speaks of the same link."""
    links = f"{account_path}__links"
    live = Q(**{f"{links}__unlinked_at__isnull": True})
    closed = Q(**{f"{links}__end_reason": AccountLink.EndReason.ACCOUNT_CLOSED})
    since = Q(**{f"{links}__visible_from__isnull": True}) | Q(
        **{f"{moment}__gte": F(f"{links}__visible_from")}
    )
    return Q(**{f"{links}__user": user}) & (live if acting else live | closed) & since
