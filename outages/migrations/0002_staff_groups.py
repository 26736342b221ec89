"""The four staff roles as Django groups with their permissions. Which utility a member sees comes
from core.StaffMembership; what they may do from these groups."""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW_GRID = ["meters.view_gridarea", "meters.view_feeder", "meters.view_transformer", "meters.view_meter"]
VIEW_CONSUMERS = ["accounts.view_consumeraccount", "accounts.view_accountlink"]
VIEW_OUTAGES = ["outages.view_outage", "outages.view_affectedmeter", "outages.view_outageevent"]

GROUPS = {
    "Outage planners": [
        *VIEW_GRID,
        *VIEW_CONSUMERS,
        *VIEW_OUTAGES,
        "outages.add_outage",
        "outages.change_outage",
        "outages.publish_outage",
        "outages.view_reminderschedule",
        "outages.change_reminderschedule",
        "outages.add_reminderschedule",
        "outages.view_standardspolicy",
        "outages.view_compensation",
        "outages.view_exemptionrequest",
        "outages.add_exemptionrequest",
    ],
    "Approvers": [
        *VIEW_OUTAGES,
        *VIEW_CONSUMERS,
        "outages.view_standardspolicy",
        "outages.change_standardspolicy",
        "outages.view_compensation",
        "outages.view_exemptionrequest",
        "outages.change_exemptionrequest",
        "outages.decide_exemptionrequest",
        "outages.view_disconnection",
    ],
    "Cashiers": [
        *VIEW_CONSUMERS,
        "billing.view_ledgerentry",
        "billing.view_balance",
        "billing.view_relaycommand",
        "outages.view_compensation",
    ],
    "Support": [
        *VIEW_GRID,
        *VIEW_CONSUMERS,
        *VIEW_OUTAGES,
        "billing.view_relaycommand",
        "outages.view_compensation",
        "outages.view_exemptionrequest",
        "outages.add_exemptionrequest",
        "outages.view_disconnection",
        "outages.change_disconnection",
        "core.view_auditentry",
    ],
}


def forward(apps, schema_editor):
    # Permissions are normally made after all migrations; these groups need them now.
    for config in apps.get_app_configs():
        config.models_module = True
        create_permissions(config, apps=apps, verbosity=0)
        config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, perms in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        for perm in perms:
            app_label, codename = perm.split(".")
            found = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if found is not None:
                group.permissions.add(found)


def backward(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("outages", "0001_initial"),
        ("core", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("billing", "0002_ledger_append_only"),
        ("meters", "0001_initial"),
        ("accounts", "0002_utility_week_starts_on_utility_weekend_days"),
    ]
    operations = [migrations.RunPython(forward, backward)]
