"""Sharing an account, and paying for one you do not hold.

An account's holder invites another mobile number with rights (view, pay, alerts); the person
signed in with that number accepts and gets a shared AccountLink hanging off the holder's link.
A share never outlives its holder's link: unlinking, a new registered mobile, a move-out or the
account's closing end every share of the old holder (shares_end_with_holders, called where links
end in accounts.services). Anyone signed in may also top up an account by its consumer id after
seeing its holder's masked name (billing.payfor), without any link. See docs/sharing.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import AccountLink, AccountShare, ConsumerAccount, User, Utility
from accounts.selectors import ACTING, account_get_for_user
from core.errors import Conflict, DomainError, Gone, NotFound, RateLimited
from core.phone import phone_normalize

logger = logging.getLogger(__name__)

# A pending invitation lapses after this: a number handed on later must not find it waiting.
INVITATION_LIFETIME = timedelta(days=7)


def name_mask(name: str) -> str:
    """`Fatima Al-Sabah` → `F***** A*******`: the first letter of each word, the rest hidden."""
    return " ".join(word[0] + "*" * (len(word) - 1) for word in name.split())


def _policy(utility: Utility):
    from billing.relay import policy_for

    return policy_for(utility)


def _rights(*, can_view: bool, can_pay: bool, receives_alerts: bool) -> dict[str, bool]:
    if not (can_view or can_pay or receives_alerts):
        raise DomainError(
            "Give the person at least one right: view, pay or alerts.", code="no_rights"
        )
    return {"can_view": can_view, "can_pay": can_pay, "receives_alerts": receives_alerts}


# --- Selectors ------------------------------------------------------------------------------


def _holder_links(account: ConsumerAccount) -> QuerySet[AccountLink]:
    return AccountLink.objects.filter(ACTING, account=account)


def shares_for_account(*, account: ConsumerAccount) -> QuerySet[AccountShare]:
    """The shares its live holders gave, newest first: a new holder never sees the numbers the
    previous one shared with."""
    return AccountShare.objects.filter(
        account=account, holder_link__in=_holder_links(account).values("pk")
    ).select_related("account__utility", "link")


def shares_for_holder(*, user: User, account_id: int) -> QuerySet[AccountShare]:
    """The shares of an account the user holds; a shared user of the account is refused (403)."""
    account = account_get_for_user(user=user, account_id=account_id, acting=True)
    return shares_for_account(account=account)


def share_get_for_holder(*, user: User, account_id: int, share_id: int) -> AccountShare:
    """One share of an account the user holds; a shared user of the account is refused (403)."""
    account = account_get_for_user(user=user, account_id=account_id, acting=True)
    share = shares_for_account(account=account).filter(pk=share_id).first()
    if share is None:
        raise NotFound("This account has no such share.", code="share_not_found")
    return share


def invitations_for_user(*, user: User) -> QuerySet[AccountShare]:
    """Pending, unexpired invitations to the user's own number (index share_by_phone)."""
    if not user.phone:
        return AccountShare.objects.none()
    return AccountShare.objects.filter(
        phone=user.phone, status=AccountShare.Status.PENDING, expires_at__gt=timezone.now()
    ).select_related("account__utility")


def _invitation_get(*, user: User, share_id: int, lock: bool = False) -> AccountShare:
    shares = AccountShare.objects.select_related("account__utility")
    if lock:
        shares = shares.select_for_update(of=("self",))
    share = shares.filter(pk=share_id, phone=user.phone).first() if user.phone else None
    if share is None:
        raise NotFound("You have no such invitation.", code="invitation_not_found")
    return share


# --- Inviting, changing, revoking (the holder) ----------------------------------------------


