"""Who works the tamper queue: support read and work it (take a case, send an inspection, dismiss
or resolve it) and may record a case as grounds for removal, as they record grounds already;
approvers read it and record a case as grounds for removal (billing.add_removalorder, the
permission of the removal record page). docs/admin-roles.md is the whole table."""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLES = {
    "Support": ["view_tampercase", "change_tampercase"],
    "Approvers": ["view_tampercase", "add_removalorder"],
}


def grant(apps, schema_editor):
    # Permissions are normally made after all migrations; the groups need them now.
    config = apps.get_app_config("billing")
    config.models_module = True
    create_permissions(config, apps=apps, verbosity=0)
    config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(
            *Permission.objects.filter(content_type__app_label="billing", codename__in=codenames)
        )


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in ROLES.items():
        group = Group.objects.filter(name=name).first()
        if group is not None:
            group.permissions.remove(
                *Permission.objects.filter(
                    content_type__app_label="billing", codename__in=codenames
                )
            )


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0015_tamper_case_links"),
        ("billing", "0012_admin_permission_matrix"),
        ("outages", "0002_staff_groups"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(grant, revoke)]
