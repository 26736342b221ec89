"""What staff do with the outages the meters reported (outages.detection): confirm one, set the
restoration estimate consumers are told, merge two reports of one event, split one into two.

Every step locks the outages it changes (two staff on one outage must not both act), checks the
state it starts from, and writes a history row (OutageEvent) naming who did it. A refused step
changes nothing. Restoring a detected outage is outages.services.outage_restore, as for any.
Merging and splitting move each meter's own evidence (AffectedMeter.period) with it and leave the
compensation engine alone: it measures each consumer from that evidence when the outage ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from core.errors import Conflict, DomainError, NotFound
from meters.models import Transformer
from outages import detection
from outages.models import AffectedMeter, Outage

# The outage steps share one way to lock an outage and to write its history.
from outages.services import _event, _iso, _locked

SCOPES = ("areas", "feeders", "transformers", "meters")


def _must_be_running(outage: Outage) -> None:
    if outage.kind != Outage.Kind.UNPLANNED or outage.status != Outage.Status.IN_PROGRESS:
        raise Conflict(
            "Only an unplanned outage in progress can be changed here; this one is "
            f"{outage.get_kind_display().lower()} and {outage.get_status_display().lower()}.",
            code="not_in_progress",
        )


def outage_confirm(*, outage_id: object, actor, now: datetime | None = None) -> Outage:
    """Staff confirm that an outage the meters reported is real (confirmed_at/by)."""
    now = now or timezone.now()
    with transaction.atomic():
        outage = _locked(outage_id)
        if outage.source != Outage.Source.METERS:
            raise DomainError(
                "This outage was entered by staff, not detected from the meters: there is "
                "nothing to confirm.",
                code="not_detected",
            )
        if outage.confirmed_at is not None:
            raise Conflict("This outage is already confirmed.", code="already_confirmed")
        _must_be_running(outage)
        outage.confirmed_at, outage.confirmed_by = now, actor
        outage.save(update_fields=["confirmed_at", "confirmed_by", "updated_at"])
        _event(outage, action="confirmed", actor=actor, changes={"confirmed_at": _iso(now)})
    return outage


def outage_estimate_set(
    *, outage_id: object, estimated_restoration: datetime, actor, now: datetime | None = None
) -> Outage:
    """Set when the supply should be back, and tell the consumers.

    1. Lock the outage; it must be unplanned and in progress.
    2. The estimate comes after the supply went off and is still ahead.
    3. planned_end takes it, as a new version: the notice is keyed by the version, so consumers
       are told each new estimate once (outages.detection.outage_detected_notify).
    4. The notice is written in this transaction after the outage: a refused or rolled-back
       step sends nothing, and its pushes leave after commit.
    """
    now = now or timezone.now()
    with transaction.atomic():
        outage = _locked(outage_id)
        _must_be_running(outage)
        started = outage.actual_start or outage.planned_start
        if estimated_restoration <= started:
            raise DomainError.for_field(
                "estimated_restoration",
                "The estimate must be after the supply went off.",
                code="estimate_before_start",
            )
        if estimated_restoration <= now:
            raise DomainError.for_field(
                "estimated_restoration",
                "The estimate must be in the future.",
                code="estimate_in_past",
            )
        if estimated_restoration == outage.planned_end:
            raise DomainError.for_field(
                "estimated_restoration",
                "That is the estimate consumers already have.",
                code="estimate_unchanged",
            )
        changes = {"planned_end": [_iso(outage.planned_end), _iso(estimated_restoration)]}
        outage.planned_end = estimated_restoration
        outage.version += 1
        outage.save(update_fields=["planned_end", "version", "updated_at"])
        _event(
            outage,
            action="estimate_set",
            actor=actor,
            changes={**changes, "version": outage.version},
        )
        detection.outage_detected_notify(outage=outage, now=now)
    return outage


def _lock_many(outage_ids: Iterable[object]) -> list[Outage]:
    # In id order, so two merges of overlapping outages wait for each other, never deadlock.
    ids = sorted({int(pk) for pk in outage_ids})
    outages = list(
        Outage.objects.select_for_update(of=("self",))
        .select_related("utility")
        .filter(pk__in=ids)
        .order_by("pk")
    )
    if len(outages) != len(ids):
        raise NotFound("One of these outages does not exist.", code="outage_not_found")
    return outages


def outages_merge(*, outage_ids: Iterable[object], actor) -> Outage:
    """Two or more reports of one event become one outage.

    1. Lock them all (id order); two or more, one utility, all unplanned and in progress, at
       least one detected from the meters.
    2. The one that began first goes on: its start is the earliest, its scope the union of all
       scopes, its meters all the meters with their own off/on evidence (a meter in both keeps
       the evidence it has).
    3. The others are cancelled, each pointing at it (merged_into), with a history row.
    """
    with transaction.atomic():
        outages = _lock_many(outage_ids)
        if len(outages) < 2:
            raise DomainError("Choose two outages or more to merge.", code="merge_needs_two")
        if len({o.utility_id for o in outages}) > 1:
            raise DomainError(
                "These outages belong to different utilities.", code="merge_other_utility"
            )
        for outage in outages:
            _must_be_running(outage)
        if not any(o.source == Outage.Source.METERS for o in outages):
            raise DomainError(
                "None of these outages was detected from the meters: staff-entered outages are "
                "not merged here.",
                code="merge_none_detected",
            )
        outages.sort(key=lambda o: (o.actual_start or o.planned_start, o.pk))
        keeper, others = outages[0], outages[1:]
        other_ids = [o.pk for o in others]
        for name in SCOPES:
            through = getattr(Outage, name).through
            column = f"{getattr(Outage, name).field.m2m_reverse_field_name()}_id"
            chosen = set(
                through.objects.filter(outage_id__in=other_ids).values_list(column, flat=True)
            )
            if chosen:
                getattr(keeper, name).add(*chosen)
        _affected_move(from_ids=other_ids, to=keeper)
        start = min(o.actual_start or o.planned_start for o in outages)
        changes = {"merged": other_ids}
        if start != keeper.actual_start:
            changes["actual_start"] = [_iso(keeper.actual_start), _iso(start)]
        keeper.actual_start = keeper.planned_start = start
        keeper.detected_at = min((o.detected_at for o in outages if o.detected_at), default=None)
        keeper.save()
        _event(keeper, action="merged", actor=actor, changes=changes)
        for other in others:
            other.status = Outage.Status.CANCELLED
            other.merged_into = keeper
            other.save(update_fields=["status", "merged_into", "updated_at"])
            _event(other, action="merged_into", actor=actor, changes={"into": keeper.pk})
    return keeper


def _affected_move(*, from_ids: list[int], to: Outage) -> None:
    """The merged outages' meters join `to`: a meter `to` lacks moves with its row; a meter it
    has already gives it its evidence when it has none, and its row goes."""
    kept = dict(AffectedMeter.objects.filter(outage=to).values_list("meter_id", "period_id"))
    rows = AffectedMeter.objects.filter(outage_id__in=from_ids).order_by("pk")
    duplicates, evidence = [], {}
    for pk, meter_id, period_id in rows.values_list("pk", "meter_id", "period_id"):
        if meter_id in kept:
            duplicates.append(pk)
            if kept[meter_id] is None and period_id is not None:
                evidence[meter_id] = kept[meter_id] = period_id
        else:
            kept[meter_id] = period_id
            AffectedMeter.objects.filter(pk=pk).update(outage=to)
    for meter_id, period_id in evidence.items():
        AffectedMeter.objects.filter(outage=to, meter_id=meter_id).update(period_id=period_id)
    AffectedMeter.objects.filter(pk__in=duplicates).delete()


def outage_transformers(*, outage: Outage) -> list[tuple[Transformer, int]]:
    """The transformers the outage's meters hang on, each with its number of meters, in grid
    order (one grouped query and one read of the transformers)."""
    counts = dict(
        AffectedMeter.objects.filter(outage=outage, meter__transformer__isnull=False)
        .values("meter__transformer_id")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("meter__transformer_id", "n")
    )
    transformers = Transformer.objects.filter(pk__in=counts).select_related("feeder__area")
    return [(t, counts[t.pk]) for t in transformers]


def outage_split(*, outage_id: object, transformer_ids: Iterable[object], actor) -> Outage:
    """The meters of the chosen transformers leave into an outage of their own.

    1. Lock the outage; it must be unplanned and in progress.
    2. The chosen transformers are among the outage's meters' own, and leave some behind.
    3. The new outage is detected from the meters like the old, with the same start and
       estimate, its scope the chosen transformers; their meters move with their evidence.
    4. The old outage's scope loses them: a feeder or area holding one is replaced by its
       transformers that still have meters in it.
    Returns the new outage.
    """
    chosen = {int(pk) for pk in transformer_ids}
    with transaction.atomic():
        outage = _locked(outage_id)
        _must_be_running(outage)
        if not chosen:
            raise DomainError.for_field(
                "transformers", "Choose the transformers to split off.", code="split_nothing"
            )
        own = {t.pk: t for t, _ in outage_transformers(outage=outage)}
        if not chosen <= set(own):
            raise DomainError.for_field(
                "transformers",
                "Choose among the transformers of this outage's meters.",
                code="split_foreign_transformer",
            )
        moving = AffectedMeter.objects.filter(outage=outage, meter__transformer_id__in=chosen)
        staying = AffectedMeter.objects.filter(outage=outage).exclude(
            meter__transformer_id__in=chosen
        )
        if not staying.exists():
            raise DomainError.for_field(
                "transformers",
                "That is every meter of the outage: leave some behind.",
                code="split_everything",
            )
        new = Outage.objects.create(
            utility=outage.utility,
            kind=outage.kind,
            status=outage.status,
            source=Outage.Source.METERS,
            reason=outage.reason,
            planned_start=outage.planned_start,
            planned_end=outage.planned_end,
            actual_start=outage.actual_start,
            detected_at=outage.detected_at or timezone.now(),
            version=outage.version,
            published_at=outage.published_at,
            notice_given_at=outage.notice_given_at,
            created_by=actor,
        )
        new.transformers.set(chosen)
        moved = moving.update(outage=new)
        remaining = set(
            staying.filter(meter__transformer__isnull=False).values_list(
                "meter__transformer_id", flat=True
            )
        )
        outage.transformers.remove(*chosen)
        for name, path in (("feeders", "feeder_id"), ("areas", "feeder__area_id")):
            holding = [
                pk
                for pk in getattr(outage, name).values_list("pk", flat=True)
                if Transformer.objects.filter(pk__in=chosen, **{path: pk}).exists()
            ]
            if holding:
                getattr(outage, name).remove(*holding)
                outage.transformers.add(
                    *Transformer.objects.filter(
                        pk__in=remaining, **{f"{path}__in": holding}
                    ).values_list("pk", flat=True)
                )
        _event(
            outage,
            action="split",
            actor=actor,
            changes={"into": new.pk, "transformers": sorted(chosen), "meters": moved},
        )
        _event(
            new,
            action="split_from",
            actor=actor,
            changes={"from": outage.pk, "transformers": sorted(chosen), "meters": moved},
        )
    return new


def outage_meter_reports(*, outage: Outage) -> dict[str, int]:
    """What the outage's meters said, in one grouped query: how many reported their supply off,
    how many of those are back on and still off, and how many said nothing (their consumers
    are measured by the outage's own times)."""
    counts = AffectedMeter.objects.filter(outage=outage).aggregate(
        meters=Count("pk"),
        reported_off=Count("pk", filter=Q(period__isnull=False)),
        back_on=Count("pk", filter=Q(period__on_at__isnull=False)),
    )
    return {
        **counts,
        "still_off": counts["reported_off"] - counts["back_on"],
        "no_report": counts["meters"] - counts["reported_off"],
    }
