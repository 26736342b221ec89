"""Move-out and move-in: a tenancy of a meter ends or begins, and the money is settled.

A tenant is an account: moving out closes it, moving in opens a new one with its own zero balance.
Readings are charged to whoever held the meter when each interval began (billing.charging), so
nothing here moves money between tenants except what the consumer or staff ask for (a balance
carried to the consumer's own new account). See docs/tenancy.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Max, Q
from django.db.models.functions import Greatest, Now
from django.utils import timezone

from accounts.models import AccountLink, ConsumerAccount, User, Utility
from accounts.services import account_close
from billing.bills import bill_issue
from billing.charging import balances_lock, charges_apply, charges_release
from billing.energy_days import energy_days_post
from billing.ledger import ledger_post
from billing.models import (
    Balance,
    Bill,
    ChargedDay,
    Conversion,
    LedgerEntry,
    Move,
    RelayCommand,
)
from billing.relay import policy_for, reconnect_request
from core.errors import Conflict, DomainError, NotFound
from core.money import money_digits, utility_money
from core.phone import phone_normalize
from meters.models import Meter, MeterAssignment, MeterDay
from meters.storage import floor_to_interval, slot_start


@dataclass(frozen=True)
class MoveOutChoice:
    """What to do with the money left on the account. None: the utility's policy (credit) or
    nothing (debt, refused if there is any)."""

    credit: str | None = None  # "refund" | "carry"
    debt: str | None = None  # "carry" | "write_off"
    carry_to: ConsumerAccount | None = None
    reason: str = ""


# How far back a move may be dated: far enough for staff who hear of it late, near enough that
# re-charging the days since touches a handful of rows, never a meter's whole history.
MAX_BACKDATE = timedelta(days=31)


def _instant(at: datetime | None, *, field: str = "at") -> datetime:
    """A move happens at an interval boundary (an interval belongs to whoever held the meter when
    it began), never in the future (the readings after it are not known yet) and at most
    MAX_BACKDATE ago."""
    now = timezone.now()
    if at is not None and at < now - MAX_BACKDATE:
        raise DomainError.for_field(
            field,
            f"A move can be dated at most {MAX_BACKDATE.days} days back.",
            code="too_far_back",
        )
    at = floor_to_interval(at or now)
    if at > now:
        raise DomainError.for_field(field, "A move cannot be dated in the future.", code="future")
    return at


def _pending_days(*, meter_id: int, since: datetime) -> list:
    """UTC days of the meter, from the tenancy's start, whose readings are not charged yet."""
    charged = ChargedDay.objects.filter(meter_id=meter_id, day__gte=since.astimezone(UTC).date())
    charged_at = dict(charged.values_list("day", "charged_at"))
    rows = MeterDay.objects.filter(meter_id=meter_id, day__gte=since.astimezone(UTC).date())
    return [
        day
        for day, updated_at in rows.values_list("day", "updated_at").order_by("day")
        if day not in charged_at or updated_at > charged_at[day]
    ]


def _final_charging(*, account: ConsumerAccount, tenancies: list[MeterAssignment]) -> None:
    """Charge every reading of the tenancy not yet charged, now, inside the move's transaction.
    A day that cannot be charged (no tariff for it) stops the move: nothing is half-settled."""
    pending = [
        (tenancy.meter_id, day)
        for tenancy in tenancies
        if tenancy.meter.payment_mode == Meter.PaymentMode.PREPAID
        for day in _pending_days(meter_id=tenancy.meter_id, since=tenancy.start)
    ]
    try:
        charges_apply(keys=pending, strict=True)
    except DomainError as exc:
        raise Conflict(
            f"Readings of the tenancy cannot be charged ({exc.message}). Settle charging first.",
            code="charging_unsettled",
        ) from None
    # The energy held for the open day becomes its ledger entry: the final statement shows it.
    energy_days_post(account_ids=[account.pk])
    if any(t.meter.payment_mode == Meter.PaymentMode.POSTPAID for t in tenancies):
        # The final bills: every month since the last one billed, up to the month of the move.
        # Without any bill yet, the month before the move's (the daily run may not have billed it).
        zone = account.utility.zone
        final_month = tenancies[0].end.astimezone(zone).date().replace(day=1)
        last_billed = Bill.objects.filter(account=account).aggregate(m=Max("month"))["m"]
        first = min(t.start for t in tenancies).astimezone(zone).date().replace(day=1)
        if last_billed:
            month = (last_billed + timedelta(days=32)).replace(day=1)
        else:
            month = (final_month - timedelta(days=1)).replace(day=1)
        month = max(month, first)
        while month <= final_month:
            try:
                bill_issue(account=account, month=month)
            except DomainError as exc:
                raise Conflict(
                    f"The {month:%B %Y} bill cannot be issued ({exc.message}).",
                    code="charging_unsettled",
                ) from None
            month = (month + timedelta(days=32)).replace(day=1)


