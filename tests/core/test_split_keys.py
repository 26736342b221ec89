"""Every table that holds a utility's data carries the utility, or a parent that does.

That is what lets the data be split without a schema change, either way docs/scaling.md describes:
a database per utility chosen by a router, or Citus distributing by meter or account with utilities
as reference data. A table reaches its utility through a chain of required foreign keys (a ledger
entry → its account → the utility), or carries a `utility` column of its own where some rows belong
to no utility (an audit entry of a superuser's, a notification about a sign-in). The tables that hold
no utility's data are named below with the reason; the list must stay exact.
"""

from __future__ import annotations

from django.apps import apps
from django.db import models
from django.test.utils import isolate_apps

from accounts.models import Utility

OUR_APPS = {
    "accounts",
    "meters",
    "billing",
    "outages",
    "notifications",
    "servicerequests",
    "insight",
    "core",
}

# Tables that belong to a person or to the machinery, not to a utility: in a split they live with the
# identity service (shared by every utility a person deals with) or on each node.
NO_UTILITY = {
    # A person, who may hold accounts with several utilities; reference data in any split.
    "accounts.User": "a person, shared by every utility they deal with",
    "accounts.User_groups": "a person's staff groups",
    "accounts.User_user_permissions": "a person's staff permissions",
    "accounts.OneTimeCode": "a sign-in code sent to a phone number before any account is known",
    "notifications.Device": "a person's phone",
    "notifications.NotificationPreference": "a person's choice of alert categories",
    "billing.IdempotencyRecord": "a client's request key, per person",
    "billing.PaymentMethod": "a person's saved card at the gateway",
    # The payment gateway's own books and deliveries, keyed by the gateway's ids.
    "billing.WebhookEvent": "a gateway event, once only by the gateway's id",
    "billing.SimulatedPayment": "the simulated gateway's own books",
    "billing.SimulatedPaymentMethod": "the simulated gateway's own books",
    "billing.SimulatedCharge": "the simulated gateway's own books",
    # Machinery.
    "billing.ChargeCursor": "a charging worker's position, one per shard on each node",
}


def _tables() -> list[type[models.Model]]:
    return [
        model
        for model in apps.get_models(include_auto_created=True)
        if model._meta.app_label in OUR_APPS and model._meta.managed and not model._meta.proxy
    ]


def _reaches_utility(model: type[models.Model], seen: frozenset = frozenset()) -> list[str] | None:
    """The chain of required foreign keys from `model` to Utility, or None."""
    if model is Utility:
        return []
    for field in model._meta.concrete_fields:
        if not (field.many_to_one or field.one_to_one) or field.null:
            continue
        parent = field.related_model
        if parent in seen:
            continue
        chain = _reaches_utility(parent, seen | {model})
        if chain is not None:
            return [f"{model.__name__}.{field.name}", *chain]
    return None


def _carries_utility(model: type[models.Model]) -> bool:
    """A `utility` column of its own (nullable where some rows are about no utility)."""
    return any(
        field.many_to_one and field.related_model is Utility
        for field in model._meta.concrete_fields
    )


def test_every_table_reaches_its_utility_or_is_named():
    missing = [
        model._meta.label
        for model in _tables()
        if model._meta.label not in NO_UTILITY
        and _reaches_utility(model) is None
        and not _carries_utility(model)
    ]
    assert not missing, f"tables with no way to their utility: {missing}"


def test_the_list_of_tables_without_a_utility_is_exact():
    labels = {model._meta.label: model for model in _tables()}
    stale = [label for label in NO_UTILITY if label not in labels]
    assert not stale, f"named but no such table: {stale}"
    reach = [
        label
        for label in NO_UTILITY
        if _reaches_utility(labels[label]) is not None or _carries_utility(labels[label])
    ]
    assert not reach, f"named as holding no utility's data, yet they reach one: {reach}"


def test_the_big_tables_reach_their_utility_through_required_keys():
    """The tables that grow with meters × days, which a split must place by utility, get there
    without a nullable step."""
    for label, through in (
        ("meters.MeterDay", "meter"),
        ("billing.ChargedDay", "meter"),
        ("billing.LedgerEntry", "account"),
        ("billing.ChargeMonth", "account"),
        ("outages.AffectedMeter", "outage"),
    ):
        chain = _reaches_utility(apps.get_model(label))
        assert chain is not None, label
        assert chain[0].endswith(f".{through}"), (label, chain)


@isolate_apps("core")
def test_a_table_without_a_way_to_its_utility_is_found():
    """The check itself: a model with only a nullable key to an account reaches no utility."""

    class Orphan(models.Model):
        account = models.ForeignKey(
            "accounts.ConsumerAccount", null=True, on_delete=models.SET_NULL, related_name="+"
        )

        class Meta:
            app_label = "core"

        def __str__(self) -> str:
            return f"orphan {self.pk}"

    assert _reaches_utility(Orphan) is None
    assert not _carries_utility(Orphan)
    assert _reaches_utility(apps.get_model("billing.LedgerEntry")) is not None
