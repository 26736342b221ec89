"""Outages detected from the meters' own failure and restoration events.

The head-end's power-failure ("last gasp") and power-restored events are stored by the ingest;
each run of the detector (outages_detect, one per utility at a time) first folds the batches
committed since the last run into the meters' SupplyPeriods (meters.events.supply_periods_fold);
every new or changed period is `new` until the detector has looked at it. Then, in one
transaction:

1. A changed period already linked to an outage (AffectedMeter.period): the outage's measure may
   have moved. A detected outage all of whose meters that reported are back is restored at the
   last one's restoration; a restored outage is measured again (compensation corrected, never paid
   twice: outages.standards).
2. A period of a meter in an outage already known there (planned and begun, unplanned, detected,
   or restored when the event came late) whose failure falls in its time is linked to it: the
   evidence each consumer's standards are measured by.
3. The rest are grouped per transformer: failures of at least `min_meters` meters and
   `min_share` of the transformer's meters within `window_seconds` are an outage of the grid. The
   outages of one feeder are one outage; when `min_share` of a feeder's transformers are out
   the outage is the feeder's, and likewise an area's from its feeders. A new outage is
   unplanned, in progress, detected; an open detected outage of the same feeder (or area) grows to
   take it in. Consumers under it are told once: "there is a power outage …, expected back by …",
   by push, by SMS where the push does not reach (the urgent category's fallback), and by SMS to the
   registered mobile of accounts with nobody in the app (OutageNotice).
4. A failure that stays alone under its transformer for `window_seconds` is a fault at that
   consumer, not an outage of the grid: `single`.

Runs are woken after each event batch commits (supply_events_stored) and by beat every 30 seconds
(outages_detect_sweep), so a lost task delays detection by at most that.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, F, Max, Q
from django.utils import timezone
from kombu.exceptions import OperationalError

from accounts.models import AccountLink, Utility
from core.sql import insert_select
from meters.events import supply_periods_fold
from meters.models import Feeder, IngestBatch, Meter, MeterEvent, SupplyPeriod, Transformer
from notifications import categories
from notifications.services import fanout_create
from outages import selectors
from outages.models import AffectedMeter, DetectionPolicy, Outage, OutageEvent, OutageNotice

logger = logging.getLogger(__name__)

NEW, OUTAGE, SINGLE = (SupplyPeriod.State.NEW, SupplyPeriod.State.OUTAGE, SupplyPeriod.State.SINGLE)
CHUNK = 2000
# How far back a late event may still be linked to a restored outage (the standards' payment days).
LATE_LINK = timedelta(days=35)
# The lock namespace of detector runs (pg_advisory_xact_lock(namespace, utility id)).
LOCK_NAMESPACE = 1709
DETECTION_REASON = "Power failure reported by the meters"


def detection_policy(utility: Utility) -> DetectionPolicy:
    """The utility's policy, or the defaults (an unsaved row) when it has none."""
    return DetectionPolicy.objects.filter(utility=utility).first() or DetectionPolicy(
        utility=utility
    )


# ---- Waking the detector --------------------------------------------------------------------


def supply_events_stored(sender, *, utility, events, **kwargs) -> None:
    """The ingest stored new events: wake the detector once the batch commits, if any of them
    was a failure or a restoration. A run with nothing left to look at (an earlier run took this
    batch's periods too) costs one read of a partial index."""
    if not any(event.kind in MeterEvent.SUPPLY_KINDS for event in events):
        return
    utility_id = utility.pk
    transaction.on_commit(lambda: detection_wake(utility_id))


def detection_wake(utility_id: int) -> None:
    from outages.tasks import detect_outages

    try:
        detect_outages.apply_async(args=[utility_id], countdown=1)
    except (OperationalError, OSError) as exc:
        logger.warning(
            "Broker unavailable, detection of %s left for the sweep: %s", utility_id, exc
        )


def outages_detect_sweep(*, now: datetime | None = None) -> dict[int, dict[str, int]]:
    """Run the detector for every utility with batches not yet folded or periods not yet looked
    at (both by partial indexes)."""
    utility_ids = set(
        SupplyPeriod.objects.filter(state=NEW)
        .values_list("utility_id", flat=True)
        .order_by()
        .distinct()
    ) | set(
        IngestBatch.objects.filter(supply_pending=True)
        .values_list("utility_id", flat=True)
        .order_by()
        .distinct()
    )
    return {pk: outages_detect(utility_id=pk, now=now) for pk in sorted(utility_ids)}


