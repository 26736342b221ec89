from __future__ import annotations

from datetime import timedelta

import factory
from django.utils import timezone

from accounts.models import AccountLink, AccountShare
from billing.gateway import GATEWAYS
from tests.accounts.factories import AccountLinkFactory, UserFactory


class AccountShareFactory(factory.django.DjangoModelFactory):
    """A pending invitation from a holder's link to a mobile number."""

    class Meta:
        model = AccountShare

    holder_link = factory.SubFactory(AccountLinkFactory)
    account = factory.SelfAttribute("holder_link.account")
    invited_by = factory.SelfAttribute("holder_link.user")
    phone = factory.Sequence(lambda n: f"+96566{n:06d}")
    can_view = True
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=7))


def shared_link(holder_link: AccountLink, user=None, **rights) -> AccountLink:
    """An accepted share of `holder_link`'s account: the share row and the shared link, as
    accepting makes them."""
    user = user or UserFactory()
    values = {"can_view": True, "can_pay": False, "receives_alerts": False, **rights}
    link = AccountLink.objects.create(
        user=user,
        account=holder_link.account,
        role=AccountLink.Role.SHARED,
        shared_by=holder_link,
        verified_mobile=user.phone,
        visible_from=holder_link.visible_from,
        **values,
    )
    AccountShareFactory(
        holder_link=holder_link,
        phone=user.phone,
        status=AccountShare.Status.ACCEPTED,
        responded_at=timezone.now(),
        link=link,
        **values,
    )
    return link


SIM = GATEWAYS["simulated"]


def settle(make_api, topup):
    """The simulated gateway's webhook for a paid top-up, as tests/billing/test_topups.py sends it."""
    body = SIM.event_body(
        reference=topup.gateway_reference,
        amount=topup.amount,
        currency=topup.currency,
        succeeded=True,
    )
    api = make_api()
    with api._capture(execute=True):
        response = api.client.post(
            "/api/v1/payments/webhooks/simulated/",
            data=body,
            content_type="application/json",
            HTTP_SIM_SIGNATURE=SIM.sign(body),
        )
    assert response.json() == {"status": "credited"}
