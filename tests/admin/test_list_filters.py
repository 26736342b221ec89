"""The list filters of the admin offer only the staff member's utilities' rows, as the lists hold:
another utility's grid areas, names and accounts are never named in the sidebar."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.urls import reverse

from core.admin import UtilityScopedAdmin
from core.models import StaffMembership
from meters.models import GridArea, Meter
from tests.accounts.factories import UserFactory
from tests.admin.objects import MARK, Rows


@pytest.fixture
def staff_of_one_utility(db, client):
    """A staff member of one utility who may look at everything, and rows of two utilities."""
    own, other = Rows(code="own", mark=""), Rows(code=MARK, mark=MARK)
    own.every_admin_row(), other.every_admin_row()
    user = UserFactory(username="looks-at-everything", phone=None, is_staff=True)
    StaffMembership.objects.create(user=user, utility=own.utility, role="support")
    user.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))
    client.force_login(user)
    return client, own


def test_no_list_nor_its_filters_names_anything_of_another_utility(staff_of_one_utility):
    client, _ = staff_of_one_utility
    showing = []
    for model, model_admin in admin.site._registry.items():
        if not isinstance(model_admin, UtilityScopedAdmin):
            continue  # superusers' pages only
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        page = client.get(url)
        assert page.status_code == 200, url
        if MARK in page.content.decode().lower():
            showing.append(url)

    assert showing == []


def test_the_grid_area_filter_offers_the_staff_members_own_areas(staff_of_one_utility):
    client, own = staff_of_one_utility
    area = own.of(GridArea)
    # Django shows a filter of two choices or more.
    GridArea.objects.create(utility=own.utility, code="A2", name="Second block")

    page = client.get(reverse("admin:meters_meter_changelist")).content.decode()
    sidebar = page[page.index('id="changelist-filter"') :]

    assert f"transformer__feeder__area__id__exact={area.pk}" in sidebar
    assert area.name in sidebar and "Second block" in sidebar
    assert Meter.objects.filter(utility__code=MARK).exists()  # theirs exist, and are not named


def test_a_superuser_is_offered_every_utility(staff_of_one_utility, client):
    _, own = staff_of_one_utility
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))

    page = client.get(reverse("admin:meters_meter_changelist")).content.decode().lower()

    sidebar = page[page.index('id="changelist-filter"') :]
    assert f"{MARK}utility" in sidebar and own.utility.name.lower() in sidebar