# ---- The detector ---------------------------------------------------------------------------


@dataclass
class Candidate:
    period_id: int
    meter_id: int
    account_id: int | None
    off_at: datetime
    on_at: datetime | None
    transformer_id: int | None
    feeder_id: int | None
    area_id: int | None


@dataclass
class Run:
    now: datetime
    policy: DetectionPolicy
    window: timedelta
    counts: dict[str, int] = field(
        default_factory=lambda: {
            "linked": 0,
            "detected": 0,
            "grown": 0,
            "single": 0,
            "waiting": 0,
            "restored": 0,
            "remeasured": 0,
        }
    )
    changed: set[int] = field(default_factory=set)  # outages whose evidence changed


def _lock(utility_id: int) -> None:
    """One detector run per utility at a time: two runs would each see the same new periods and
    open two outages for one failure. SQLite serialises every writer anyway."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_NAMESPACE, utility_id])


def outages_detect(*, utility_id: int, now: datetime | None = None) -> dict[str, int]:
    """One detector run for one utility (the module's docstring has the steps). Returns counts."""
    now = now or timezone.now()
    utility = Utility.objects.get(pk=utility_id)
    policy = detection_policy(utility)
    run = Run(now=now, policy=policy, window=timedelta(seconds=policy.window_seconds))
    with transaction.atomic():
        _lock(utility_id)
        # The batches committed since the last run become supply periods first (one fold of a
        # utility at a time: this lock).
        supply_periods_fold(utility_id=utility_id, now=now)
        new = SupplyPeriod.objects.filter(utility_id=utility_id, state=NEW)
        # 1. Periods already in an outage that changed (closed, moved by a late event).
        linked = new.filter(affected__isnull=False)
        run.changed |= set(
            AffectedMeter.objects.filter(period__in=linked).values_list("outage_id", flat=True)
        )
        SupplyPeriod.objects.filter(pk__in=list(linked.values_list("pk", flat=True))).update(
            state=OUTAGE
        )
        # 2, 3 and 4 over every new period at once: a storm's failures under one transformer
        # may arrive in any order and batch, and are grouped together.
        rest = []
        candidates = _candidates(utility_id)
        for start in range(0, len(candidates), CHUNK):
            rest += _link_known(utility, candidates[start : start + CHUNK], run)
        if policy.enabled:
            rest = _detect(utility, rest, run)
        _settle_alone(rest, run)
        _outages_follow(run)
    return run.counts


def _candidates(utility_id: int) -> list[Candidate]:
    """The new periods not linked to any outage, oldest failure first, with where each meter sits
    in the grid: what the woken run has to look at (a storm's worth at most; read by the
    supply_period_new partial index)."""
    rows = SupplyPeriod.objects.filter(utility_id=utility_id, state=NEW, affected__isnull=True)
    return [
        Candidate(*values)
        for values in rows.order_by("off_at", "pk").values_list(
            "pk",
            "meter_id",
            "meter__account_id",
            "off_at",
            "on_at",
            "meter__transformer_id",
            "meter__transformer__feeder_id",
            "meter__transformer__feeder__area_id",
        )
    ]


def _link(outage_id: int, pairs: list[tuple[int, int]]) -> int:
    """Link each (meter, period) to the meter's AffectedMeter row of the outage; the periods are
    then part of it. Returns how many were linked. On PostgreSQL one UPDATE … FROM unnest per
    chunk; elsewhere (the embedded default's few rows) a bulk update."""
    linked = 0
    postgres = connection.vendor == "postgresql"
    size = 10 * CHUNK if postgres else CHUNK
    for start in range(0, len(pairs), size):
        chunk = pairs[start : start + size]
        if postgres:
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE outages_affectedmeter am SET period_id = v.period_id "
                    "FROM unnest(%s::bigint[], %s::bigint[]) AS v(meter_id, period_id) "
                    "WHERE am.outage_id = %s AND am.meter_id = v.meter_id "
                    "AND am.period_id IS NULL RETURNING am.period_id",
                    [[m for m, _ in chunk], [p for _, p in chunk], outage_id],
                )
                period_ids = [row[0] for row in cursor.fetchall()]
        else:
            by_meter = dict(chunk)
            rows = list(
                AffectedMeter.objects.filter(
                    outage_id=outage_id, meter_id__in=list(by_meter), period__isnull=True
                ).only("pk", "meter_id")
            )
            for row in rows:
                row.period_id = by_meter[row.meter_id]
            AffectedMeter.objects.bulk_update(rows, ["period"], batch_size=500)
            period_ids = [row.period_id for row in rows]
        SupplyPeriod.objects.filter(pk__in=period_ids).update(state=OUTAGE)
        linked += len(period_ids)
    return linked


