"""Writes for accounts: sign-in, one-time codes, linking consumer accounts, tokens, profile."""

from __future__ import annotations

import csv
import hmac
import io
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.crypto import salted_hmac
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import RefreshToken

from accounts import messages
from accounts.models import AccountLink, ConsumerAccount, OneTimeCode, User, Utility
from core.errors import Conflict, DomainError, NotFound, RateLimited
from core.phone import phone_normalize
from core.replicas import writers_mark
from notifications.tasks import send_code_sms

# --- One-time codes -------------------------------------------------------------------------


def _code_hash(challenge_id: object, code: str) -> str:
    # Keyed with a key of its own: a leaked table alone does not let anyone try the million codes offline.
    return salted_hmac(
        "accounts.otp", f"{challenge_id}:{code}", secret=settings.OTP_HASH_KEY, algorithm="sha256"
    ).hexdigest()


def _throttle(queryset, *, limit: int, what: str) -> None:
    hour_ago = timezone.now() - timedelta(hours=1)
    recent = queryset.filter(created_at__gte=hour_ago)
    if recent.count() >= limit:
        oldest = recent.order_by("created_at").values_list("created_at", flat=True).first()
        wait = int((oldest + timedelta(hours=1) - timezone.now()).total_seconds()) + 1
        raise RateLimited(
            f"Too many codes were sent {what} in the last hour. Try again later.",
            retry_after=max(wait, 1),
            code="too_many_codes",
        )


def _budgets(
    *, purpose: str, phone: str, user: User | None, target: str, client_ip: str | None
) -> list[tuple[QuerySet[OneTimeCode], int, str]]:
    """The hourly budgets a new code spends, each as (codes counted, limit, whose).

    Sign-in and link codes never share a budget: a number's sign-in budget is spent only by
    sign-in codes for it, so link starts by others, which text the same number, cannot lock its
    holder out of signing in. Link codes are bounded per requesting user, per account asked for
    (protecting its holder's phone from a crowd) and per client address.
    """
    codes = OneTimeCode.objects.filter(purpose=purpose)
    if purpose == OneTimeCode.Purpose.SIGN_IN:
        budgets = [
            (codes.filter(phone=phone), settings.OTP_HOURLY_LIMIT_PER_PHONE, "to this number")
        ]
        per_client = settings.OTP_HOURLY_LIMIT_PER_CLIENT
    else:
        budgets = [
            (codes.filter(user=user), settings.LINK_HOURLY_LIMIT_PER_USER, "at your request"),
        ]
        # The per-account budget keeps a crowd from flooding the holder's phone; the holder, asking
        # from the registered mobile itself, is never refused by what the crowd spent (their own
        # per-user and per-client budgets still hold). Only the holder can match this number.
        if not (phone and user is not None and user.phone == phone):
            budgets.append(
                (
                    codes.filter(target=target),
                    settings.LINK_HOURLY_LIMIT_PER_ACCOUNT,
                    "for this consumer account",
                )
            )
        per_client = settings.LINK_HOURLY_LIMIT_PER_CLIENT
    if client_ip:
        budgets.append((codes.filter(client_ip=client_ip), per_client, "from your network"))
    return budgets