def share_invite(
    *,
    user: User,
    account_id: int,
    mobile: str,
    can_view: bool,
    can_pay: bool,
    receives_alerts: bool,
) -> AccountShare:
    """Invite a mobile number to an account the user holds.

    1. Only the holder of an open account, where the utility's policy allows sharing.
    2. The number is read in the utility's country; not the holder's own, not one already
       sharing or linked to the account; at least one right.
    3. Under the account's row lock (two invites at once would both see room for one more):
       lapse this account's expired invitations, refuse past max_shares_per_account open shares.
    4. Tell the person: an inbox alert if they use the app, else one SMS in the utility's default
       language, after commit.
    """
    account = account_get_for_user(user=user, account_id=account_id, acting=True)
    utility = account.utility
    policy = _policy(utility)
    if not policy.shared_access_enabled:
        raise Conflict("This utility does not let accounts be shared.", code="sharing_unavailable")
    rights = _rights(can_view=can_view, can_pay=can_pay, receives_alerts=receives_alerts)
    phone = phone_normalize(raw=mobile, region=utility.country, field="mobile")
    if phone == user.phone:
        raise DomainError.for_field("mobile", "This is your own number.", code="share_self")
    now = timezone.now()
    with transaction.atomic():
        ConsumerAccount.objects.select_for_update().filter(pk=account.pk).first()
        holder_link = _holder_links(account).filter(user=user).first()
        if holder_link is None:  # ended between the check and the lock
            raise NotFound("You have no such account.", code="account_not_found")
        shares = AccountShare.objects.filter(account=account)
        shares.filter(status=AccountShare.Status.PENDING, expires_at__lte=now).update(
            status=AccountShare.Status.EXPIRED, ended_at=now
        )
        if (
            shares.filter(phone=phone, status__in=AccountShare.OPEN).exists()
            or AccountLink.objects.filter(
                account=account, user__phone=phone, unlinked_at=None
            ).exists()
        ):
            raise Conflict(
                "This number already shares or is linked to this account.", code="already_shared"
            )
        _invitations_throttle(user=user, phone=phone, now=now)
        if shares.filter(status__in=AccountShare.OPEN).count() >= policy.max_shares_per_account:
            raise Conflict(
                f"This account is already shared with {policy.max_shares_per_account} people; "
                "remove one first.",
                code="too_many_shares",
            )
        try:
            with transaction.atomic():
                share = AccountShare.objects.create(
                    account=account,
                    holder_link=holder_link,
                    invited_by=user,
                    phone=phone,
                    created_at=now,
                    expires_at=now + INVITATION_LIFETIME,
                    **rights,
                )
        except IntegrityError:  # the same number invited twice at once
            raise Conflict(
                "This number already shares or is linked to this account.", code="already_shared"
            ) from None
        _invitation_send(share=share)
    return share


def _invitations_throttle(*, user: User, phone: str, now: datetime) -> None:
    """Each invitation sends an SMS or an alert: a holder may not send them without end (invite,
    revoke, invite again), nor may one number be sent them from every account there is. Counted
    from the shares themselves (indexes: invited_by's, share_by_phone)."""
    limits = (
        (
            AccountShare.objects.filter(invited_by=user),
            settings.SHARE_INVITATIONS_PER_HOLDER_HOUR,
            timedelta(hours=1),
            "You have sent too many invitations in the last hour.",
        ),
        (
            AccountShare.objects.filter(phone=phone),
            settings.SHARE_INVITATIONS_PER_NUMBER_DAY,
            timedelta(days=1),
            "This number was sent too many invitations today.",
        ),
    )
    for shares, limit, window, message in limits:
        recent = shares.filter(created_at__gte=now - window)
        if recent.count() >= limit:
            oldest = recent.order_by("created_at").values_list("created_at", flat=True).first()
            wait = int((oldest + window - now).total_seconds()) + 1
            raise RateLimited(
                f"{message} Try again later.",
                retry_after=max(wait, 1),
                code="too_many_invitations",
            )