def _known_outages(utility: Utility, since: datetime, run: Run) -> list[Outage]:
    """Outages a failure at or after `since` may belong to: begun and not over, or restored
    after it (a late event of an outage already restored)."""
    begun = Q(status=Outage.Status.IN_PROGRESS) | Q(
        status=Outage.Status.PUBLISHED, planned_start__lte=run.now + run.window
    )
    restored_late = Q(status=Outage.Status.RESTORED, actual_end__gt=since)
    return list(
        Outage.objects.filter(utility=utility, merged_into__isnull=True)
        .filter(begun | restored_late)
        .filter(planned_start__gte=run.now - LATE_LINK)
        .order_by("planned_start", "pk")
    )


def _fits(outage: Outage, candidate: Candidate, window: timedelta) -> bool:
    start = outage.actual_start or outage.planned_start
    if candidate.off_at < start - window:
        return False
    return outage.actual_end is None or candidate.off_at < outage.actual_end


def _link_known(utility: Utility, chunk: list[Candidate], run: Run) -> list[Candidate]:
    """Step 2: link each failure to a known outage its meter is in and whose time it falls in.
    Returns the candidates left."""
    outages = _known_outages(utility, min(c.off_at for c in chunk), run)
    if not outages:
        return chunk
    by_id = {o.pk: o for o in outages}
    member: dict[int, list[int]] = defaultdict(list)
    for outage_id, meter_id in AffectedMeter.objects.filter(
        outage_id__in=list(by_id), meter_id__in=[c.meter_id for c in chunk], period__isnull=True
    ).values_list("outage_id", "meter_id"):
        member[meter_id].append(outage_id)
    pairs: dict[int, list[tuple[int, int]]] = defaultdict(list)
    rest = []
    for candidate in chunk:
        outage_id = next(
            (
                pk
                for pk in member.get(candidate.meter_id, [])
                if _fits(by_id[pk], candidate, run.window)
            ),
            None,
        )
        if outage_id is None:
            rest.append(candidate)
        else:
            pairs[outage_id].append((candidate.meter_id, candidate.period_id))
    for outage_id, outage_pairs in pairs.items():
        run.counts["linked"] += _link(outage_id, outage_pairs)
        run.changed.add(outage_id)
    return rest


# ---- Step 3: grouping into outages of the grid ------------------------------------------------


def _at_least(share: Decimal, total: int, minimum: int) -> int:
    return max(minimum, math.ceil(share * total))


def _clusters(candidates: list[Candidate], window: timedelta) -> list[list[Candidate]]:
    """Failures of one transformer's meters, each within `window` of the first (sorted input)."""
    clusters: list[list[Candidate]] = []
    for candidate in candidates:
        if clusters and candidate.off_at - clusters[-1][0].off_at <= window:
            clusters[-1].append(candidate)
        else:
            clusters.append([candidate])
    return clusters


def _supplied_meters(utility_id: int, transformer_ids: list[int]) -> dict[int, int]:
    """Meters in supply (not removed) per transformer, by the meter_grid_counts index."""
    return dict(
        Meter.objects.filter(utility_id=utility_id, transformer_id__in=transformer_ids)
        .exclude(status=Meter.Status.REMOVED)
        .values("transformer_id")
        .annotate(n=Count("pk"))
        .values_list("transformer_id", "n")
    )


def _open_detected(utility: Utility) -> list[Outage]:
    return list(
        Outage.objects.filter(
            utility=utility,
            source=Outage.Source.METERS,
            status=Outage.Status.IN_PROGRESS,
            merged_into__isnull=True,
        ).prefetch_related("transformers__feeder", "feeders", "areas")
    )