def _lock_balances(
    *,
    account: ConsumerAccount,
    tenancies: list[MeterAssignment],
    carry_to: ConsumerAccount | None,
) -> None:
    """Lock, up front and in ascending id (the order every money movement takes), the Balance
    rows a move-out may post to: the account, the account it carries to, and the other holders
    of its meters in the days final charging may touch."""
    involved = {account.pk} | ({carry_to.pk} if carry_to else set())
    involved |= set(
        MeterAssignment.objects.filter(meter_id__in=[t.meter_id for t in tenancies])
        .filter(Q(end__isnull=True) | Q(end__gt=min(t.start for t in tenancies)))
        .values_list("account_id", flat=True)
    )
    balances_lock(account_ids=sorted(involved))


def _carry_target(
    account: ConsumerAccount, target: ConsumerAccount | None, *, field: str
) -> ConsumerAccount:
    if target is None:
        raise DomainError.for_field(
            field, "Name the consumer's new account to carry it to.", code="carry_to_required"
        )
    if target.pk == account.pk or target.utility_id != account.utility_id:
        raise DomainError.for_field(
            field, "Carry to another account of the same utility.", code="carry_to_invalid"
        )
    if target.status == ConsumerAccount.Status.CLOSED:
        raise DomainError.for_field(field, "That account is closed.", code="carry_to_closed")
    return target


def _settle(
    *, account: ConsumerAccount, choice: MoveOutChoice, move: Move, staff: User | None
) -> None:
    """Refund or carry what the account holds; carry or write off what it owes."""
    balance = Balance.objects.select_for_update().get(account=account)
    policy = policy_for(account.utility)
    key = f"move-out:{account.pk}"
    if balance.amount > 0 and balance.debt > 0:
        # What the account holds pays what it owes first; only the rest is refunded or carried.
        repaid = min(balance.amount, balance.debt)
        ledger_post(
            account=account,
            kind=LedgerEntry.Kind.DEBT_RECOVERY,
            amount=-repaid,
            key=f"{key}:repay",
            description="Debt repaid from the balance on moving out",
            created_by=staff,
            debt_change=-repaid,
            meta={"move": move.pk},
        )
        balance.refresh_from_db()
    credit = max(Decimal(0), balance.amount)
    owed = max(Decimal(0), -balance.amount) + balance.debt
    if credit:
        how = choice.credit or policy.move_out_credit
        if how == Move.Credit.CARRY:
            target = _carry_target(account, choice.carry_to, field="carry_to")
            ledger_post(
                account=account,
                kind=LedgerEntry.Kind.CREDIT_TRANSFER,
                amount=-credit,
                key=f"{key}:credit-out",
                description=f"Balance carried to account {target.consumer_id} on moving out",
                created_by=staff,
                meta={"move": move.pk, "to": target.pk},
            )
            ledger_post(
                account=target,
                kind=LedgerEntry.Kind.CREDIT_TRANSFER,
                amount=credit,
                key=f"{key}:credit-in",
                description=f"Balance carried from account {account.consumer_id}",
                created_by=staff,
                meta={"move": move.pk, "from": account.pk},
            )
            move.carried_to = target
        elif how == Move.Credit.REFUND:
            ledger_post(
                account=account,
                kind=LedgerEntry.Kind.REFUND,
                amount=-credit,
                key=f"{key}:refund",
                description="Remaining balance refunded on moving out",
                created_by=staff,
                meta={"move": move.pk},
            )
        else:
            raise DomainError.for_field(
                "credit", "Choose refund or carry.", code="unknown_credit_choice"
            )
        move.credit, move.credit_amount = how, credit
    if owed:
        if choice.debt == Move.Debt.CARRY:
            target = _carry_target(account, choice.carry_to, field="carry_to")
            description = f"Debt carried to account {target.consumer_id} on moving out"
            ledger_post(
                account=account,
                kind=LedgerEntry.Kind.DEBT_TRANSFER,
                amount=owed - balance.debt,
                key=f"{key}:debt-out",
                description=description,
                created_by=staff,
                debt_change=-balance.debt,
                meta={"move": move.pk, "to": target.pk, "debt": str(owed)},
            )
            # Carried as arrears: recovered as a share of each top-up, not taken from the balance.
            ledger_post(
                account=target,
                kind=LedgerEntry.Kind.DEBT_TRANSFER,
                amount=Decimal(0),
                key=f"{key}:debt-in",
                description=f"Debt of {utility_money(owed, account.utility)} carried from "
                f"account {account.consumer_id}",
                created_by=staff,
                debt_change=owed,
                meta={"move": move.pk, "from": account.pk, "debt": str(owed)},
            )
            move.carried_to = target
        elif choice.debt == Move.Debt.WRITE_OFF:
            if len(choice.reason.strip()) < 5:
                raise DomainError.for_field(
                    "reason", "Say why the debt is written off.", code="reason_required"
                )
            ledger_post(
                account=account,
                kind=LedgerEntry.Kind.DEBT_WRITE_OFF,
                amount=owed - balance.debt,
                key=f"{key}:write-off",
                description="Debt written off on moving out",
                created_by=staff,
                reason=choice.reason.strip(),
                debt_change=-balance.debt,
                meta={"move": move.pk, "debt": str(owed)},
            )
        else:
            utility = account.utility
            raise Conflict(
                f"The account owes {utility_money(owed, utility)}: carry it to the consumer's new "
                "account or write it off with a reason.",
                code="debt_unsettled",
                extra={
                    "owed": money_digits(owed, minor_unit=utility.currency_minor_unit),
                    "currency": utility.currency,
                },
            )
        move.debt, move.debt_amount = choice.debt, owed
    # The closed account's unpaid bills are settled by the transfer or the write-off: no fine,
    # no arrears flag ever reaches them again.
    Bill.objects.filter(account=account, status=Bill.Status.UNPAID).update(
        status=Bill.Status.TRANSFERRED
        if move.debt == Move.Debt.CARRY or not owed
        else Bill.Status.WRITTEN_OFF
    )