def otp_issue(
    *,
    purpose: str,
    phone: str | None,
    client_ip: str | None,
    language: str,
    user: User | None = None,
    account: ConsumerAccount | None = None,
    target: str = "",
    sms_text: dict[str, str],
    sms_values: dict[str, object],
) -> OneTimeCode:
    """Create a code and queue its SMS.

    1. Refuse inside the resend cooldown of the last code for the same target.
    2. Refuse past the hourly budgets of its purpose (_budgets).
    3. Revoke the target's earlier live codes, so only the newest code works.
    4. Store the keyed hash and queue the SMS after commit.

    Without a phone the challenge is a decoy, for a link to an account that is not there: it
    goes through every step above, so it is answered and throttled like a real one, but its
    hash is of a secret no code can be (every guess at it is wrong, and counted) and nothing is sent.
    """
    now = timezone.now()
    if purpose == OneTimeCode.Purpose.SIGN_IN:
        same_target = OneTimeCode.objects.filter(purpose=purpose, phone=phone, user=None)
    else:
        same_target = OneTimeCode.objects.filter(purpose=purpose, user=user, target=target)
    last = same_target.order_by("-created_at").first()
    cooldown = timedelta(seconds=settings.OTP_RESEND_COOLDOWN_SECONDS)
    if last and last.created_at + cooldown > now:
        wait = int((last.created_at + cooldown - now).total_seconds()) + 1
        raise RateLimited(
            f"A code was sent moments ago. You can ask for a new one in {wait} seconds.",
            retry_after=wait,
            code="resend_too_soon",
        )
    for codes, limit, what in _budgets(
        purpose=purpose, phone=phone or "", user=user, target=target, client_ip=client_ip
    ):
        _throttle(codes, limit=limit, what=what)

    code = "".join(secrets.choice("0123456789") for _ in range(settings.OTP_LENGTH))
    with transaction.atomic():
        same_target.filter(used_at__isnull=True, revoked_at__isnull=True).update(revoked_at=now)
        challenge = OneTimeCode(
            purpose=purpose,
            phone=phone or "",
            user=user,
            account=account,
            target=target,
            language=language,
            client_ip=client_ip,
            created_at=now,
            expires_at=now + timedelta(seconds=settings.OTP_TTL_SECONDS),
        )
        challenge.code_hash = _code_hash(challenge.id, code if phone else secrets.token_hex(16))
        challenge.save(force_insert=True)
        if phone:
            text = sms_text.get(language) or sms_text["en"]
            body = text.format(
                code=code,
                app=settings.APP_NAME,
                minutes=settings.OTP_TTL_SECONDS // 60,
                **sms_values,
            )
            transaction.on_commit(lambda: send_code_sms.delay(phone, body))
    return challenge


def otp_verify(
    *, challenge_id: object, code: str, purpose: str, user: User | None = None
) -> OneTimeCode:
    """Spend one attempt on a code and return it, marked used, if the code is right.

    1. Lock the code's row: concurrent guesses at one code queue behind each other, so none escapes
       the count and each is told truthfully how many attempts are left.
    2. Refuse a used, replaced, expired or exhausted code; otherwise count the attempt.
    3. Compare the keyed hashes in constant time; mark the code used if they match.
    4. Commit before refusing, so that a wrong guess stays counted. Callers must not wrap this in a
       transaction of their own, which would roll the count back with the refusal.
    """
    mine = Q(pk=challenge_id, purpose=purpose) & (Q(user=user) if user else Q(user__isnull=True))
    with transaction.atomic():
        challenge = OneTimeCode.objects.select_for_update().filter(mine).first()
        refusal = _otp_check(challenge, code)
    if refusal:
        raise refusal
    return challenge


def _otp_check(challenge: OneTimeCode | None, code: str) -> DomainError | None:
    now = timezone.now()
    if challenge is None:
        return NotFound("No such code was sent to you.", code="challenge_not_found")
    if challenge.used_at:
        return DomainError("This code has already been used.", code="code_used")
    if challenge.revoked_at:
        return DomainError("A newer code was sent; use that one.", code="code_replaced")
    if challenge.expires_at <= now:
        return DomainError("This code has expired. Ask for a new one.", code="code_expired")
    if challenge.attempts >= settings.OTP_MAX_ATTEMPTS:
        return DomainError("Too many wrong attempts. Ask for a new code.", code="code_locked")
    challenge.attempts += 1
    right = hmac.compare_digest(challenge.code_hash, _code_hash(challenge.id, str(code)))
    if right:
        challenge.used_at = now
    challenge.save(update_fields=["attempts", "used_at"])
    if right:
        return None
    left = settings.OTP_MAX_ATTEMPTS - challenge.attempts
    if left == 0:
        return DomainError("Too many wrong attempts. Ask for a new code.", code="code_locked")
    return DomainError("That code is not right.", code="wrong_code", extra={"attempts_left": left})


# --- Sign-in and tokens ---------------------------------------------------------------------


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


def tokens_issue(*, user: User) -> TokenPair:
    refresh = RefreshToken.for_user(user)
    return TokenPair(access=str(refresh.access_token), refresh=str(refresh))


def sign_in_start(
    *, phone: str, country: str | None, language: str, client_ip: str | None
) -> OneTimeCode:
    e164 = phone_normalize(raw=phone, region=country)
    return otp_issue(
        purpose=OneTimeCode.Purpose.SIGN_IN,
        phone=e164,
        client_ip=client_ip,
        language=language,
        sms_text=messages.SIGN_IN,
        sms_values={},
    )