def _invitation_send(*, share: AccountShare) -> None:
    from notifications import categories
    from notifications.messages import message_render
    from notifications.services import alert_create
    from notifications.tasks import send_sms

    account = share.account
    utility = account.utility
    context = {
        "holder": name_mask(account.name),
        "consumer_id": account.consumer_id,
        "share_id": share.pk,
    }
    invitee = User.objects.filter(phone=share.phone, is_active=True).first()
    if invitee is not None:
        alert_create(
            user=invitee,
            category=categories.SHARE_INVITATION,
            dedupe_key=f"share:{share.pk}:invited",
            context=context,
            utility=utility,
        )
        return
    rendered = message_render(
        category=categories.SHARE_INVITATION,
        language=utility.default_language,
        context=context,
        utility=utility,
    )
    body = f"{settings.APP_NAME}: {rendered.body}"
    phone = share.phone
    transaction.on_commit(lambda: send_sms.delay(phone, body, utility.code))


def share_update(
    *,
    user: User,
    account_id: int,
    share_id: int,
    can_view: bool | None = None,
    can_pay: bool | None = None,
    receives_alerts: bool | None = None,
) -> AccountShare:
    """Change an open share's rights; an accepted share's link takes them at once."""
    share = share_get_for_holder(user=user, account_id=account_id, share_id=share_id)
    with transaction.atomic():
        # Locked: an acceptance at the same moment copies either the old rights or the new.
        share = AccountShare.objects.select_for_update().get(pk=share.pk)
        if share.status not in AccountShare.OPEN:
            raise Conflict(
                f"This share is {share.get_status_display().lower()}; invite again instead.",
                code="share_closed",
            )
        rights = _rights(
            can_view=share.can_view if can_view is None else can_view,
            can_pay=share.can_pay if can_pay is None else can_pay,
            receives_alerts=share.receives_alerts if receives_alerts is None else receives_alerts,
        )
        AccountShare.objects.filter(pk=share.pk).update(**rights)
        if share.link_id:
            AccountLink.objects.filter(pk=share.link_id, unlinked_at=None).update(**rights)
    return shares_for_account(account=share.account).get(pk=share.pk)


def share_revoke(*, user: User, account_id: int, share_id: int) -> AccountShare:
    """Remove a share: a pending invitation is withdrawn, an accepted share's link ends
    (SHARE_ENDED) and its user is told. A share already closed is left as it is."""
    share = share_get_for_holder(user=user, account_id=account_id, share_id=share_id)
    now = timezone.now()
    with transaction.atomic():
        share = AccountShare.objects.select_for_update().get(pk=share.pk)
        if share.status not in AccountShare.OPEN:
            return share
        AccountShare.objects.filter(pk=share.pk).update(
            status=AccountShare.Status.REVOKED, ended_at=now
        )
        if share.link_id:
            links = AccountLink.objects.filter(pk=share.link_id, unlinked_at=None)
            _shared_links_end(links=links, at=now)
    share.refresh_from_db()
    return share


# --- Answering an invitation (the invitee) ----------------------------------------------------


def share_accept(*, user: User, share_id: int) -> AccountLink:
    """Accept an invitation to the user's number: a shared link to the account.

    The link hangs off the holder's link (it ends with it), carries the rights granted and the
    holder link's `visible_from`: a share never shows more of the account than its holder sees.
    Accepting again answers the same link.
    """
    now = timezone.now()
    with transaction.atomic():
        # Locked: a revoke or a holder's unlinking at the same moment sees it pending or accepted.
        share = _invitation_get(user=user, share_id=share_id, lock=True)
        if share.status == AccountShare.Status.ACCEPTED and share.link_id:
            link = AccountLink.objects.filter(pk=share.link_id, user=user, unlinked_at=None).first()
            if link is not None:
                return link
        refusal = _answer_refusal(share, now=now)
        if refusal is None:
            holder = AccountLink.objects.get(pk=share.holder_link_id)
            if (
                holder.unlinked_at is not None
                or share.account.status == ConsumerAccount.Status.CLOSED
            ):
                refusal = Conflict(
                    "This account is no longer shared with you.", code="share_closed"
                )
            elif AccountLink.objects.filter(
                user=user, account_id=share.account_id, unlinked_at=None
            ).exists():
                refusal = Conflict("You already have this account.", code="already_linked")
        if refusal is None:
            link = AccountLink.objects.create(
                user=user,
                account_id=share.account_id,
                role=AccountLink.Role.SHARED,
                can_view=share.can_view,
                can_pay=share.can_pay,
                receives_alerts=share.receives_alerts,
                shared_by=holder,
                verified_mobile=user.phone,
                visible_from=holder.visible_from,
                created_at=now,
            )
            AccountShare.objects.filter(pk=share.pk).update(
                status=AccountShare.Status.ACCEPTED, responded_at=now, link=link
            )
            return link
    raise refusal