def _last_interval(meter_id: int, *, before: datetime) -> datetime | None:
    """The start of the meter's newest interval with a reading that began before `before`, read
    from the readings themselves (the meter row keeps its newest reading only to within half an
    hour, meters.services.TOUCH_EVERY); None if none in the last week of rows."""
    rows = (
        MeterDay.objects.filter(meter_id=meter_id, day__lte=before.astimezone(UTC).date())
        .order_by("-day")
        .values_list("day", "quality")[:7]
    )
    for day, quality in rows:
        quality = bytes(quality)
        for slot in range(len(quality) - 1, -1, -1):
            if quality[slot] and slot_start(day, slot) < before:
                return slot_start(day, slot)
    return None


def _final_statement(account: ConsumerAccount, tenancies: list[MeterAssignment]) -> dict:
    """What the old tenant is told and staff see: the last interval of the tenancy and the
    money as it stood after settling."""
    balance = Balance.objects.get(account=account)
    meters = []
    for tenancy in tenancies:
        meter = tenancy.meter
        last = _last_interval(meter.pk, before=tenancy.end or timezone.now())
        meters.append(
            {
                "meter": meter.pk,
                "serial": meter.serial,
                "tenancy_start": tenancy.start.isoformat(),
                "tenancy_end": tenancy.end.isoformat() if tenancy.end else None,
                "last_interval_start": last.isoformat() if last else None,
            }
        )
    minor_unit = account.utility.currency_minor_unit
    return {
        "meters": meters,
        "balance": money_digits(balance.amount, minor_unit=minor_unit),
        "debt": money_digits(balance.debt, minor_unit=minor_unit),
    }