def sign_in_complete(*, challenge_id: object, code: str) -> tuple[User, TokenPair, bool]:
    """Check the code; return the user (created on first sign-in), fresh tokens, and whether it is new."""
    challenge = otp_verify(
        challenge_id=challenge_id, code=code, purpose=OneTimeCode.Purpose.SIGN_IN
    )
    try:
        user, created = User.objects.get_or_create(
            phone=challenge.phone,
            defaults={"username": challenge.phone, "language": challenge.language},
        )
    except IntegrityError:  # the same number signing in twice at once
        user, created = User.objects.get(phone=challenge.phone), False
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
        # The request was anonymous, so nothing marked its writer: a standby may not have the
        # new user yet when their first reads arrive (docs/replicas.md).
        writers_mark([user.pk])
    if not user.is_active:
        raise DomainError("This user is disabled.", code="user_disabled")
    return user, tokens_issue(user=user), created


def sign_out(*, user: User, refresh: str, everywhere: bool = False) -> None:
    """Revoke a refresh token of this user (or all of them). Access tokens die on their own in minutes."""
    try:
        token = RefreshToken(refresh)
    except TokenError:
        raise DomainError.for_field(
            "refresh", "This refresh token is not valid or already revoked.", code="token_not_valid"
        ) from None
    if str(token.get("user_id")) != str(user.pk):
        raise DomainError.for_field(
            "refresh", "This refresh token is not yours.", code="token_not_yours"
        )
    if everywhere:
        from rest_framework_simplejwt.token_blacklist.models import (
            BlacklistedToken,
            OutstandingToken,
        )

        for outstanding in OutstandingToken.objects.filter(
            user=user, expires_at__gt=timezone.now()
        ):
            BlacklistedToken.objects.get_or_create(token=outstanding)
    token.blacklist()


def profile_update(*, user: User, language: str | None = None, name: str | None = None) -> User:
    fields = []
    if language is not None:
        user.language = language
        fields.append("language")
    if name is not None:
        user.first_name = name
        fields.append("first_name")
    if fields:
        user.save(update_fields=fields)
    return user


# --- Linking consumer accounts --------------------------------------------------------------


def link_start(
    *, user: User, utility_code: str, consumer_id: str, client_ip: str | None
) -> OneTimeCode:
    """Send a code to the account's registered mobile (never to a number the caller typed).

    1. Refuse an unknown utility: the list of utilities is public anyway.
    2. Refuse an account the user already holds a live link to (they proved it already).
    3. Answer every other id alike, whether an open account has it or not (unknown, another
       utility's, closed): a challenge that spends the same budgets. Only a real account's
       holder is texted a code; a missing account's challenge is a decoy no code confirms, so
       ids cannot be mined from the answers, their throttles or their failures.
    """
    utility = Utility.objects.filter(code=utility_code, is_active=True).first()
    if utility is None:
        raise DomainError.for_field("utility", "No utility has this code.", code="unknown_utility")
    consumer_id = consumer_id.strip()
    account = (
        ConsumerAccount.objects.filter(utility=utility, consumer_id=consumer_id)
        .exclude(status=ConsumerAccount.Status.CLOSED)
        .first()
    )
    # Asked of a missing account too (it finds nothing), so both answers do the same work.
    if AccountLink.objects.filter(user=user, account=account, unlinked_at__isnull=True).exists():
        raise Conflict("You have already linked this account.", code="already_linked")
    return otp_issue(
        purpose=OneTimeCode.Purpose.LINK,
        phone=account.registered_mobile if account else None,
        user=user,
        account=account,
        target=f"{utility.code}:{consumer_id}",
        client_ip=client_ip,
        language=user.language,
        sms_text=messages.LINK,
        sms_values={"utility": utility.name, "consumer_id": consumer_id},
    )