@dataclass
class Incident:
    """What one run found out in one feeder or area: the grid elements and the failures."""

    feeders: set[int] = field(default_factory=set)  # whole feeders out
    transformers: set[int] = field(default_factory=set)  # transformers out (feeder not)
    areas: set[int] = field(default_factory=set)
    failures: list[Candidate] = field(default_factory=list)
    outage: Outage | None = None


def _outage_feeders(outage: Outage) -> set[int]:
    feeders = {f.pk for f in outage.feeders.all()}
    feeders |= {t.feeder_id for t in outage.transformers.all()}
    return feeders


def _detect(utility: Utility, candidates: list[Candidate], run: Run) -> list[Candidate]:
    """Step 3: the transformers with enough failures, rolled up to feeders and areas, become
    outages (new, or an open detected one that grows). Returns the failures left alone."""
    policy = run.policy
    by_transformer: dict[int, list[Candidate]] = defaultdict(list)
    rest = []
    for candidate in candidates:
        if candidate.transformer_id is None:
            rest.append(candidate)
        else:
            by_transformer[candidate.transformer_id].append(candidate)
    if not by_transformer:
        return rest
    supplied = _supplied_meters(utility.pk, list(by_transformer))
    out: dict[int, list[Candidate]] = {}  # transformer → its failures counted as out
    for transformer_id, failures in by_transformer.items():
        needed = _at_least(policy.min_share, supplied.get(transformer_id, 0), policy.min_meters)
        for cluster in _clusters(failures, run.window):
            if len({c.meter_id for c in cluster}) >= needed:
                out.setdefault(transformer_id, []).extend(cluster)
            else:
                rest.extend(cluster)
    if not out:
        return rest

    feeder_of = dict(Transformer.objects.filter(pk__in=list(out)).values_list("pk", "feeder_id"))
    open_outages = _open_detected(utility)
    by_feeder: dict[int, Incident] = {}
    for outage in open_outages:
        for feeder_id in _outage_feeders(outage):
            by_feeder.setdefault(feeder_id, Incident(outage=outage))
    incidents: dict[int, Incident] = {}
    for transformer_id, failures in out.items():
        feeder_id = feeder_of[transformer_id]
        incident = by_feeder.setdefault(feeder_id, Incident())
        incident.transformers.add(transformer_id)
        incident.failures.extend(failures)
        incidents[feeder_id] = incident

    # A feeder is out when enough of its transformers are (counting those already in its outage).
    feeder_ids = list(incidents)
    transformers_per_feeder = dict(
        Transformer.objects.filter(feeder_id__in=feeder_ids)
        .values("feeder_id")
        .annotate(n=Count("pk"))
        .values_list("feeder_id", "n")
    )
    for feeder_id, incident in incidents.items():
        already = set()
        if incident.outage is not None:
            already = {t.pk for t in incident.outage.transformers.all() if t.feeder_id == feeder_id}
            if feeder_id in {f.pk for f in incident.outage.feeders.all()}:
                incident.feeders.add(feeder_id)
                continue
        total = transformers_per_feeder.get(feeder_id, 0)
        if len(incident.transformers | already) >= _at_least(policy.min_share, total, 2):
            incident.feeders.add(feeder_id)

    for feeder_id, incident in incidents.items():
        _incident_apply(utility, feeder_id, incident, run)
    _areas_roll_up(utility, incidents, run)
    return rest