def move_out(
    *,
    account: ConsumerAccount,
    at: datetime | None = None,
    choice: MoveOutChoice | None = None,
    staff: User | None = None,
    source: str = "admin",
) -> Move:
    """End an account's tenancy of its meters and close it.

    1. Lock the account; a second move-out of the same account returns the first (retries are
       safe), anything else on a closed account is refused.
    2. End each open tenancy at `at` (an interval boundary): the last interval of the tenancy is
       the one before it, and every later reading belongs to the next tenant or to nobody.
    3. Final charging: every reading of the tenancy not charged yet is charged now (postpaid: the
       final bill); if any cannot be, nothing at all is written.
    4. Settle the money: a prepaid balance refunded or carried (utility policy unless chosen),
       debt carried to the consumer's new account or written off with a reason.
    5. Close the account: its links end, each holder keeps a read-only view of its history and
       is told; waiting disconnections are cancelled.
    """
    choice = choice or MoveOutChoice()
    at = _instant(at)
    with transaction.atomic():
        account = (
            ConsumerAccount.objects.select_for_update().select_related("utility").get(pk=account.pk)
        )
        done = Move.objects.filter(account=account, kind=Move.Kind.MOVE_OUT).first()
        if done is not None:
            done.replayed = True
            return done
        if account.status == ConsumerAccount.Status.CLOSED:
            raise Conflict("This account is already closed.", code="account_closed")
        tenancies = list(
            MeterAssignment.objects.select_for_update()
            .filter(account=account, end__isnull=True)
            .select_related("meter")
        )
        if not tenancies:
            raise Conflict("This account holds no meter to move out of.", code="no_tenancy")
        for tenancy in tenancies:
            if at <= tenancy.start:
                raise DomainError.for_field(
                    "at",
                    f"The move-out must come after the tenancy of meter {tenancy.meter.serial} "
                    f"began ({tenancy.start.isoformat()}).",
                    code="move_out_before_move_in",
                )
        _lock_balances(account=account, tenancies=tenancies, carry_to=choice.carry_to)
        for tenancy in tenancies:
            tenancy.end = at
            tenancy.save(update_fields=["end"])
            Meter.objects.filter(pk=tenancy.meter_id, account=account).update(account=None)
            if tenancy.meter.payment_mode == Meter.PaymentMode.PREPAID:
                # Dated back: what was charged after `at` is refunded and charged to the next
                # holder instead.
                charges_release(meter_id=tenancy.meter_id, account=account, after=at)
                _recharge_from(meter_id=tenancy.meter_id, at=at)
        _final_charging(account=account, tenancies=tenancies)
        move = Move.objects.create(
            kind=Move.Kind.MOVE_OUT,
            account=account,
            at=at,
            reason=choice.reason.strip(),
            created_by=staff,
            source=source,
        )
        move.meters.set([t.meter_id for t in tenancies])
        _settle(account=account, choice=choice, move=move, staff=staff)
        RelayCommand.objects.filter(account=account, status=RelayCommand.Status.WAITING).update(
            status=RelayCommand.Status.CANCELLED, error="The account moved out."
        )
        move.final_statement = _final_statement(account, tenancies)
        move.save()
        _tell_moved_out(account=account, move=move)
    return move


def _tell_moved_out(*, account: ConsumerAccount, move: Move) -> None:
    """Close the account, its holders told in the app with the final statement, and the tenant's
    registered mobile by SMS (a tenant without the app hears too)."""
    from notifications import categories
    from notifications.tasks import send_sms

    utility = account.utility
    credit_amount, debt_amount = Decimal(move.credit_amount), Decimal(move.debt_amount)
    credit, debt = utility_money(credit_amount, utility), utility_money(debt_amount, utility)
    if move.source == "conversion":  # the consumer stays; the contract changes
        account_close(account=account)
        body = (
            f"{utility.name}: postpaid account {account.consumer_id} is closed and replaced by "
            f"prepaid account {move.carried_to.consumer_id}; {debt} carried as debt."
        )
    else:
        account_close(
            account=account,
            category=categories.MOVED_OUT,
            context={"credit": credit_amount, "debt": debt_amount},
        )
        body = (
            f"{utility.name}: account {account.consumer_id} is closed "
            f"({move.at.astimezone(utility.zone):%d %b %Y %H:%M}). Credit refunded or carried: "
            f"{credit}; debt carried or written off: {debt}."
        )
    mobile = account.registered_mobile
    transaction.on_commit(lambda: send_sms.delay(mobile, body, utility.code))