def link_confirm(*, user: User, challenge_id: object, code: str) -> AccountLink:
    """Turn a right code into a link, if the number it went to is still the account's.

    A code sent before a number change went to the old holder: it links nothing (the number
    change also revokes it, this is the second guard for a code checked during the change).
    """
    challenge = otp_verify(
        challenge_id=challenge_id, code=code, purpose=OneTimeCode.Purpose.LINK, user=user
    )
    try:
        with transaction.atomic():
            # Lock the account: a number change committing between the check and the insert
            # would otherwise leave a link to the old number that nothing ends.
            account = ConsumerAccount.objects.select_for_update().get(pk=challenge.account_id)
            if account.status == ConsumerAccount.Status.CLOSED:
                raise Conflict("This consumer account is closed.", code="account_closed")
            if account.registered_mobile != challenge.phone:
                raise Conflict(
                    "The account's registered mobile has changed since this code was sent. "
                    "Start linking again.",
                    code="mobile_changed",
                )
            return AccountLink.objects.create(
                user=user,
                account=account,
                verified_mobile=challenge.phone,
                visible_from=account.registered_mobile_since,
            )
    except IntegrityError:  # two confirmations racing: the link exists, which is what was asked
        return AccountLink.objects.get(
            user=user, account_id=challenge.account_id, unlinked_at__isnull=True
        )


def link_remove(*, user: User, link_id: int) -> None:
    """Unlink a live link, or put away the read-only link a closed account left: either way the
    account disappears from the user's app."""
    from accounts.shares import shares_end_for_link

    now = timezone.now()
    mine = AccountLink.objects.filter(pk=link_id, user=user)
    with transaction.atomic():
        removed = mine.filter(unlinked_at__isnull=True).update(
            unlinked_at=now, end_reason=AccountLink.EndReason.UNLINKED
        ) or mine.filter(end_reason=AccountLink.EndReason.ACCOUNT_CLOSED).update(
            end_reason=AccountLink.EndReason.UNLINKED
        )
        if removed != 1:
            raise NotFound("You have no such link.", code="link_not_found")
        # A holder's shares end with their link; a shared user leaving ends their share.
        shares_end_for_link(link_id=link_id, at=now)


def _links_end(
    *,
    links: Iterable[AccountLink],
    reason: str,
    at: datetime,
    category: str,
    context: dict | None = None,
) -> list[AccountLink]:
    """End live holders' links and tell each holder in their inbox (pushed too; never an SMS,
    which would go to the number that is no longer theirs). Every share hanging off them ends in
    the same transaction (accounts.shares)."""
    from accounts.shares import shares_end_with_holders
    from notifications.services import alert_create

    ended = []
    for link in links:
        AccountLink.objects.filter(pk=link.pk, unlinked_at__isnull=True).update(
            unlinked_at=at, end_reason=reason
        )
        alert_create(
            user=link.user,
            category=category,
            dedupe_key=f"link:{link.pk}:ended",
            context={
                "consumer_id": link.account.consumer_id,
                "account_id": link.account_id,
                "at": at,
                **(context or {}),
            },
            utility=link.account.utility,
        )
        ended.append(link)
    shares_end_with_holders(holder_link_ids=[link.pk for link in ended], at=at)
    return ended


def _live_links(account: ConsumerAccount):
    # Holders' links: shared ones end with them, as SHARE_ENDED (_links_end).
    return AccountLink.objects.filter(
        account=account, unlinked_at__isnull=True, role=AccountLink.Role.HOLDER
    ).select_related("user", "account__utility")


def account_mobile_change(
    *, account: ConsumerAccount, mobile: str, at: datetime | None = None
) -> list[AccountLink]:
    """Give an account a new registered mobile (E.164, already checked), inside the caller's
    transaction. Admin edits, CSV imports and the utility's API all come here.

    1. Nothing happens if the number is the same: an unrelated edit keeps every link.
    2. The new number holds from `at`: its holder, once linked, sees the account from then on.
    3. Links proven by the old number end at once and their holders are told in their inbox;
       codes still on their way to the old number are revoked.
    Returns the ended links.
    """
    from notifications import categories

    if mobile == account.registered_mobile:
        return []
    at = at or timezone.now()
    account.registered_mobile = mobile
    account.registered_mobile_since = at
    ConsumerAccount.objects.filter(pk=account.pk).update(
        registered_mobile=mobile, registered_mobile_since=at, updated_at=at
    )
    OneTimeCode.objects.filter(
        account=account,
        purpose=OneTimeCode.Purpose.LINK,
        used_at__isnull=True,
        revoked_at__isnull=True,
    ).update(revoked_at=at)
    return _links_end(
        links=_live_links(account).exclude(verified_mobile=mobile),
        reason=AccountLink.EndReason.MOBILE_CHANGED,
        at=at,
        category=categories.LINK_ENDED,
    )


