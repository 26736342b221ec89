"""Each utility's calendar: the package's holidays for its country and region, and the days its
staff add or strike out in the admin. Disconnection windows, working-day deadlines and the
helpline's hours all read the same calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError

from accounts.models import Utility, UtilityCalendarDay
from billing import relay
from core.models import ROLE_GROUPS, StaffMembership
from core.workdays import utility_working_days_between, utility_working_deadline
from tests.accounts.factories import UserFactory
from tests.meters.factories import india
from tests.servicerequests.factories import saudi

pytestmark = pytest.mark.django_db


def staff(utility: Utility, role: str):
    """A staff member of `utility` in `role`, with the calendar permissions the migration gives."""
    user = UserFactory(is_staff=True, phone=None)
    StaffMembership.objects.create(user=user, utility=utility, role=role)
    group, _ = Group.objects.get_or_create(name=ROLE_GROUPS[role])
    actions = ["view", "add", "change", "delete"] if role == "approver" else ["view"]
    group.permissions.add(
        *Permission.objects.filter(
            content_type__app_label="accounts",
            codename__in=[f"{a}_utilitycalendarday" for a in actions],
        )
    )
    user.groups.add(group)
    return user


def fresh(utility: Utility) -> Utility:
    """The calendar is read once per instance (a task's or request's); read it anew."""
    return Utility.objects.get(pk=utility.pk)


def test_madhya_pradesh_keeps_its_own_holidays_beside_indias():
    """Govardhan Puja (Tue 10 Nov 2026) is a holiday in Madhya Pradesh, not all over India."""
    utility = india()
    assert date(2026, 11, 10) not in utility.holidays_in(2026)
    utility.holiday_subdivision = "MP"
    utility.save()
    utility = fresh(utility)

    assert date(2026, 11, 10) in utility.holidays_in(2026)
    monday = datetime(2026, 11, 9, 6, tzinfo=UTC)  # 11:30 in India
    # Mon 9 → Tue 10 is off → Wed 11 is the first working day: its end is the deadline.
    assert utility_working_deadline(utility=utility, moment=monday, days=1) == datetime(
        2026, 11, 11, 18, 30, tzinfo=UTC
    )


def test_a_region_the_package_does_not_know_is_refused():
    utility = india()
    utility.holiday_subdivision = "XX"
    with pytest.raises(ValidationError) as refused:
        utility.full_clean()
    assert "holiday_subdivision" in refused.value.message_dict


def test_a_holiday_staff_add_stops_disconnections_and_working_day_counts(client):
    """An approver adds Wed 2 Dec 2026 in the admin: a disconnection due that morning waits for
    Thursday 08:00, and a 1-working-day deadline from Tuesday moves to Thursday's end."""
    utility = saudi()
    billing_policy = relay.policy_for(utility)
    client.force_login(staff(utility, "approver"))
    tuesday_noon = datetime(2026, 12, 1, 9, tzinfo=UTC)  # 12:00 in Riyadh
    wednesday_morning = datetime(2026, 12, 2, 6, tzinfo=UTC)  # 09:00 in Riyadh
    assert (
        relay.disconnect_allowed_from(
            utility=fresh(utility), policy=billing_policy, moment=wednesday_morning
        )
        == wednesday_morning
    )

    response = client.post(
        "/admin/accounts/utilitycalendarday/add/",
        {"utility": utility.pk, "day": "2026-12-02", "kind": "holiday", "name": "Storm day"},
    )

    assert response.status_code == 302
    utility = fresh(utility)
    assert relay.disconnect_allowed_from(
        utility=utility, policy=billing_policy, moment=wednesday_morning
    ) == datetime(2026, 12, 3, 5, tzinfo=UTC)  # Thursday 08:00 in Riyadh
    assert utility_working_deadline(utility=utility, moment=tuesday_noon, days=1) == datetime(
        2026, 12, 3, 21, tzinfo=UTC
    )


def test_a_no_disconnection_day_is_still_a_working_day():
    utility = saudi()
    billing_policy = relay.policy_for(utility)
    UtilityCalendarDay.objects.create(
        utility=utility, day=date(2026, 12, 2), kind="no_disconnection", name="Heat wave"
    )
    utility = fresh(utility)
    wednesday_morning = datetime(2026, 12, 2, 6, tzinfo=UTC)

    assert relay.disconnect_allowed_from(
        utility=utility, policy=billing_policy, moment=wednesday_morning
    ) == datetime(2026, 12, 3, 5, tzinfo=UTC)
    assert (
        utility_working_days_between(
            utility=utility, start=date(2026, 12, 1), end=date(2026, 12, 2)
        )
        == 1
    )


def test_staff_strike_out_a_package_holiday():
    """Saudi National Day (Wed 23 Sep 2026) declared a working day for this utility."""
    utility = saudi()
    assert date(2026, 9, 23) in utility.holidays_in(2026)
    UtilityCalendarDay.objects.create(
        utility=utility, day=date(2026, 9, 23), kind="working_day", name="Worked this year"
    )
    utility = fresh(utility)

    assert date(2026, 9, 23) not in utility.holidays_in(2026)
    assert (
        utility_working_days_between(
            utility=utility, start=date(2026, 9, 22), end=date(2026, 9, 23)
        )
        == 1
    )


def test_only_approvers_keep_the_calendar_and_only_their_utilitys(client):
    utility, other = saudi(), india()
    theirs = UtilityCalendarDay.objects.create(
        utility=other, day=date(2026, 12, 2), name="Other utility's day"
    )
    planner = staff(utility, "planner")
    client.force_login(planner)
    assert client.get("/admin/accounts/utilitycalendarday/").status_code == 200
    refused = client.post(
        "/admin/accounts/utilitycalendarday/add/",
        {"utility": utility.pk, "day": "2026-12-02", "kind": "holiday", "name": "Not mine to add"},
    )
    assert refused.status_code == 403

    client.force_login(staff(utility, "approver"))
    listing = client.get("/admin/accounts/utilitycalendarday/")
    assert "Other utility" not in listing.content.decode()
    assert "National Day" in listing.content.decode()  # the package's days, shown beside
    assert client.get(f"/admin/accounts/utilitycalendarday/{theirs.pk}/change/").status_code in (
        302,
        404,
    )
    foreign = client.post(
        "/admin/accounts/utilitycalendarday/add/",
        {"utility": other.pk, "day": "2026-12-03", "kind": "holiday", "name": "Not theirs"},
    )
    assert foreign.status_code == 200 and "Select a valid choice" in foreign.content.decode()
    assert UtilityCalendarDay.objects.filter(utility=other).count() == 1
