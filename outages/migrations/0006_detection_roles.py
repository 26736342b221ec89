"""Who sees what the meters report: planners, approvers and support read the meters' events and
their periods without supply (and the outages detected from them, with the outage list they
already read); planners confirm, estimate, merge and split those outages with the permission
they publish outages with (outages.publish_outage). docs/admin-roles.md is the whole table."""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

EVENTS = ["meters.view_meterevent", "meters.view_supplyperiod"]
DETECTION_POLICY = ["outages.view_detectionpolicy"]
ROLES = {
    # Planners run the outage desk, so they set how its outages are detected.
    "Outage planners": [
        *EVENTS,
        *DETECTION_POLICY,
        "outages.add_detectionpolicy",
        "outages.change_detectionpolicy",
    ],
    "Approvers": [*EVENTS, *DETECTION_POLICY],
    "Support": EVENTS,
}


def _permissions(apps, perms: list[str]):
    Permission = apps.get_model("auth", "Permission")
    found = []
    for perm in perms:
        app_label, codename = perm.split(".")
        found += Permission.objects.filter(content_type__app_label=app_label, codename=codename)
    return found


def grant(apps, schema_editor):
    # Permissions are normally made after all migrations; the groups need them now.
    for label in ("meters", "outages"):
        config = apps.get_app_config(label)
        config.models_module = True
        create_permissions(config, apps=apps, verbosity=0)
        config.models_module = None
    Group = apps.get_model("auth", "Group")
    for name, perms in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*_permissions(apps, perms))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name, perms in ROLES.items():
        group = Group.objects.filter(name=name).first()
        if group is not None:
            group.permissions.remove(*_permissions(apps, perms))


class Migration(migrations.Migration):
    dependencies = [
        ("outages", "0005_detection"),
        ("meters", "0005_meter_events"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(grant, revoke)]