def account_status_problem(*, account: ConsumerAccount, status: str | None) -> str | None:
    """Why an account may not take this status by a plain edit, or None. A closed account stays
    closed (a new tenant is a new account, and its former holder keeps reading its history); an
    account holding a meter is closed by a move-out, which settles its money and ends its tenancy."""
    if account.pk is None or status is None or status == account.status:
        return None
    if account.status == ConsumerAccount.Status.CLOSED:
        return "A closed account cannot be reopened: open a new account for a new tenancy."
    if (
        status == ConsumerAccount.Status.CLOSED
        and account.meter_assignments.filter(end__isnull=True).exists()
    ):
        return "This account holds a meter: move it out (Billing → Moves) to close it."
    return None


def account_close(
    *,
    account: ConsumerAccount,
    at: datetime | None = None,
    category: str | None = None,
    context: dict | None = None,
) -> list[AccountLink]:
    """Close an account inside the caller's transaction: its links end, each holder keeps a
    read-only view of the account's own history and is told (by `category` with `context`, a
    move-out's final statement say; plainly otherwise). Closing twice changes nothing."""
    from notifications import categories

    at = at or timezone.now()
    if account.status == ConsumerAccount.Status.CLOSED and account.closed_at:
        return []
    account.status, account.closed_at = ConsumerAccount.Status.CLOSED, at
    ConsumerAccount.objects.filter(pk=account.pk).update(
        status=account.status, closed_at=at, updated_at=at
    )
    return _links_end(
        links=_live_links(account),
        reason=AccountLink.EndReason.ACCOUNT_CLOSED,
        at=at,
        category=category or categories.ACCOUNT_CLOSED,
        context=context,
    )


# --- Consumer master data -------------------------------------------------------------------


def consumer_account_update(
    *,
    utility: Utility,
    consumer_id: str,
    registered_mobile: str | None = None,
    name: str | None = None,
    premises_address: str | None = None,
) -> tuple[ConsumerAccount, list[AccountLink]]:
    """Change one account's master data, as the utility's systems send it. A new number is read
    in the utility's country and ends the old number's links (account_mobile_change); a closed
    account's data is history and is not changed. Returns the account and the ended links."""
    mobile = (
        phone_normalize(raw=registered_mobile, region=utility.country)
        if registered_mobile is not None
        else None
    )
    with transaction.atomic():
        # Lock the account: a link being confirmed at the same moment sees one number or the other.
        account = (
            ConsumerAccount.objects.select_for_update()
            .filter(utility=utility, consumer_id=consumer_id)
            .first()
        )
        if account is None:
            raise NotFound("No account has this consumer ID.", code="unknown_consumer")
        if account.status == ConsumerAccount.Status.CLOSED:
            raise Conflict("This account is closed.", code="account_closed")
        ended = account_mobile_change(account=account, mobile=mobile) if mobile else []
        changed = [
            key
            for key, value in (("name", name), ("premises_address", premises_address))
            if value is not None and getattr(account, key) != value
        ]
        for key in changed:
            setattr(account, key, name if key == "name" else premises_address)
        if changed:
            account.save(update_fields=[*changed, "updated_at"])
    return account, ended


IMPORT_COLUMNS = ("consumer_id", "registered_mobile", "name", "premises_address", "status")
IMPORT_REQUIRED = ("consumer_id", "registered_mobile", "name")