def move_in(
    *,
    meter: Meter,
    consumer_id: str,
    registered_mobile: str,
    name: str,
    premises_address: str = "",
    at: datetime | None = None,
    staff: User | None = None,
    source: str = "admin",
) -> Move:
    """Start a new account's tenancy of a vacant meter.

    1. Lock the meter. Refuse if it still has a tenant (move them out first) or if `at` comes
       before the previous tenancy ended; a repeat of the same move-in returns the first.
    2. Create the account with its own zero balance; the tenancy starts at `at`.
    3. Readings already stored from `at` on are queued for charging again: an interval nobody
       held was left uncharged, and now belongs to the new tenant.
    4. Supply: a meter left open by the previous tenant's debt is reconnected when the new
       account is allowed to draw (emergency credit above zero); else the first top-up does it.
    """
    at = _instant(at)
    utility: Utility = meter.utility
    consumer_id = (consumer_id or "").strip()
    if not consumer_id or len(consumer_id) > 32:
        raise DomainError.for_field(
            "consumer_id",
            "Give the new account's consumer ID (at most 32 characters).",
            code="consumer_id_required",
        )
    if not (name or "").strip():
        raise DomainError.for_field("name", "Give the consumer's name.", code="name_required")
    try:
        mobile = phone_normalize(raw=registered_mobile, region=utility.country)
    except DomainError as exc:
        raise DomainError.for_field("registered_mobile", exc.message, code=exc.code) from None
    with transaction.atomic():
        meter = Meter.objects.select_for_update().select_related("utility").get(pk=meter.pk)
        existing = ConsumerAccount.objects.filter(utility=utility, consumer_id=consumer_id).first()
        if existing is not None:
            done = Move.objects.filter(
                account=existing, kind=Move.Kind.MOVE_IN, meters=meter
            ).first()
            if done is not None:
                done.replayed = True
                return done
            raise Conflict(
                "An account with this consumer ID already exists.", code="consumer_id_taken"
            )
        if MeterAssignment.objects.filter(meter=meter, end__isnull=True).exists():
            raise Conflict(
                "The meter still has a tenant: move them out first.", code="meter_occupied"
            )
        if meter.status == Meter.Status.REMOVED:
            raise Conflict("This meter has been removed.", code="meter_removed")
        previous_end = MeterAssignment.objects.filter(meter=meter).aggregate(e=Max("end"))["e"]
        if previous_end and at < previous_end:
            raise DomainError.for_field(
                "at",
                f"The previous tenancy ended at {previous_end.isoformat()}; the move-in cannot "
                "come before it.",
                code="overlapping_tenancy",
            )
        account = _account_open(
            utility=utility,
            consumer_id=consumer_id,
            registered_mobile=mobile,
            name=name.strip()[:200],
            premises_address=(premises_address or "").strip(),
        )
        move = _tenancy_start(meter=meter, account=account, at=at, staff=staff, source=source)
        policy = policy_for(utility)
        # A new tenant starts at zero: only an automatic allowance lets the supply on before
        # a first top-up (credit on request is taken by the tenant, in the app).
        automatic = policy.emergency_credit > 0 and not policy.emergency_credit_on_request
        if meter.relay == Meter.Relay.OPEN and automatic:
            reconnect_request(meter=meter, reason="move_in")
    return move


def _account_open(*, utility: Utility, consumer_id: str, **fields) -> ConsumerAccount:
    """A new account with its own zero balance."""
    try:
        with transaction.atomic():
            account = ConsumerAccount.objects.create(
                utility=utility, consumer_id=consumer_id, **fields
            )
    except IntegrityError:  # the same consumer ID made at once elsewhere
        raise Conflict(
            "An account with this consumer ID already exists.", code="consumer_id_taken"
        ) from None
    Balance.objects.create(account=account)
    return account


def _tenancy_start(
    *, meter: Meter, account: ConsumerAccount, at: datetime, staff: User | None, source: str
) -> Move:
    MeterAssignment.objects.create(meter=meter, account=account, start=at)
    meter.account = account
    meter.save(update_fields=["account"])
    _recharge_from(meter_id=meter.pk, at=at)
    move = Move.objects.create(
        kind=Move.Kind.MOVE_IN, account=account, at=at, created_by=staff, source=source
    )
    move.meters.set([meter.pk])
    return move


def _recharge_from(*, meter_id: int, at: datetime) -> None:
    """Mark the meter's days from `at` on as changed, so the charging pass looks at them again
    (it charges only what no account was charged for: a vacant stretch, now the new tenant's).
    A move is dated at most days back, so this touches a handful of rows by primary key."""
    days = MeterDay.objects.filter(meter_id=meter_id, day__gte=at.astimezone(UTC).date())
    if connection.vendor == "postgresql":
        # The database's clock, never backwards, as ingest stamps (billing.charging._horizon).
        days.update(updated_at=Greatest(Now(), F("updated_at") + timedelta(microseconds=1)))
        return
    now = timezone.now()
    for day, updated_at in days.values_list("day", "updated_at"):
        days.filter(day=day).update(updated_at=max(now, updated_at + timedelta(microseconds=1)))


