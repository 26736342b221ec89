"""Staff on the outages the meters reported: confirm one, set the restoration estimate consumers are
told, merge two reports of one event, split one in two; refused steps change nothing; only those
who may publish outages may do any of it, in the admin as in the services."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from core.errors import DomainError
from meters.models import MeterEvent, SupplyPeriod
from notifications.models import Notification
from outages import detected
from outages.models import AffectedMeter, Outage, OutageEvent
from tests.accounts.factories import UtilityFactory
from tests.outages.factories import (
    OutageFactory,
    consumer_on,
    saudi,
    staff_member,
    transformer_of,
)

pytestmark = pytest.mark.django_db
MINUTE = timedelta(minutes=1)


def detected_outage(transformers, *, off=None, meters=2, silent=0, back_on=0, users=1) -> Outage:
    """An outage the meters reported, as outages.detection leaves one: unplanned, in progress,
    its scope the transformers, each of `meters` meters per transformer with its own failure
    (a SupplyPeriod; the first `back_on` of each already restored), plus `silent` meters per
    transformer that reported nothing."""
    off = off or timezone.now() - 30 * MINUTE
    utility = transformers[0].feeder.area.utility
    outage = Outage.objects.create(
        utility=utility,
        kind=Outage.Kind.UNPLANNED,
        status=Outage.Status.IN_PROGRESS,
        source=Outage.Source.METERS,
        reason="Power failure reported by the meters",
        planned_start=off,
        planned_end=off + timedelta(hours=4),
        actual_start=off,
        detected_at=off + 2 * MINUTE,
        version=1,
        published_at=off + 2 * MINUTE,
    )
    outage.transformers.set(transformers)
    for transformer in transformers:
        for n in range(meters + silent):
            meter, _ = consumer_on(transformer, users=users)
            period = None
            if n < meters:
                event = MeterEvent.objects.create(
                    utility=utility, meter=meter, kind="power_off", occurred_at=off + n * MINUTE
                )
                period = SupplyPeriod.objects.create(
                    utility=utility,
                    meter=meter,
                    off_at=event.occurred_at,
                    on_at=off + 20 * MINUTE if n < back_on else None,
                    off_event=event,
                    state=SupplyPeriod.State.OUTAGE,
                )
            AffectedMeter.objects.create(
                outage=outage, meter=meter, account=meter.account, period=period
            )
    return outage


@pytest.fixture
def utility():
    return saudi()


@pytest.fixture
def planner(utility):
    return staff_member(utility, role="planner")


def _periods(outage: Outage) -> dict[int, int | None]:
    return dict(AffectedMeter.objects.filter(outage=outage).values_list("meter_id", "period_id"))


# --- Services ---------------------------------------------------------------------------------


def test_confirming_records_who_and_when_once(utility, planner):
    outage = detected_outage([transformer_of(utility)])

    detected.outage_confirm(outage_id=outage.pk, actor=planner)
    with pytest.raises(DomainError) as again:
        detected.outage_confirm(outage_id=outage.pk, actor=planner)

    outage.refresh_from_db()
    assert outage.confirmed_by == planner and outage.confirmed_at is not None
    assert again.value.code == "already_confirmed"
    assert list(OutageEvent.objects.filter(outage=outage).values_list("action", "actor")) == [
        ("confirmed", planner.pk)
    ]


def test_a_staff_entered_outage_has_nothing_to_confirm(utility, planner):
    outage = OutageFactory(utility=utility, kind="unplanned", status="in_progress")

    with pytest.raises(DomainError) as refused:
        detected.outage_confirm(outage_id=outage.pk, actor=planner)

    assert refused.value.code == "not_detected"
    outage.refresh_from_db()
    assert outage.confirmed_at is None


def test_a_new_estimate_is_a_new_version_and_its_consumers_are_told(utility, planner):
    outage = detected_outage([transformer_of(utility)], users=1)
    people = list(
        AffectedMeter.objects.filter(outage=outage).values_list(
            "account__links__user_id", flat=True
        )
    )
    estimate = (timezone.now() + timedelta(hours=2)).replace(second=0, microsecond=0)

    detected.outage_estimate_set(outage_id=outage.pk, estimated_restoration=estimate, actor=planner)

    outage.refresh_from_db()
    assert (outage.planned_end, outage.version) == (estimate, 2)
    told = Notification.objects.filter(dedupe_key=f"outage:{outage.pk}:unplanned:v2")
    assert sorted(told.values_list("user_id", flat=True)) == sorted(people)
    event = OutageEvent.objects.get(outage=outage, action="estimate_set")
    assert event.actor == planner and event.changes["version"] == 2


@pytest.mark.parametrize(
    ("offset", "code"),
    [(-timedelta(minutes=5), "estimate_in_past"), (-timedelta(hours=2), "estimate_before_start")],
)
def test_an_estimate_in_the_past_or_before_the_failure_is_refused(utility, planner, offset, code):
    outage = detected_outage([transformer_of(utility)])

    with pytest.raises(DomainError) as refused:
        detected.outage_estimate_set(
            outage_id=outage.pk, estimated_restoration=timezone.now() + offset, actor=planner
        )

    assert refused.value.code == code
    outage.refresh_from_db()
    assert outage.version == 1
    assert not Notification.objects.filter(dedupe_key__startswith=f"outage:{outage.pk}:").exists()


def test_merging_keeps_the_first_with_every_meter_and_its_evidence(utility, planner):
    first_t, second_t = transformer_of(utility), transformer_of(utility)
    now = timezone.now()
    later = detected_outage([second_t], off=now - 20 * MINUTE, silent=1)
    earlier = detected_outage([first_t], off=now - 50 * MINUTE)
    evidence = {**_periods(later), **_periods(earlier)}

    kept = detected.outages_merge(outage_ids=[later.pk, earlier.pk], actor=planner)

    later.refresh_from_db()
    assert kept.pk == earlier.pk
    assert kept.actual_start == now - 50 * MINUTE
    assert set(kept.transformers.all()) == {first_t, second_t}
    assert _periods(kept) == evidence  # 5 meters, each with its own period (or none)
    assert (later.status, later.merged_into_id) == ("cancelled", kept.pk)
    assert not AffectedMeter.objects.filter(outage=later).exists()
    assert OutageEvent.objects.get(outage=later, action="merged_into").actor == planner
    assert OutageEvent.objects.get(outage=kept, action="merged").changes["merged"] == [later.pk]


def test_a_meter_in_both_keeps_the_evidence_it_has(utility, planner):
    transformer = transformer_of(utility)
    first = detected_outage([transformer], meters=0, silent=1)
    meter_id = AffectedMeter.objects.get(outage=first).meter_id
    second = detected_outage([transformer_of(utility)], off=timezone.now() - 10 * MINUTE)
    period = SupplyPeriod.objects.create(
        utility=utility, meter_id=meter_id, off_at=timezone.now() - 9 * MINUTE
    )
    AffectedMeter.objects.create(outage=second, meter_id=meter_id, period=period)

    kept = detected.outages_merge(outage_ids=[first.pk, second.pk], actor=planner)

    assert kept.pk == first.pk
    assert _periods(kept)[meter_id] == period.pk
    assert AffectedMeter.objects.filter(meter_id=meter_id).count() == 1


@pytest.mark.parametrize("case", ["one", "other_utility", "restored", "staff_only"])
def test_merging_is_refused_unless_two_running_outages_of_one_utility(utility, planner, case):
    a = detected_outage([transformer_of(utility)])
    if case == "one":
        ids, code = [a.pk], "merge_needs_two"
    elif case == "other_utility":
        b = detected_outage([transformer_of(UtilityFactory(code="other"))])
        ids, code = [a.pk, b.pk], "merge_other_utility"
    elif case == "restored":
        b = detected_outage([transformer_of(utility)])
        Outage.objects.filter(pk=b.pk).update(status="restored")
        ids, code = [a.pk, b.pk], "not_in_progress"
    else:
        Outage.objects.filter(pk=a.pk).update(source="staff")
        b = OutageFactory(utility=utility, kind="unplanned", status="in_progress")
        ids, code = [a.pk, b.pk], "merge_none_detected"

    with pytest.raises(DomainError) as refused:
        detected.outages_merge(outage_ids=ids, actor=planner)

    assert refused.value.code == code
    assert not Outage.objects.filter(merged_into__isnull=False).exists()
    assert not OutageEvent.objects.exists()


def test_splitting_moves_the_chosen_transformers_meters_with_their_evidence(utility, planner):
    stays, leaves = transformer_of(utility), transformer_of(utility)
    outage = detected_outage([stays, leaves], back_on=1)
    leaving = {
        m: p
        for m, p in _periods(outage).items()
        if AffectedMeter.objects.get(outage=outage, meter_id=m).meter.transformer_id == leaves.pk
    }

    new = detected.outage_split(outage_id=outage.pk, transformer_ids=[leaves.pk], actor=planner)

    assert _periods(new) == leaving and len(leaving) == 2
    assert len(_periods(outage)) == 2
    assert list(new.transformers.all()) == [leaves]
    assert list(outage.transformers.all()) == [stays]
    assert (new.source, new.status, new.kind) == ("meters", "in_progress", "unplanned")
    assert (new.actual_start, new.planned_end) == (outage.actual_start, outage.planned_end)
    assert OutageEvent.objects.get(outage=new, action="split_from").changes["from"] == outage.pk


def test_a_feeder_in_the_scope_gives_way_to_its_transformers_left(utility, planner):
    stays = transformer_of(utility)
    from tests.outages.factories import TransformerFactory

    leaves = TransformerFactory(feeder=stays.feeder)
    outage = detected_outage([stays, leaves])
    outage.transformers.clear()
    outage.feeders.set([stays.feeder])

    detected.outage_split(outage_id=outage.pk, transformer_ids=[leaves.pk], actor=planner)

    assert list(outage.feeders.all()) == []
    assert list(outage.transformers.all()) == [stays]


@pytest.mark.parametrize(
    ("which", "code"), [("all", "split_everything"), ("none", "split_nothing")]
)
def test_splitting_off_everything_or_nothing_is_refused(utility, planner, which, code):
    a, b = transformer_of(utility), transformer_of(utility)
    outage = detected_outage([a, b])
    before = _periods(outage)

    with pytest.raises(DomainError) as refused:
        detected.outage_split(
            outage_id=outage.pk,
            transformer_ids=[a.pk, b.pk] if which == "all" else [],
            actor=planner,
        )

    assert refused.value.code == code
    assert _periods(outage) == before
    assert Outage.objects.count() == 1


# --- The admin --------------------------------------------------------------------------------


def _url(step: str, outage: Outage) -> str:
    return reverse(f"admin:outages_outage_{step}", args=[outage.pk])


@pytest.mark.parametrize("role", ["planner", "approver", "support", "cashier"])
def test_only_a_planner_confirms_in_the_admin(client, utility, role):
    outage = detected_outage([transformer_of(utility)])
    client.force_login(staff_member(utility, role=role))

    response = client.post(_url("confirm", outage))

    outage.refresh_from_db()
    if role == "planner":
        assert response.status_code == 302
        assert outage.confirmed_at is not None
        shown = [str(m) for m in get_messages(response.wsgi_request)]
        assert shown == ["Confirmed: the outage stands as the meters reported it."]
    else:
        assert response.status_code == 403
        assert outage.confirmed_at is None


def test_a_planner_sets_the_estimate_in_the_utilitys_local_time(client, utility):
    outage = detected_outage([transformer_of(utility)])
    planner = staff_member(utility, role="planner")
    client.force_login(planner)
    estimate = (timezone.now() + timedelta(hours=3)).replace(second=0, microsecond=0)
    local = timezone.localtime(estimate, utility.zone)

    page = client.get(_url("estimate", outage)).content.decode()
    response = client.post(
        _url("estimate", outage),
        {
            "estimated_restoration_0": local.strftime("%Y-%m-%d"),
            "estimated_restoration_1": local.strftime("%H:%M"),
        },
    )

    assert "Time zone: Asia/Riyadh" in page
    assert response.status_code == 302
    outage.refresh_from_db()
    assert (outage.planned_end, outage.version) == (estimate, 2)
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert shown == [f"Estimate set to {local:%Y-%m-%d %H:%M} +03; consumers are told."]


def test_an_estimate_in_the_past_is_refused_on_the_page(client, utility):
    outage = detected_outage([transformer_of(utility)])
    client.force_login(staff_member(utility, role="planner"))
    local = timezone.localtime(timezone.now() - timedelta(minutes=10), utility.zone)

    response = client.post(
        _url("estimate", outage),
        {
            "estimated_restoration_0": local.strftime("%Y-%m-%d"),
            "estimated_restoration_1": local.strftime("%H:%M"),
        },
    )

    assert response.status_code == 200
    assert "The estimate must be in the future." in response.content.decode()
    outage.refresh_from_db()
    assert outage.version == 1


@pytest.mark.parametrize("role", ["planner", "support"])
def test_the_split_page_offers_the_outages_transformers_with_their_meters(client, utility, role):
    stays, leaves = transformer_of(utility), transformer_of(utility)
    leaves.locality_en, leaves.streets_en = "Al Malaz", "Jarir Street"
    leaves.save()
    outage = detected_outage([stays, leaves], meters=3)
    client.force_login(staff_member(utility, role=role))

    page = client.get(_url("split", outage))
    response = client.post(_url("split", outage), {"transformers": [leaves.pk]})

    if role == "support":
        assert (page.status_code, response.status_code) == (403, 403)
        assert Outage.objects.count() == 1
        return
    assert f"{leaves.code} · Al Malaz, Jarir Street · 3 meters" in page.content.decode()
    new = Outage.objects.exclude(pk=outage.pk).get()
    assert response.status_code == 302
    assert new.affected.count() == 3 and outage.affected.count() == 3
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert shown == [f"Split: 3 meters now in outage #{new.pk}."]


@pytest.mark.parametrize("role", ["planner", "support"])
def test_merge_selected_is_a_planners_list_action(client, utility, role):
    a = detected_outage([transformer_of(utility)], off=timezone.now() - 40 * MINUTE)
    b = detected_outage([transformer_of(utility)])
    client.force_login(staff_member(utility, role=role))

    response = client.post(
        reverse("admin:outages_outage_changelist"),
        {"action": "merge_selected", "_selected_action": [a.pk, b.pk]},
    )

    b.refresh_from_db()
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    if role == "planner":
        assert (b.status, b.merged_into_id) == ("cancelled", a.pk)
        assert shown[0].startswith(f"Merged into outage #{a.pk}, which goes on from ")
        assert shown[0].endswith(f"+03; #{b.pk} cancelled.")
    else:
        assert (b.status, b.merged_into_id) == ("in_progress", None)
        assert not any(m.startswith("Merged") for m in shown)


def test_a_refused_merge_says_why(client, utility):
    a = detected_outage([transformer_of(utility)])
    client.force_login(staff_member(utility, role="planner"))

    response = client.post(
        reverse("admin:outages_outage_changelist"),
        {"action": "merge_selected", "_selected_action": [a.pk]},
    )

    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert shown == ["Not merged: Choose two outages or more to merge."]


def test_the_list_finds_detected_outages_waiting_for_confirmation(client, utility):
    waiting = detected_outage([transformer_of(utility)])
    confirmed = detected_outage([transformer_of(utility)])
    Outage.objects.filter(pk=confirmed.pk).update(confirmed_at=timezone.now())
    staff = OutageFactory(utility=utility, kind="unplanned", status="in_progress")
    client.force_login(staff_member(utility, role="approver"))

    listed = client.get(reverse("admin:outages_outage_changelist"), {"detected": "to_confirm"})
    every = client.get(reverse("admin:outages_outage_changelist")).content.decode()

    assert [o.pk for o in listed.context["cl"].result_list] == [waiting.pk]
    assert "Meters: to confirm" in every and every.count("Staff</td>") >= 1
    assert staff.pk in {
        o.pk
        for o in client.get(reverse("admin:outages_outage_changelist"), {"detected": "staff"})
        .context["cl"]
        .result_list
    }


def test_the_change_page_counts_what_the_meters_reported(client, utility):
    outage = detected_outage([transformer_of(utility)], meters=3, back_on=1, silent=2)
    client.force_login(staff_member(utility, role="planner"))

    page = client.get(reverse("admin:outages_outage_change", args=[outage.pk])).content.decode()

    assert "5 meters: 3 reported their supply off, 1 back on, 2 still off; 2 sent no report" in page
    assert 'id="step-confirm"' in page and 'id="step-estimate"' in page
    assert 'id="step-split"' in page and 'id="step-restore"' in page


def test_the_meter_reports_are_one_query(utility, django_assert_num_queries):
    outage = detected_outage([transformer_of(utility)], meters=4, silent=3)

    with django_assert_num_queries(1):
        counts = detected.outage_meter_reports(outage=outage)

    assert counts == {
        "meters": 7,
        "reported_off": 4,
        "back_on": 0,
        "still_off": 4,
        "no_report": 3,
    }
