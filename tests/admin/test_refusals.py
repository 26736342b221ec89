"""A staff member who opens a page their role may not use is told so (403), not sent to the index
as if the link had worked: the console's own pages for importing accounts, moving tenants and
recording a removal."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.accounts.factories import UtilityFactory
from tests.outages.factories import staff_member

pytestmark = pytest.mark.django_db

PAGES = [
    "admin:accounts_consumeraccount_import",
    "admin:billing_move_out",
    "admin:billing_move_in",
    "admin:billing_removalorder_record",
]


@pytest.mark.parametrize("name", PAGES)
def test_a_planner_is_refused_the_counter_and_tenancy_pages(client, name):
    client.force_login(staff_member(UtilityFactory(), "planner"))

    response = client.get(reverse(name))

    assert response.status_code == 403


@pytest.mark.parametrize("name", PAGES)
def test_a_superuser_opens_them(client, admin_user, name):
    client.force_login(admin_user)

    assert client.get(reverse(name)).status_code == 200