def account_by_consumer_id(*, utility: Utility, consumer_id: str) -> ConsumerAccount:
    account = ConsumerAccount.objects.filter(utility=utility, consumer_id=consumer_id).first()
    if account is None:
        raise NotFound(f"No account has consumer ID {consumer_id}.", code="unknown_consumer")
    return account


def conversion_carry_out(
    *, conversion: Conversion, new_meter_serial: str, staff: User, new_consumer_id: str = ""
) -> Conversion:
    """End a postpaid contract in arrears and start a prepaid one (Egypt's conversion).

    1. Lock the conversion: a double submit converts once.
    2. Open the prepaid account (its consumer ID given, or the old one with a P) for the same
       consumer and registered mobile.
    3. Move the postpaid account out now: its meters removed, its final bills issued, its credit
       or arrears carried to the prepaid account (arrears as debt, recovered from each top-up);
       its unpaid bills are settled by that transfer and stay readable to its holder, whose link
       turns read-only.
    4. Install the prepaid meter on the new account; the old account's live links, proven by the
       same number, are carried to it, so its holders need no new code.
    """
    new_meter_serial = (new_meter_serial or "").strip()
    if not new_meter_serial:
        raise DomainError.for_field(
            "new_meter_serial", "Give the prepaid meter's serial.", code="serial_required"
        )
    at = _instant(None)
    with transaction.atomic():
        conversion = (
            Conversion.objects.select_for_update()
            .select_related("account__utility")
            .get(pk=conversion.pk)
        )
        if conversion.status != Conversion.Status.FLAGGED:
            raise Conflict("This conversion has already been carried out.", code="conversion_done")
        account = conversion.account
        utility = account.utility
        if Meter.objects.filter(utility=utility, serial=new_meter_serial).exists():
            raise DomainError.for_field(
                "new_meter_serial", "A meter with this serial already exists.", code="serial_taken"
            )
        consumer_id = (new_consumer_id or "").strip() or f"{account.consumer_id}P"[-32:]
        if len(consumer_id) > 32:
            raise DomainError.for_field(
                "new_consumer_id", "At most 32 characters.", code="consumer_id_too_long"
            )
        new_account = _account_open(
            utility=utility,
            consumer_id=consumer_id,
            registered_mobile=account.registered_mobile,
            registered_mobile_since=account.registered_mobile_since,
            name=account.name,
            premises_address=account.premises_address,
        )
        holders = list(
            AccountLink.objects.filter(
                account=account,
                unlinked_at__isnull=True,
                role=AccountLink.Role.HOLDER,
                verified_mobile=account.registered_mobile,
            ).select_related("user")
        )
        old = list(
            Meter.objects.filter(assignments__account=account, assignments__end__isnull=True)
        )
        capacity = old[0].rated_capacity_kw if old else Decimal("15")
        transformer = old[0].transformer if old else None
        move = move_out(
            account=account,
            at=at,
            choice=MoveOutChoice(
                credit=Move.Credit.CARRY,
                debt=Move.Debt.CARRY,
                carry_to=new_account,
                reason="Converted to prepaid",
            ),
            staff=staff,
            source="conversion",
        )
        Meter.objects.filter(pk__in=[m.pk for m in old]).update(
            status=Meter.Status.REMOVED, relay=Meter.Relay.OPEN
        )
        new_meter = Meter.objects.create(
            utility=utility,
            serial=new_meter_serial,
            payment_mode=Meter.PaymentMode.PREPAID,
            rated_capacity_kw=capacity,
            transformer=transformer,
            installed_at=at,
        )
        _tenancy_start(
            meter=new_meter, account=new_account, at=at, staff=staff, source="conversion"
        )
        for link in holders:
            AccountLink.objects.get_or_create(
                user=link.user,
                account=new_account,
                unlinked_at=None,
                defaults={
                    "verified_mobile": link.verified_mobile,
                    "visible_from": link.visible_from,
                },
            )
        conversion.status, conversion.done_at, conversion.done_by = (
            Conversion.Status.DONE,
            at,
            staff,
        )
        conversion.old_meter = old[0] if old else None
        conversion.new_meter, conversion.new_account = new_meter, new_account
        conversion.arrears = move.debt_amount
        conversion.save()
    return conversion