def share_decline(*, user: User, share_id: int) -> AccountShare:
    """Decline an invitation; declining again changes nothing."""
    now = timezone.now()
    with transaction.atomic():
        share = _invitation_get(user=user, share_id=share_id, lock=True)
        if share.status == AccountShare.Status.DECLINED:
            return share
        refusal = _answer_refusal(share, now=now)
        if refusal is None:
            AccountShare.objects.filter(pk=share.pk).update(
                status=AccountShare.Status.DECLINED, responded_at=now
            )
            share.refresh_from_db()
            return share
    raise refusal


def _answer_refusal(share: AccountShare, *, now: datetime) -> DomainError | None:
    """Why a pending invitation cannot be answered, or None. An expired one is marked so (the
    caller commits before raising, so the mark stays)."""
    if share.status == AccountShare.Status.PENDING and share.expires_at <= now:
        AccountShare.objects.filter(pk=share.pk, status=AccountShare.Status.PENDING).update(
            status=AccountShare.Status.EXPIRED, ended_at=now
        )
        share.status = AccountShare.Status.EXPIRED
    if share.status == AccountShare.Status.EXPIRED:
        return Gone("This invitation has expired; ask for a new one.", code="invitation_expired")
    if share.status != AccountShare.Status.PENDING:
        return Conflict(
            f"This invitation was {share.get_status_display().lower()}.", code="share_closed"
        )
    return None


# --- Where links end ------------------------------------------------------------------------


def _shared_links_end(*, links: QuerySet[AccountLink], at: datetime) -> int:
    """End live shared links (SHARE_ENDED, never ACCOUNT_CLOSED: a share keeps no read-only
    history) in one update, and tell each person in their inbox. Their number is bounded by
    max_shares_per_account per holder link."""
    from notifications import categories
    from notifications.services import alert_create

    ending = list(
        links.filter(role=AccountLink.Role.SHARED, unlinked_at=None).select_related(
            "user", "account__utility"
        )
    )
    if not ending:
        return 0
    AccountLink.objects.filter(pk__in=[link.pk for link in ending], unlinked_at=None).update(
        unlinked_at=at, end_reason=AccountLink.EndReason.SHARE_ENDED
    )
    for link in ending:
        alert_create(
            user=link.user,
            category=categories.SHARE_ENDED,
            dedupe_key=f"link:{link.pk}:ended",
            context={"consumer_id": link.account.consumer_id, "account_id": link.account_id},
            utility=link.account.utility,
        )
    return len(ending)


def shares_end_with_holders(*, holder_link_ids: Iterable[int], at: datetime) -> int:
    """Inside the transaction that ended these holder links: every shared link hanging off them
    ends, their open shares and pending invitations become ended. Returns the links ended."""
    ids = list(holder_link_ids)
    if not ids:
        return 0
    AccountShare.objects.filter(holder_link_id__in=ids, status__in=AccountShare.OPEN).update(
        status=AccountShare.Status.ENDED, ended_at=at
    )
    return _shared_links_end(links=AccountLink.objects.filter(shared_by_id__in=ids), at=at)


def shares_end_for_link(*, link_id: int, at: datetime) -> None:
    """A link its user removed: a holder's takes its shares with it; a shared user leaving ends
    their own share."""
    shares_end_with_holders(holder_link_ids=[link_id], at=at)
    AccountShare.objects.filter(link_id=link_id, status=AccountShare.Status.ACCEPTED).update(
        status=AccountShare.Status.ENDED, ended_at=at
    )