@dataclass
class ImportRowError:
    line: int
    consumer_id: str
    field: str
    message: str


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[ImportRowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def consumer_accounts_read_csv(
    *, data: bytes
) -> tuple[list[tuple[int, dict[str, str]]], list[ImportRowError]]:
    """Decode a CSV file into (line number, row) pairs; header problems come back as errors."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], [ImportRowError(0, "", "file", "The file is not UTF-8 text.")]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in IMPORT_REQUIRED if c not in header]
    unknown = [h for h in header if h not in IMPORT_COLUMNS]
    errors = []
    if missing:
        errors.append(ImportRowError(1, "", "header", f"Missing columns: {', '.join(missing)}."))
    if unknown:
        errors.append(ImportRowError(1, "", "header", f"Unknown columns: {', '.join(unknown)}."))
    if errors:
        return [], errors
    reader.fieldnames = header
    rows = []
    try:
        for row in reader:
            if None in row:
                errors.append(
                    ImportRowError(reader.line_num, "", "row", "More values than columns.")
                )
                continue
            rows.append((reader.line_num, {k: (v or "").strip() for k, v in row.items()}))
    except csv.Error as exc:
        errors.append(ImportRowError(reader.line_num, "", "file", f"Malformed CSV: {exc}."))
    return rows, errors


def consumer_accounts_import(
    *, utility: Utility, rows: Iterable[tuple[int, dict[str, str]]]
) -> ImportReport:
    """Create or update consumer accounts from master-data rows, all or nothing.

    1. Validate every row (required fields, mobile number in the utility's country, known status,
       no consumer ID twice in the file) and collect every error with its line.
    2. If any row is wrong, write nothing and return the report.
    3. Otherwise upsert every row in one transaction.
    """
    report = ImportReport()
    clean: dict[str, dict[str, str]] = {}
    rows = list(rows)
    existing_status = {
        a.consumer_id: a
        for a in ConsumerAccount.objects.filter(
            utility=utility, consumer_id__in=[row.get("consumer_id", "") for _, row in rows]
        )
    }
    statuses = set(ConsumerAccount.Status.values)
    for line, row in rows:
        consumer_id = row.get("consumer_id", "")
        for column in IMPORT_REQUIRED:
            if not row.get(column):
                report.errors.append(
                    ImportRowError(line, consumer_id, column, "This value is required.")
                )
        if len(consumer_id) > 32:
            report.errors.append(
                ImportRowError(line, consumer_id, "consumer_id", "At most 32 characters.")
            )
        if len(row.get("name", "")) > 200:
            report.errors.append(
                ImportRowError(line, consumer_id, "name", "At most 200 characters.")
            )
        status = row.get("status") or ConsumerAccount.Status.ACTIVE
        if status not in statuses:
            report.errors.append(
                ImportRowError(
                    line,
                    consumer_id,
                    "status",
                    f"Unknown status {status!r}; use one of {', '.join(sorted(statuses))}.",
                )
            )
        mobile = ""
        if row.get("registered_mobile"):
            try:
                mobile = phone_normalize(raw=row["registered_mobile"], region=utility.country)
            except DomainError as exc:
                report.errors.append(
                    ImportRowError(line, consumer_id, "registered_mobile", exc.message)
                )
        if consumer_id and consumer_id in existing_status:
            problem = account_status_problem(account=existing_status[consumer_id], status=status)
            if problem:
                report.errors.append(ImportRowError(line, consumer_id, "status", problem))
        if consumer_id and consumer_id in clean:
            report.errors.append(
                ImportRowError(
                    line,
                    consumer_id,
                    "consumer_id",
                    "This consumer ID appears earlier in the file.",
                )
            )
        clean[consumer_id] = {
            "registered_mobile": mobile,
            "name": row.get("name", ""),
            "premises_address": row.get("premises_address", ""),
            "status": status,
        }
    if report.errors:
        return report

    with transaction.atomic():
        existing = {
            a.consumer_id: a
            for a in ConsumerAccount.objects.select_for_update().filter(
                utility=utility, consumer_id__in=list(clean)
            )
        }
        to_create, to_update = [], []
        now = timezone.now()
        for consumer_id, values in clean.items():
            account = existing.get(consumer_id)
            if account is None:
                to_create.append(
                    ConsumerAccount(utility=utility, consumer_id=consumer_id, **values)
                )
            elif any(getattr(account, k) != v for k, v in values.items()):
                # A new number or a closing is a fact with consequences (links end, holders
                # are told), so it goes through the same services as any other edit.
                account_mobile_change(account=account, mobile=values["registered_mobile"], at=now)
                if values["status"] == ConsumerAccount.Status.CLOSED:
                    account_close(account=account, at=now)
                for key in ("name", "premises_address", "status"):
                    setattr(account, key, values[key])
                if account.status != ConsumerAccount.Status.CLOSED:
                    account.closed_at = None
                account.updated_at = now
                to_update.append(account)
            else:
                report.unchanged += 1
        ConsumerAccount.objects.bulk_create(to_create, batch_size=1000)
        ConsumerAccount.objects.bulk_update(
            to_update,
            ["name", "premises_address", "status", "closed_at", "updated_at"],
            batch_size=1000,
        )
    report.created, report.updated = len(to_create), len(to_update)
    return report


def otp_purge_spent(*, older_than: timedelta = timedelta(days=1)) -> int:
    """Delete codes past their life. Kept a day first: the hourly throttles count recent rows."""
    deleted, _ = OneTimeCode.objects.filter(expires_at__lt=timezone.now() - older_than).delete()
    return deleted