def _incident_apply(utility: Utility, feeder_id: int, incident: Incident, run: Run) -> None:
    """Open the outage of one feeder's incident, or grow the open one, then link its failures."""
    outage = incident.outage
    grown = outage is not None
    started = min(c.off_at for c in incident.failures)
    if outage is None:
        outage = Outage.objects.create(
            utility=utility,
            kind=Outage.Kind.UNPLANNED,
            source=Outage.Source.METERS,
            status=Outage.Status.IN_PROGRESS,
            reason=DETECTION_REASON,
            planned_start=started,
            actual_start=started,
            planned_end=max(run.now, started) + timedelta(minutes=run.policy.estimate_minutes),
            detected_at=run.now,
            published_at=run.now,
            notice_given_at=run.now,
            version=1,
        )
        incident.outage = outage
    elif started < outage.actual_start:
        outage.actual_start = outage.planned_start = started
        outage.save(update_fields=["actual_start", "planned_start", "updated_at"])
    if incident.feeders:
        outage.transformers.remove(*outage.transformers.filter(feeder_id__in=incident.feeders))
        outage.feeders.add(*incident.feeders)
    else:
        outage.transformers.add(*incident.transformers)
    first_new = _affected_fill(outage)
    linked = _link(outage.pk, [(c.meter_id, c.period_id) for c in incident.failures])
    run.counts["linked"] += linked
    run.changed.add(outage.pk)
    changes = {
        "meters_reported_off": linked,
        "feeders": sorted(incident.feeders),
        "transformers": sorted(incident.transformers),
    }
    if grown:
        run.counts["grown"] += 1
        _event(outage, "grown", changes)
        if first_new is not None:
            outage_detected_notify(outage=outage, now=run.now, from_affected=first_new)
    else:
        run.counts["detected"] += 1
        _event(outage, "detected", changes)
        outage_detected_notify(outage=outage, now=run.now)


def _areas_roll_up(utility: Utility, incidents: dict[int, Incident], run: Run) -> None:
    """An area is out when `min_share` of its feeders (at least two) are: their outages become
    one, the area's."""
    feeders_out = [f for f, incident in incidents.items() if f in incident.feeders]
    if len(feeders_out) < 2:
        return
    area_of = dict(Feeder.objects.filter(pk__in=feeders_out).values_list("pk", "area_id"))
    per_area: dict[int, list[int]] = defaultdict(list)
    for feeder_id in feeders_out:
        per_area[area_of[feeder_id]].append(feeder_id)
    totals = dict(
        Feeder.objects.filter(area_id__in=list(per_area))
        .values("area_id")
        .annotate(n=Count("pk"))
        .values_list("area_id", "n")
    )
    for area_id, feeder_ids in per_area.items():
        if len(feeder_ids) < _at_least(run.policy.min_share, totals.get(area_id, 0), 2):
            continue
        outages = sorted(
            {incidents[f].outage for f in feeder_ids if incidents[f].outage is not None},
            key=lambda o: (o.actual_start, o.pk),
        )
        keep, others = outages[0], outages[1:]
        for other in others:
            _fold_into(other, keep)
        keep.feeders.clear()
        keep.transformers.clear()
        keep.areas.add(area_id)
        keep.actual_start = keep.planned_start = min(o.actual_start for o in outages)
        keep.save(update_fields=["actual_start", "planned_start", "updated_at"])
        first_new = _affected_fill(keep)
        _event(keep, "grown", {"areas": [area_id], "outages_joined": [o.pk for o in others]})
        if first_new is not None:
            outage_detected_notify(outage=keep, now=run.now, from_affected=first_new)


def _fold_into(other: Outage, keep: Outage) -> None:
    """An outage the same run found to be part of a larger one: its meters (and their periods
    and notices) move to the larger one, and it ends as merged into it."""
    moving = AffectedMeter.objects.filter(outage=other).exclude(
        meter_id__in=AffectedMeter.objects.filter(outage=keep).values("meter_id")
    )
    moving.update(outage=keep)
    OutageNotice.objects.filter(outage=other).update(outage=keep)
    other.status = Outage.Status.CANCELLED
    other.merged_into = keep
    other.save(update_fields=["status", "merged_into", "updated_at"])
    _event(other, "merged", {"into": keep.pk})


def _affected_fill(outage: Outage) -> int | None:
    """Add the meters of the outage's scope that are not in it yet, with who holds them, by one
    INSERT … SELECT: a feeder's tens of thousands of meters never pass through Python. Returns
    the first new AffectedMeter's id (None if nothing was added)."""
    before = AffectedMeter.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    missing = (
        selectors.outage_scope_meters(outage=outage)
        .exclude(pk__in=AffectedMeter.objects.filter(outage=outage).values("meter_id"))
        .annotate(scope_meter=F("pk"), scope_account=F("account_id"))
        .values("scope_meter", "scope_account")
    )
    insert_select(
        AffectedMeter,
        ["outage_id", "meter_id", "account_id"],
        "%s, src.scope_meter, src.scope_account",
        missing,
        [outage.pk],
    )
    return (
        AffectedMeter.objects.filter(outage=outage, pk__gt=before)
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )


