"""What an outage owes each account: late notice, late restoration and repeated outages, each
measured from the account's own evidence, and measured again when late events move it."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Q

from accounts.models import ConsumerAccount, Utility
from core.money import money_quantize, utility_money
from core.timebuckets import local_midnight, moment_text
from meters.models import MeterAssignment
from outages.models import (
    AffectedMeter,
    Compensation,
    Outage,
    OutageNotice,
    Standard,
    StandardsPolicy,
)
from outages.standards.common import (
    _differs,
    _duration_text,
    amount_beyond,
    compensation_correct,
    compensation_record,
    policy_for,
    repeated_amount,
)
from outages.standards.evidence import (
    EVIDENCE_TEXTS,
    SUPPLIED,
    Evidence,
    _account_evidence,
    _outage_accounts,
    _outage_holdings,
    outage_evidence,
)


def standards_evaluate_outage(*, outage: Outage) -> list[Compensation]:
    """Record what an outage owes each affected account; returns the compensations created.

    1. Notice (planned outages, once started): consumers must be told `outage_notice_hours`
       before the supply goes off, each account counted from when the notice of the schedule in
       force reached it (OutageNotice.sent_at: the app push or the SMS); a notice that had not
       reached it when the outage began is missed. The outage begins at its planned start, or
       earlier if it really started earlier.
    2. Restoration and repeated outages (once restored): measured per account from its own
       meter's evidence (_outage_measure, the same path as standards_remeasure_outage, so the
       two never disagree).
    A consumer hit by both 2's standards gets both (DOMAIN.md §3).
    """
    policy = policy_for(outage.utility)
    if policy is None or outage.actual_start is None:
        return []
    created = []
    with transaction.atomic():
        if outage.kind == Outage.Kind.PLANNED and outage.notice_given_at is not None:
            begins = min(outage.planned_start, outage.actual_start)
            accounts = _outage_accounts(outage)
            for account, reason, details in _late_notices(outage, accounts=accounts, begins=begins):
                compensation, new = compensation_record(
                    policy=policy,
                    account=account,
                    standard=Standard.NOTICE,
                    event_key=f"outage:{outage.pk}",
                    amount=policy.notice_amount,
                    failure_at=begins,
                    reason=reason,
                    details=details,
                    outage=outage,
                )
                if new:
                    created.append(compensation)
        if outage.actual_end is not None:
            created += [row for row, new in _outage_measure(policy=policy, outage=outage) if new]
    return created


def _late_notices(outage: Outage, *, accounts: list[ConsumerAccount], begins: datetime):
    """(account, reason, details) for each account the notice reached less than
    `outage_notice_hours` before the outage began, or not at all. An account that took the meter
    after the notice went out has no notice of its own: the outage's publication counts for it."""
    utility = outage.utility
    required = timedelta(hours=utility.outage_notice_hours)
    when = outage.actual_start.astimezone(utility.zone).strftime("%Y-%m-%d %H:%M")
    delivered = {
        account_id: (sent_at, channel)
        for account_id, sent_at, channel in OutageNotice.objects.filter(
            outage=outage, version=outage.version
        ).values_list("account_id", "sent_at", "channel")
    }
    for account in accounts:
        sent_at, channel = delivered.get(account.pk, (outage.notice_given_at, ""))
        if sent_at is not None and begins - sent_at >= required:
            continue
        if sent_at is None or sent_at >= begins:
            reason = (
                f"Planned outage of {when}: the notice had not reached you when it began; "
                f"the standard is {utility.outage_notice_hours} h ahead."
            )
            lead_minutes = None
        else:
            lead = begins - sent_at
            reason = (
                f"Planned outage of {when} announced {_duration_text(lead)} ahead; "
                f"the standard is {utility.outage_notice_hours} h."
            )
            lead_minutes = int(lead.total_seconds() // 60)
        details = {
            "lead_minutes": lead_minutes,
            "notice_sent_at": sent_at.isoformat() if sent_at else None,
            "channel": channel,
        }
        yield account, reason, details


def standards_remeasure_outage(*, outage: Outage) -> list[Compensation]:
    """Bring the restoration and repeated-outage compensations of a restored outage to what each
    consumer's evidence says now (late events moved a meter's period): a new compensation where
    one is now owed, a correction (compensation_correct: the difference, never a second payment;
    to zero where nothing is owed any more) where the amount moved, nothing where it did not.
    Idempotent. Returns the compensations created or changed."""
    policy = policy_for(outage.utility)
    if policy is None or outage.actual_start is None or outage.actual_end is None:
        return []
    with transaction.atomic():
        return [row for row, _ in _outage_measure(policy=policy, outage=outage)]


def _outage_measure(*, policy: StandardsPolicy, outage: Outage) -> list[tuple[Compensation, bool]]:
    """Restoration and repeated outages of a restored outage from each account's evidence:
    (compensation, created) for each row created or changed. In the caller's transaction.

    1. Serialise per utility: two outages restored (or re-measured) at once would each rank
       without the other (both "third"). Restorations and late events of restored outages are
       rare next to everything else.
    2. Each affected meter's evidence (outage_evidence); each account's is its meters' longest.
    3. Restoration: off longer than `restoration_hours` → amount_beyond, per account.
    4. Repeated: the outage's rank among the account's long outages of the year, each counted
       only where the account's own evidence lasted `repeated_min_hours` (_long_outage_ranks),
       and what the outages after it are owed (_repeated_reconcile).
    """
    Utility.objects.select_for_update().filter(pk=outage.utility_id).first()
    evidence = outage_evidence(outage=outage)
    holdings = _outage_holdings(outage)
    accounts = list(ConsumerAccount.objects.filter(pk__in=list(holdings)).order_by("pk"))
    by_account = {
        account_id: found
        for account_id, meter_ids in holdings.items()
        if (found := _account_evidence(meter_ids, evidence)) is not None
    }
    changed = _restoration_reconcile(
        policy=policy, outage=outage, accounts=accounts, evidence=by_account
    )
    ranks, lived = _long_outage_ranks(outage=outage, policy=policy, evidence=by_account)
    changed += _repeated_reconcile(policy=policy, ranks=ranks, evidence=lived, accounts=accounts)
    return changed


def _restoration_reconcile(
    *,
    policy: StandardsPolicy,
    outage: Outage,
    accounts: list[ConsumerAccount],
    evidence: dict[int, Evidence],
) -> list[tuple[Compensation, bool]]:
    """Each account's restoration compensation brought to its own evidence (DOMAIN.md §3: off
    more than `restoration_hours`: 200, plus 50 per further hour or part of one)."""
    utility = outage.utility
    zone = utility.zone
    threshold = timedelta(hours=policy.restoration_hours)
    event_key = f"outage:{outage.pk}"
    existing = {
        row.account_id: row
        for row in Compensation.objects.filter(standard=Standard.RESTORATION, event_key=event_key)
    }
    changed = []
    for account in accounts:
        found = evidence.get(account.pk)
        row = existing.get(account.pk)
        late = None
        if found is not None and found.duration is not None:
            late = amount_beyond(
                elapsed=found.duration,
                threshold=threshold,
                base=policy.restoration_amount,
                per_hour=policy.restoration_amount_per_hour,
            )
        if late is None:
            if row is None or found is None:
                continue
            amount, details = Decimal(0), {**found.details(zone), "hours": 0}
            if found.source == SUPPLIED:
                reason = (
                    f"Not owed: your meter had supply during the outage of "
                    f"{moment_text(outage.actual_start, zone)}."
                )
            else:
                reason = (
                    f"Not owed: supply off {_duration_text(found.duration)} from "
                    f"{moment_text(found.off_at, zone)} ({EVIDENCE_TEXTS[found.source]}), within "
                    f"the {policy.restoration_hours} h standard."
                )
        else:
            amount, hours = late
            details = {**found.details(zone), "hours": hours}
            reason = (
                f"Supply off {_duration_text(found.duration)} from "
                f"{moment_text(found.off_at, zone)} ({EVIDENCE_TEXTS[found.source]}); the "
                f"standard is {policy.restoration_hours} h: "
                f"{utility_money(policy.restoration_amount, utility)} + {hours} started hour(s) "
                f"× {utility_money(policy.restoration_amount_per_hour, utility)}."
            )
        if row is None:
            changed.append(
                compensation_record(
                    policy=policy,
                    account=account,
                    standard=Standard.RESTORATION,
                    event_key=event_key,
                    amount=amount,
                    failure_at=found.off_at + threshold,
                    reason=reason,
                    details=details,
                    outage=outage,
                )
            )
        elif _differs(
            row,
            amount=amount,
            reason=reason,
            details=details,
            minor_unit=utility.currency_minor_unit,
        ):
            corrected = compensation_correct(
                compensation_id=row.pk,
                amount=amount,
                reason=reason,
                details=details,
                correction="measured",
                take_back_at_once=True,
            )
            changed.append((corrected, False))
    return changed


def _long_outage_ranks(
    *, outage: Outage, policy: StandardsPolicy, evidence: dict[int, Evidence]
) -> tuple[dict[tuple[int, int], int | None], dict[tuple[int, int], Evidence]]:
    """({(account id, outage id): rank}, {(account id, outage id): Evidence}) for this outage and
    every outage of the same local calendar year that started after it, per account of this
    outage (`evidence`: their evidence of this one). Rank None: this outage does not count for
    the account (its own evidence is shorter than `repeated_min_hours`, or it had supply).

    DOMAIN.md §3 counts the outages of a calendar year, so the rank is the outage's place by
    actual start (then id) among the restored outages the account lived through (it held an
    affected meter when each began) whose evidence for the account lasted `repeated_min_hours`
    or more: each consumer's own, not the outage's times (issue 17), whatever order they were
    restored in. Measuring this outage can move only itself and those that started after it.
    """
    zone = outage.utility.zone
    year = outage.actual_start.astimezone(zone).year
    start = local_midnight(datetime(year, 1, 1).date(), zone)
    end = local_midnight(datetime(year + 1, 1, 1).date(), zone)
    minimum = timedelta(hours=policy.repeated_min_hours)
    restored = Outage.objects.filter(
        utility_id=outage.utility_id,
        status=Outage.Status.RESTORED,
        actual_start__gte=start,
        actual_start__lt=end,
    ).only("pk", "utility_id", "actual_start", "actual_end")
    candidates = {o.pk: o for o in restored}
    if outage.pk not in candidates or not evidence:
        return {}, {}
    # The tenancies in this year of this outage's accounts, and the outages on those meters.
    held: dict[int, list[tuple[int, datetime, datetime | None]]] = {}
    for meter_id, account_id, held_from, held_to in (
        MeterAssignment.objects.filter(account_id__in=list(evidence), start__lt=end)
        .filter(Q(end__isnull=True) | Q(end__gt=start))
        .values_list("meter_id", "account_id", "start", "end")
    ):
        held.setdefault(meter_id, []).append((account_id, held_from, held_to))
    # {outage id: {account id: the meters it held when that outage began}}
    lived: dict[int, dict[int, list[int]]] = {outage.pk: {}}
    for meter_id, outage_id in AffectedMeter.objects.filter(
        outage_id__in=list(candidates), meter_id__in=list(held)
    ).values_list("meter_id", "outage_id"):
        at = candidates[outage_id].actual_start
        for account_id, held_from, held_to in held[meter_id]:
            if held_from <= at and (held_to is None or held_to > at):
                lived.setdefault(outage_id, {}).setdefault(account_id, []).append(meter_id)
    found: dict[tuple[int, int], Evidence] = {
        (account_id, outage.pk): e for account_id, e in evidence.items()
    }
    for outage_id, accounts in lived.items():
        if outage_id == outage.pk:
            continue
        other = candidates[outage_id]
        meters = outage_evidence(
            outage=other,
            meter_ids=sorted({m for ms in accounts.values() for m in ms}),
            # Shorter than the minimum by its own times: only a meter's own period can make it
            # long for a consumer, and the readings need not be read.
            look_for_supply=other.actual_end - other.actual_start >= minimum,
        )
        for account_id, meter_ids in accounts.items():
            if (e := _account_evidence(meter_ids, meters)) is not None:
                found[account_id, outage_id] = e
    long: dict[int, list[int]] = {}
    for (account_id, outage_id), e in found.items():
        if e.duration is not None and e.duration >= minimum:
            long.setdefault(account_id, []).append(outage_id)
    this = (outage.actual_start, outage.pk)
    ranks: dict[tuple[int, int], int | None] = {}
    for account_id in evidence:
        ordered = sorted(long.get(account_id, []), key=lambda pk: (candidates[pk].actual_start, pk))
        for rank, outage_id in enumerate(ordered, start=1):
            if (candidates[outage_id].actual_start, outage_id) >= this:
                ranks[account_id, outage_id] = rank
        ranks.setdefault((account_id, outage.pk), None)
    return ranks, found


def _repeated_reason(
    outage: Outage, *, rank: int | None, policy: StandardsPolicy, evidence: Evidence | None
) -> str:
    zone = outage.utility.zone
    when = moment_text(outage.actual_start, zone)
    year = outage.actual_start.astimezone(zone).year
    if rank is None:
        why = EVIDENCE_TEXTS[SUPPLIED]
        if evidence is not None and evidence.duration is not None:
            why = (
                f"your supply was off {_duration_text(evidence.duration)} "
                f"({EVIDENCE_TEXTS[evidence.source]})"
            )
        return (
            f"Not owed: the outage of {when} is not one of your outages of "
            f"{policy.repeated_min_hours} h or more in {year}: {why}."
        )
    return (
        f"Outage of {when} was long outage number {rank} in {year} (more "
        f"than {policy.repeated_allowed} of {policy.repeated_min_hours} h or more)."
    )


def _repeated_reconcile(
    *,
    policy: StandardsPolicy,
    ranks: dict[tuple[int, int], int | None],
    evidence: dict[tuple[int, int], Evidence],
    accounts: list[ConsumerAccount],
) -> list[tuple[Compensation, bool]]:
    """Bring each ranked outage's repeated-outage compensation to what its rank owes: a new row
    where one is now owed, a correction (compensation_correct: a difference, never a second
    payment) where the rank or the amount moved, to zero where the outage no longer counts. Rows
    that say what is owed now are not touched, so it may run any number of times. Money owed
    back because another outage now ranks above waits for that one's credit; owed back because
    this one no longer counts (or fewer count before it), at once. Returns (row, created) for
    the rows created or changed."""
    outages = Outage.objects.select_related("utility").in_bulk({pk for _, pk in ranks})
    by_account = {a.pk: a for a in accounts}
    existing = {
        (row.account_id, row.outage_id): row
        for row in Compensation.objects.filter(
            standard=Standard.REPEATED, event_key__in=[f"outage:{pk}" for pk in outages]
        )
        if (row.account_id, row.outage_id) in ranks
    }
    utility = policy.utility
    minor_unit = utility.currency_minor_unit
    changed = []
    for (account_id, outage_id), rank in sorted(ranks.items()):
        outage = outages[outage_id]
        found = evidence.get((account_id, outage_id))
        owed = repeated_amount(rank=rank, policy=policy) if rank else None
        amount = money_quantize(owed or Decimal(0), minor_unit=minor_unit)
        reason = _repeated_reason(outage, rank=rank, policy=policy, evidence=found)
        details = {"rank": rank, **(found.details(utility.zone) if found else {})}
        row = existing.get((account_id, outage_id))
        if row is None:
            if amount and account_id in by_account:
                changed.append(
                    compensation_record(
                        policy=policy,
                        account=by_account[account_id],
                        standard=Standard.REPEATED,
                        event_key=f"outage:{outage_id}",
                        amount=amount,
                        failure_at=outage.actual_end,
                        reason=reason,
                        details=details,
                        outage=outage,
                    )
                )
        elif rank is None and not row.amount and row.details.get("rank") is None:
            continue  # uncounted and owed nothing already: only the wording could move
        elif _differs(row, amount=amount, reason=reason, details=details, minor_unit=minor_unit):
            was = row.details.get("rank")
            corrected = compensation_correct(
                compensation_id=row.pk,
                amount=amount,
                reason=reason,
                details=details,
                correction=f"rank:{rank}" if rank else "uncounted",
                take_back_at_once=not (rank and was and rank > was),
            )
            changed.append((corrected, False))
    return changed
