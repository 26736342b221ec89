"""The daily insight pass (insight.daily, docs/insight-alerts.md): a household's use against its
own baseline, and its demand against its sanctioned load, told once, from its own tenancy only."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from accounts.models import AccountLink
from billing import moves
from billing.ledger import ledger_post
from insight import daily
from insight.models import InsightPolicy, UsageBaseline
from notifications import categories
from notifications.models import Notification
from tests.accounts.factories import AccountLinkFactory, UserFactory, UtilityFactory
from tests.billing.factories import flat_tariff
from tests.insight.factories_daily import (
    baseline_of,
    feed,
    feed_days,
    household,
    local_day_slots,
    policy,
    run_day,
    run_days,
)
from tests.meters.factories import EGYPT, INDIA

DAY_1 = date(2026, 9, 1)
NORMAL = 100  # Wh a quarter-hour: 9.6 kWh a day
RISE = 160  # 60 % above


@pytest.fixture
def kuwait(db):
    return UtilityFactory()


@pytest.fixture
def india(db):
    return UtilityFactory(**INDIA)


def alerts(user, category=categories.HIGH_USAGE):
    return list(Notification.objects.filter(user=user, category=category).order_by("created_at"))


def day(n: int) -> date:
    return DAY_1 + timedelta(days=n - 1)


# --- High usage ----------------------------------------------------------------------------


def test_a_three_day_rise_over_a_30_day_baseline_alerts_once(
    kuwait, django_capture_on_commit_callbacks
):
    meter, user = household(kuwait)
    other_user = UserFactory()  # linked, but the holder did not share alerts with them
    AccountLinkFactory(user=other_user, account=meter.account, role="shared", receives_alerts=False)
    feed_days(meter, day(1), [NORMAL] * 30 + [RISE] * 4)

    run_days(kuwait, day(1), 32, django_capture_on_commit_callbacks)
    assert alerts(user) == []  # two high days tell nothing
    run_day(kuwait, day(33), django_capture_on_commit_callbacks)
    (alert,) = alerts(user)
    assert alert.dedupe_key == f"insight:{meter.account_id}:high-usage:{day(31).isoformat()}"
    assert alert.title == "Your use is higher than usual"
    assert alert.body == (
        f"For the last 3 days, account {meter.account.consumer_id} used about 15.4 kWh a day, "
        "60% above your usual 9.6 kWh. Check for an appliance left on."
    )
    assert alert.data["account_id"] == str(meter.account_id)
    assert alerts(other_user) == []
    baseline = baseline_of(meter.account)
    assert (baseline.streak, baseline.alerted_streak_from) == (3, day(31))
    # 30 + 3 days kept: the baseline window and the streak.
    assert baseline.daily_wh == [9600] * 30 + [15360] * 3

    run_day(kuwait, day(34), django_capture_on_commit_callbacks)  # a 4th high day: same streak
    assert len(alerts(user)) == 1
    assert baseline_of(meter.account).streak == 4


def test_a_new_streak_after_a_normal_day_alerts_again(kuwait, django_capture_on_commit_callbacks):
    meter, user = household(kuwait)
    # The new streak's baseline holds the first streak's days: 26 × 9.6 + 4 × 15.36 kWh over 30
    # days is 10.37 kWh, and 19.2 kWh a day is 85 % above it.
    feed_days(meter, day(1), [NORMAL] * 30 + [RISE] * 4 + [NORMAL] + [200] * 3)
    run_days(kuwait, day(1), 37, django_capture_on_commit_callbacks)
    assert len(alerts(user)) == 1
    assert baseline_of(meter.account).streak == 2
    run_day(kuwait, day(38), django_capture_on_commit_callbacks)
    _, second = alerts(user)
    assert second.dedupe_key.endswith(day(36).isoformat())
    assert "85% above your usual 10.4 kWh" in second.body


@pytest.mark.parametrize(
    "rise", [[RISE, NORMAL, NORMAL], [RISE, RISE, NORMAL], [NORMAL, RISE, RISE]]
)
def test_a_single_spike_or_a_two_day_rise_does_not_alert(
    kuwait, django_capture_on_commit_callbacks, rise
):
    meter, user = household(kuwait)
    feed_days(meter, day(1), [NORMAL] * 30 + rise)
    run_days(kuwait, day(1), 33, django_capture_on_commit_callbacks)
    assert alerts(user) == []
    assert baseline_of(meter.account).last_day == day(33)


def test_a_rise_below_the_policy_percent_does_not_alert(kuwait, django_capture_on_commit_callbacks):
    policy(kuwait, high_usage_percent=70)
    meter, user = household(kuwait)
    feed_days(meter, day(1), [NORMAL] * 30 + [RISE] * 3)
    run_days(kuwait, day(1), 33, django_capture_on_commit_callbacks)
    assert alerts(user) == []


def test_with_the_rule_off_nothing_is_said_but_the_days_are_kept(
    kuwait, django_capture_on_commit_callbacks
):
    policy(kuwait, high_usage_percent=None)
    meter, user = household(kuwait)
    feed_days(meter, day(1), [NORMAL] * 30 + [RISE * 2] * 3)
    run_days(kuwait, day(1), 33, django_capture_on_commit_callbacks)
    assert alerts(user) == []
    assert baseline_of(meter.account).daily_wh[-1] == RISE * 2 * 96


def test_missing_days_do_not_count_as_low_use(kuwait, django_capture_on_commit_callbacks):
    meter, user = household(kuwait)
    # Ten days of the baseline unread, one only 80 % read: if they counted as 0 (or as 80 % of a
    # day) the baseline would fall and an ordinary day would look high.
    feed_days(meter, day(1), [NORMAL] * 10 + [None] * 10 + [NORMAL] * 10 + [NORMAL] * 3)
    feed(meter, day(15), NORMAL, present=77)  # 77 of 96: under 90 %
    run_days(kuwait, day(1), 33, django_capture_on_commit_callbacks)
    assert alerts(user) == []
    baseline = baseline_of(meter.account)
    assert baseline.daily_wh[10:20] == [None] * 10
    assert baseline.streak == 0


def test_a_day_without_readings_neither_breaks_nor_extends_a_streak(
    kuwait, django_capture_on_commit_callbacks
):
    meter, user = household(kuwait)
    feed_days(meter, day(1), [NORMAL] * 30 + [RISE, RISE, None, RISE])
    run_days(kuwait, day(1), 33, django_capture_on_commit_callbacks)
    assert alerts(user) == []
    assert baseline_of(meter.account).streak == 2
    run_day(kuwait, day(34), django_capture_on_commit_callbacks)
    (alert,) = alerts(user)
    assert alert.dedupe_key.endswith(day(31).isoformat())
    assert baseline_of(meter.account).daily_wh[-4:] == [15360, 15360, None, 15360]


def test_fewer_than_seven_known_days_judge_nothing(kuwait, django_capture_on_commit_callbacks):
    meter, user = household(kuwait)
    feed_days(meter, day(1), [NORMAL] * 6 + [RISE * 3] * 3)
    run_days(kuwait, day(1), 9, django_capture_on_commit_callbacks)
    assert alerts(user) == []
    assert baseline_of(meter.account).daily_wh == [9600] * 6 + [46080] * 3


# --- Sanctioned load -----------------------------------------------------------------------


def test_demand_above_the_sanctioned_load_alerts_once_a_day(
    india, django_capture_on_commit_callbacks
):
    policy(india, sanctioned_load_alerts=True)
    meter, user = household(india, sanctioned_load_kw="2.00")
    _, slots = local_day_slots(india, day(1))
    profile = [300] * slots
    profile[78] = 601  # 19:30 IST: 2.404 kW
    profile[80] = 560  # above as well, lower: the day's highest is told
    feed(meter, day(1), profile)
    feed(meter, day(2), [300] * 90 + [640] + [300] * 5)
    run_days(india, day(1), 2, django_capture_on_commit_callbacks)

    first, second = alerts(user, categories.SANCTIONED_LOAD_EXCEEDED)
    assert first.dedupe_key == f"insight:{meter.account_id}:sanctioned-load:2026-09-01"
    assert first.title == "Demand above your sanctioned load"
    assert first.body.startswith(
        f"On Tuesday, 1 September, 7:30 pm IST, account {meter.account.consumer_id} drew"
    )
    assert "drew 2.40 kW, above its sanctioned load of 2.00 kW." in first.body
    assert "Wednesday, 2 September, 10:30 pm IST" in second.body and "2.56 kW" in second.body
    assert baseline_of(meter.account).peak_demand_w == 2560

    run_day(india, day(2), django_capture_on_commit_callbacks)  # again: nothing more
    assert len(alerts(user, categories.SANCTIONED_LOAD_EXCEEDED)) == 2


@pytest.mark.parametrize(
    ("alerts_on", "sanctioned", "peak_wh"),
    [
        (True, "2.00", 500),  # exactly at the sanctioned load: 2.00 kW
        (True, "2.00", 450),
        (False, "2.00", 900),  # the policy off
        (True, None, 900),  # no sanctioned load on record
    ],
)
def test_at_or_below_the_sanctioned_load_or_with_the_policy_off_nothing_is_said(
    india, django_capture_on_commit_callbacks, alerts_on, sanctioned, peak_wh
):
    policy(india, sanctioned_load_alerts=alerts_on)
    meter, user = household(india, sanctioned_load_kw=sanctioned)
    feed(meter, day(1), [300] * 50 + [peak_wh] + [300] * 45)
    run_day(india, day(1), django_capture_on_commit_callbacks)
    assert alerts(user, categories.SANCTIONED_LOAD_EXCEEDED) == []
    assert baseline_of(meter.account).peak_demand_w == peak_wh * 4


# --- Exactly once, and only one's own days ------------------------------------------------


def test_a_rerun_of_the_same_day_changes_nothing_and_sends_nothing(
    india, django_capture_on_commit_callbacks
):
    policy(india, sanctioned_load_alerts=True)
    meter, user = household(india, sanctioned_load_kw="0.50")  # 160 Wh is 0.64 kW
    feed_days(meter, day(1), [NORMAL] * 30 + [RISE] * 3)
    run_days(india, day(1), 33, django_capture_on_commit_callbacks)
    assert len(alerts(user)) == 1
    assert len(alerts(user, categories.SANCTIONED_LOAD_EXCEEDED)) == 3
    before = UsageBaseline.objects.values().get(account=meter.account)

    # The next hourly run finds the day started; a chain run again (a redelivered chunk, staff
    # clearing the claim) finds every account done.
    assert run_day(india, day(33), django_capture_on_commit_callbacks) == 0
    InsightPolicy.objects.filter(utility=india).update(day_started=None)
    assert run_day(india, day(33), django_capture_on_commit_callbacks) == 1
    assert UsageBaseline.objects.values().get(account=meter.account) == before
    assert Notification.objects.filter(user=user).count() == 4


def test_a_chunk_run_twice_at_once_claims_each_baseline_once(
    kuwait, django_capture_on_commit_callbacks
):
    """Two workers holding the same chunk (a redelivered task): both read the baseline before
    either writes; only the first write lands, and only its alerts are sent."""
    meter, user = household(kuwait)
    feed_days(meter, day(1), [NORMAL] * 30 + [RISE] * 3)
    run_days(kuwait, day(1), 32, django_capture_on_commit_callbacks)
    stale = UsageBaseline.objects.get(account=meter.account)
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            daily.insight_accounts_update(
                utility_id=kuwait.pk, day=day(33), account_ids=[meter.account_id]
            )
            == 1
        )
    # The second worker's write is conditional on the day it read.
    rows = [
        UsageBaseline(
            account_id=meter.account_id,
            last_day=day(33),
            daily_wh=[1],
            streak=9,
            alerted_streak_from=None,
            peak_demand_w=1,
            updated_at=stale.updated_at,
        )
    ]
    assert daily._baselines_write(rows, {meter.account_id: stale.last_day}) == set()
    assert baseline_of(meter.account).streak == 3
    assert len(alerts(user)) == 1


def test_chunks_walk_every_household_holding_a_meter_that_day(
    kuwait, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(daily, "CHUNK_SIZE", 2)
    homes = [household(kuwait)[0] for _ in range(5)]
    for meter in homes:
        feed(meter, day(1), NORMAL)
    vacant = household(kuwait)[0]
    vacant.assignments.update(start=datetime(2026, 9, 2, tzinfo=kuwait.zone))  # moved in later
    assert run_day(kuwait, day(1), django_capture_on_commit_callbacks) == 1
    assert sorted(UsageBaseline.objects.values_list("account_id", flat=True)) == sorted(
        m.account_id for m in homes
    )
    assert {tuple(b.daily_wh) for b in UsageBaseline.objects.all()} == {(9600,)}
    assert (
        daily.accounts_chunk(utility=kuwait, day=day(1), after=0, size=2)
        == sorted(m.account_id for m in homes)[:2]
    )


def test_an_inactive_utility_is_not_read(kuwait, django_capture_on_commit_callbacks):
    meter, _ = household(kuwait)
    feed(meter, day(1), NORMAL)
    kuwait.is_active = False
    kuwait.save()
    assert run_day(kuwait, day(1), django_capture_on_commit_callbacks) == 0
    assert not UsageBaseline.objects.exists()


def test_a_moved_out_tenants_days_are_not_the_new_tenants_baseline(
    kuwait, django_capture_on_commit_callbacks
):
    """The old tenant used little for a month; the new one uses three times as much from the day
    after moving in. Against the old tenant's days that is a 200 % rise; the new account has no
    baseline of its own yet, so nothing is said, and the old account is no longer read."""
    flat_tariff(kuwait)
    meter, old_user = household(kuwait)
    feed_days(meter, day(1), [NORMAL] * 30 + [NORMAL * 3] * 5)
    run_days(kuwait, day(1), 30, django_capture_on_commit_callbacks)
    old_account = meter.account
    ledger_post(
        account=old_account, kind="topup", amount=Decimal("5.000"), key="t", description="Top-up"
    )
    moved_at = datetime.combine(day(31), datetime.min.time(), kuwait.zone) + timedelta(hours=12)
    with time_machine.travel(moved_at + timedelta(hours=1), tick=False):
        moves.move_out(account=old_account, at=moved_at)
        new_account = moves.move_in(
            meter=meter, consumer_id="N1", registered_mobile="+96566001234", name="N", at=moved_at
        ).account
    new_user = AccountLinkFactory(account=new_account).user
    run_days(kuwait, day(31), 5, django_capture_on_commit_callbacks)

    old, new = baseline_of(old_account), baseline_of(new_account)
    assert (old.last_day, old.daily_wh[-1]) == (day(31), None)  # half a day: unknown
    assert (new.last_day, new.daily_wh) == (day(35), [None] + [28800] * 4)
    assert alerts(new_user) == [] and alerts(old_user) == []


def test_a_new_registered_mobiles_holder_is_not_compared_with_the_days_before_them(
    kuwait, django_capture_on_commit_callbacks
):
    """The account's number changed hands on day 31: its new holder sees it from then on
    (visible_from), so the month before is neither their baseline nor quoted to them. Three high
    days right after are not judged (under 7 days of their own); they are, once the holder has a
    baseline of their own."""
    meter, old_user = household(kuwait)
    feed_days(meter, day(1), [NORMAL] * 30 + [RISE] * 3 + [NORMAL] * 7 + [NORMAL * 2] * 3)
    run_days(kuwait, day(1), 30, django_capture_on_commit_callbacks)
    since = datetime.combine(day(31), datetime.min.time(), kuwait.zone)
    AccountLink.objects.filter(account=meter.account).update(
        unlinked_at=since, end_reason="mobile_changed"
    )
    new_user = AccountLinkFactory(account=meter.account, visible_from=since).user

    run_days(kuwait, day(31), 3, django_capture_on_commit_callbacks)
    assert alerts(new_user) == [] and alerts(old_user) == []
    assert baseline_of(meter.account).daily_wh[:30] == [None] * 30

    run_days(kuwait, day(34), 10, django_capture_on_commit_callbacks)
    # Days 41-43 at twice the usual, against their own days 31-40 (three high, seven usual).
    assert len(alerts(new_user)) == 1


# --- Local days ----------------------------------------------------------------------------


def test_a_dst_day_in_cairo_is_read_as_its_92_or_100_quarter_hours(
    db, django_capture_on_commit_callbacks
):
    egypt = UtilityFactory(**EGYPT)
    meter, _ = household(egypt)
    # Summer time starts on Friday 24 April 2026 (a 23-hour day) and ends on Thursday 29 October
    # (a 25-hour day).
    assert local_day_slots(egypt, date(2026, 4, 24))[1] == 92
    assert local_day_slots(egypt, date(2026, 10, 29))[1] == 100
    expected = {date(2026, 4, 23): [9600, 101 * 92, 9792], date(2026, 10, 28): [9600, 10100, 9792]}
    for first, wh in expected.items():
        for n in range(3):
            feed(meter, first + timedelta(days=n), NORMAL + n)
        run_days(egypt, first, 3, django_capture_on_commit_callbacks)
        assert baseline_of(meter.account).daily_wh[-3:] == wh


# --- The admin -----------------------------------------------------------------------------


def test_staff_edit_a_utilitys_policy_and_only_read_its_baselines(
    kuwait, india, client, django_capture_on_commit_callbacks
):
    from django.contrib.auth.models import Permission

    from core.models import AuditEntry
    from insight.models import InsightPolicy
    from tests.outages.factories import staff_member

    meter, _ = household(kuwait)
    feed(meter, day(1), NORMAL)
    run_day(kuwait, day(1), django_capture_on_commit_callbacks)
    other = policy(india, sanctioned_load_alerts=True)
    mine = policy(kuwait)
    staff = staff_member(kuwait, "support")
    staff.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="insight",
            codename__in=["change_insightpolicy", "view_insightpolicy", "view_usagebaseline"],
        )
    )
    client.force_login(staff)

    page = client.get(f"/admin/insight/insightpolicy/{mine.pk}/change/")
    assert page.status_code == 200
    assert client.get(f"/admin/insight/insightpolicy/{other.pk}/change/").status_code == 302
    form = {
        "high_usage_percent": "40",
        "high_usage_days": "3",
        "baseline_days": "30",
        "sanctioned_load_alerts": "on",
        "bill_forecast_min_coverage_percent": "75",
        "bill_forecast_coverage_days": "7",
        "tod_shift_percent": "10",
    }
    saved = client.post(f"/admin/insight/insightpolicy/{mine.pk}/change/", form)
    assert saved.status_code == 302
    mine = InsightPolicy.objects.get(pk=mine.pk)
    assert (mine.high_usage_percent, mine.sanctioned_load_alerts) == (40, True)
    assert AuditEntry.objects.filter(model="insight.insightpolicy", utility=kuwait).exists()

    baseline = client.get(f"/admin/insight/usagebaseline/{meter.account_id}/change/")
    assert baseline.status_code == 200 and b"9600" in baseline.content
    refused = client.post(f"/admin/insight/usagebaseline/{meter.account_id}/change/", {})
    assert refused.status_code == 403
    assert baseline_of(meter.account).daily_wh == [9600]
