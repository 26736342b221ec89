"""Reads for accounts. Every consumer-facing read is scoped to the asking user's links.

A live link lets its holder see and act on the account; a link ended by the account's closing
leaves its holder a read-only view of the account's own history. Either way the holder sees the
account from the link's `visible_from` on (when the number they proved became the registered
mobile): never what a previous holder of the account lived through. See docs/tenancy.md.
"""

from __future__ import annotations

from django.db.models import F, Min, Q, QuerySet

from accounts.models import AccountLink, ConsumerAccount, User, Utility
from core.errors import Conflict, NotFound, PermissionDenied

LIVE = Q(unlinked_at__isnull=True)
# A shared link (accounts.shares) sees the account when the holder let it (`can_view`); only a
# holder's link survives the account's closing as a read-only view of its history.
READABLE = (LIVE & Q(can_view=True)) | Q(end_reason=AccountLink.EndReason.ACCOUNT_CLOSED)
# Acting on the account (requests, settings, sharing it) is the holder's alone.
ACTING = LIVE & Q(role=AccountLink.Role.HOLDER)
# Topping it up: the holder, or a share allowed to pay.
PAYING = LIVE & Q(can_pay=True)
# Who hears the account's alerts (balance, outages, bills): the holder and shares granted them.
ALERTED = LIVE & Q(receives_alerts=True)


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


def accounts_for_user(
    *, user: User, acting: bool = False, paying: bool = False
) -> QuerySet[ConsumerAccount]:
    """The consumer accounts this user has proven, by code, the right to see (with `acting`: to
    act on as their holder; with `paying`: to top up), each annotated with `visible_from`, the
    earliest moment of it the user may see."""
    links = AccountLink.objects.filter(
        ACTING if acting else PAYING if paying else READABLE, user=user
    )
    return ConsumerAccount.objects.filter(links__in=links.values("pk")).annotate(
        visible_from=Min("links__visible_from")
    )


def account_get_for_user(
    *,
    user: User,
    account_id: int,
    acting: bool = False,
    paying: bool = False,
    must_view: bool = False,
) -> ConsumerAccount:
    """One of the user's accounts. `acting` (a request, a setting) needs the holder's live link to
    an open account, `paying` (a top-up) a live link allowed to pay; a closed account's former
    holder may read its history but is told why not more. A share that may not do what is asked
    is told so (403), never shown a different account."""
    account = accounts_for_user(user=user).select_related("utility").filter(pk=account_id).first()
    if account is None and paying and not acting:  # a share that may pay but not look
        account = (
            accounts_for_user(user=user, paying=True)
            .select_related("utility")
            .filter(pk=account_id)
            .first()
        )
        if account is not None and must_view:
            # What it would do reads the balance (an automatic top-up's level, emergency credit
            # and its fee): a share that may not see the account may not do it.
            raise PermissionDenied(
                "The holder of this account has not let you see it.", code="share_not_allowed"
            )
    if account is None:
        raise NotFound("You have no such account.", code="account_not_found")
    if (acting or paying) and account.status == ConsumerAccount.Status.CLOSED:
        raise Conflict(
            "This consumer account is closed; its history can be read but nothing more.",
            code="account_closed",
        )
    if acting or paying:
        allowed = accounts_for_user(user=user, acting=acting, paying=paying).filter(pk=account_id)
        if not allowed.exists():
            raise PermissionDenied(
                "Only the account's holder can do this."
                if acting
                else "The holder of this account has not let you top it up.",
                code="share_not_allowed",
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
    live &= Q(
        **{f"{links}__role": AccountLink.Role.HOLDER} if acting else {f"{links}__can_view": True}
    )
    closed = Q(**{f"{links}__end_reason": AccountLink.EndReason.ACCOUNT_CLOSED})
    since = Q(**{f"{links}__visible_from__isnull": True}) | Q(
        **{f"{moment}__gte": F(f"{links}__visible_from")}
    )
    return Q(**{f"{links}__user": user}) & (live if acting else live | closed) & since
