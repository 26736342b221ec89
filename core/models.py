"""Staff roles per utility and the audit trail of what staff did in the admin."""

from __future__ import annotations

from datetime import UTC

from django.conf import settings
from django.db import models
from django.utils import timezone


class StaffRole(models.TextChoices):
    PLANNER = "planner", "Outage planner"
    APPROVER = "approver", "Approver"
    CASHIER = "cashier", "Cashier"
    SUPPORT = "support", "Support"


# The Django group each role grants; the groups and their permissions are made by a data migration
# (outages/migrations/0002_staff_groups.py).
ROLE_GROUPS: dict[str, str] = {
    StaffRole.PLANNER: "Outage planners",
    StaffRole.APPROVER: "Approvers",
    StaffRole.CASHIER: "Cashiers",
    StaffRole.SUPPORT: "Support",
}


class StaffMembership(models.Model):
    """A staff member's role at one utility: what they may do comes from the role's group, which
    utility's data they see comes from these rows (core.admin.UtilityScopedAdmin)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_memberships"
    )
    utility = models.ForeignKey(
        "accounts.Utility", on_delete=models.CASCADE, related_name="staff_memberships"
    )
    role = models.CharField(max_length=16, choices=StaffRole.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["utility", "user", "role"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "utility", "role"], name="one_membership_per_role"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} at {self.utility.code}"


class AuditEntry(models.Model):
    """One thing a staff member did in the admin: an add, a change (with old and new values), a
    deletion or a custom action (publish, approve, mark as wrongful …). Never edited."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField(default=timezone.now)
    action = models.CharField(max_length=64)
    model = models.CharField(max_length=100, help_text="app_label.model")
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    utility = models.ForeignKey(
        "accounts.Utility", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changes = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["model", "object_id"]), models.Index(fields=["-at"])]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        # Stored and named in UTC: an audit trail spans utilities, so no one local zone fits it.
        return (
            f"{self.at.astimezone(UTC):%Y-%m-%d %H:%M} UTC {self.actor} {self.action} "
            f"{self.model} {self.object_id}"
        )
