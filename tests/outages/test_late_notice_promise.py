"""A late outage notice promises compensation only where the utility has that standard: Saudi
Arabia's guaranteed-standards policy does, Kuwait has none (issue 14)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from outages import services
from outages.models import Outage
from tests.accounts.factories import UtilityFactory
from tests.outages.factories import (
    OutageFactory,
    consumer_on,
    saudi,
    staff_member,
    transformer_of,
)

pytestmark = pytest.mark.django_db
URL = "/admin/outages/outage/"
KUWAIT_NO_COMPENSATION = "has no compensation standard, so no compensation is owed"


def _late_draft(utility):
    transformer = transformer_of(utility)
    consumer_on(transformer)
    soon = timezone.now() + timedelta(hours=20)
    return OutageFactory(
        utility=utility,
        planned_start=soon,
        planned_end=soon + timedelta(hours=4),
        transformers=[transformer],
    )


def _publish_pages(client, utility):
    outage = _late_draft(utility)
    client.force_login(staff_member(utility, "planner"))
    shown = client.get(f"{URL}{outage.pk}/publish/")
    refused = client.post(f"{URL}{outage.pk}/publish/", {})
    assert b"Tick this box to publish with late notice" in refused.content
    return outage, shown.content.decode(), refused.content.decode()


def test_publishing_late_in_kuwait_promises_no_compensation(client):
    kuwait = UtilityFactory()
    outage, shown, refused = _publish_pages(client, kuwait)

    for page in (shown, refused):
        assert "less than the 48 hours" in page
        assert "compensated" not in page
        assert f"{kuwait.name} {KUWAIT_NO_COMPENSATION}" in page
    done = client.post(f"{URL}{outage.pk}/publish/", {"confirm_late": "on"})
    assert done.status_code == 302
    outage.refresh_from_db()
    assert outage.status == Outage.Status.PUBLISHED and outage.late_notice


def test_publishing_late_in_saudi_arabia_promises_compensation(client):
    _, shown, refused = _publish_pages(client, saudi())

    for page in (shown, refused):
        assert "less than the " in page and "affected consumers will be compensated." in page
        assert (
            "I confirm publishing with late notice; affected consumers will be compensated." in page
        )
        assert "no compensation is owed" not in page


@pytest.mark.parametrize(
    ("make_utility", "promise"),
    [
        (
            UtilityFactory,
            f"notice to publish anyway; Ministry of Electricity, Water and Renewable "
            f"Energy {KUWAIT_NO_COMPENSATION}.",
        ),
        (saudi, "notice to publish anyway; affected consumers will be compensated."),
    ],
)
def test_the_refusal_the_api_gives_promises_only_what_the_standards_owe(make_utility, promise):
    outage = _late_draft(make_utility())

    with pytest.raises(services.LateNoticeUnconfirmed) as refused:
        services.outage_publish(outage_id=outage.pk)

    assert refused.value.message.endswith(promise)