def _settle_alone(rest: list[Candidate], run: Run) -> None:
    """Step 4: failures still alone after the window are faults at those consumers; younger ones
    wait for the next run, when their neighbours' events may have come."""
    alone = [c.period_id for c in rest if run.now - c.off_at >= run.window]
    run.counts["waiting"] += len(rest) - len(alone)
    for start in range(0, len(alone), CHUNK):
        run.counts["single"] += SupplyPeriod.objects.filter(
            pk__in=alone[start : start + CHUNK], state=NEW
        ).update(state=SINGLE)


# ---- After the run: restorations and measures ---------------------------------------------------


def _outages_follow(run: Run) -> None:
    """A detected outage whose reporting meters are all back is restored at the last one's
    restoration; a restored outage whose evidence changed is measured again."""
    from outages import services, standards

    for outage in Outage.objects.filter(pk__in=run.changed).order_by("pk"):
        if outage.status == Outage.Status.IN_PROGRESS and outage.source == Outage.Source.METERS:
            periods = SupplyPeriod.objects.filter(affected__outage=outage)
            if periods.exists() and not periods.filter(on_at__isnull=True).exists():
                back = periods.aggregate(at=Max("on_at"))["at"]
                services.outage_restore(
                    outage_id=outage.pk,
                    at=max(back, outage.actual_start + timedelta(seconds=1)),
                    now=max(run.now, back),
                    note="All meters that reported the failure reported the supply back.",
                )
                run.counts["restored"] += 1
        elif outage.status == Outage.Status.RESTORED:
            remeasure = getattr(standards, "standards_remeasure_outage", None)
            if remeasure is not None:
                remeasure(outage=outage)
            else:
                standards.standards_evaluate_outage(outage=outage)
            run.counts["remeasured"] += 1


def _event(outage: Outage, action: str, changes: dict) -> None:
    OutageEvent.objects.create(outage=outage, action=action, changes=changes)


# ---- Telling consumers ---------------------------------------------------------------------------


def outage_detected_notify(
    *, outage: Outage, now: datetime, from_affected: int | None = None
) -> None:
    """Tell the consumers of an unplanned outage that we know their power is off, and when it is
    expected back (the schedule version in force). Once per version, and per growth of the outage
    (`from_affected`: only the accounts added from that AffectedMeter on).

    1. A push to every linked person (the urgent category: it falls back to SMS to the person's
       phone where no device takes it, and ignores quiet hours).
    2. Accounts nobody holds in the app: an SMS to the registered mobile (OutageNotice, sent after
       commit; its sweeper finishes what a lost task leaves).
    """
    from outages.services.notices import NOTICE_COLUMNS, NOTICE_KEY, notices_sms_queue

    affected = AffectedMeter.objects.filter(outage=outage, account__isnull=False)
    key = f"outage:{outage.pk}:unplanned:v{outage.version}"
    if from_affected is not None:
        affected = affected.filter(pk__gte=from_affected)
        key = f"{key}:+{from_affected}"
    account_ids = affected.values("account_id")
    users = (
        AccountLink.objects.filter(
            account_id__in=account_ids, unlinked_at=None, receives_alerts=True
        )
        .values_list("user_id", flat=True)
        .distinct()
        .order_by("user_id")
    )
    fanout_create(
        user_ids=users,
        category=categories.OUTAGE_UNPLANNED_ETA,
        dedupe_key=key,
        context=selectors.outage_notice_context(outage=outage),
        utility=outage.utility,
    )
    nobody_in_app = (
        affected.exclude(
            account_id__in=AccountLink.objects.filter(
                unlinked_at=None, receives_alerts=True
            ).values("account_id")
        )
        .values("account_id")
        .order_by()
        .distinct()
    )
    # One INSERT … SELECT, as a planned outage's notices are opened (outages.services.notices).
    moment = connection.ops.adapt_datetimefield_value(now)
    insert_select(
        OutageNotice,
        [*NOTICE_COLUMNS, "next_attempt_at"],
        "%s, %s, src.account_id, %s, '', '', 0, '', %s, %s",
        nobody_in_app,
        [outage.pk, outage.version, OutageNotice.Status.SMS, moment, moment],
        conflict=NOTICE_KEY,
    )
    notices_sms_queue(outage=outage, version=outage.version)
