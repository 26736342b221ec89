"""Who reads what consumers set for themselves: cashiers and support read the automatic top-ups
(and each firing) and the emergency credit taken, and every role that reads an account sees who
its holder shared it with. Consumers change these in the app, never staff. docs/admin-roles.md is
the whole table."""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLES = {
    "Cashiers": {
        "billing": ["view_autotopup", "view_autotopuprun", "view_emergencycredit"],
        "accounts": ["view_accountshare"],
    },
    "Support": {
        "billing": ["view_autotopup", "view_autotopuprun", "view_emergencycredit"],
        "accounts": ["view_accountshare"],
    },
    "Approvers": {"accounts": ["view_accountshare"]},
    "Outage planners": {"accounts": ["view_accountshare"]},
}


def _permissions(Permission, app_label, codenames):
    return Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames)


def grant(apps, schema_editor):
    # Permissions are normally made after all migrations; the groups need them now.
    for label in ("billing", "accounts"):
        config = apps.get_app_config(label)
        config.models_module = True
        create_permissions(config, apps=apps, verbosity=0)
        config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, by_app in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        for app_label, codenames in by_app.items():
            group.permissions.add(*_permissions(Permission, app_label, codenames))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, by_app in ROLES.items():
        group = Group.objects.filter(name=name).first()
        if group is not None:
            for app_label, codenames in by_app.items():
                group.permissions.remove(*_permissions(Permission, app_label, codenames))


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0017_affordability"),
        ("billing", "0016_tamper_roles"),
        ("accounts", "0007_shares_sanctioned_load"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(grant, revoke)]
