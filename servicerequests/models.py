"""Service requests and complaints: the utility's counter services as one electronic window.

A utility offers request types as data (RequestType: the fields each needs, whether it takes a
cost estimate, whether a regulated deadline applies). A consumer's ServiceRequest moves through an
explicit status machine (servicerequests.services.TRANSITIONS); every change, staff reply and
consumer comment is a RequestEvent, which is the timeline the consumer reads.
"""

from __future__ import annotations

import calendar
import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import ConsumerAccount, Utility
from billing.models import MONEY, TopUp

POSITIVE = [MinValueValidator(0)]


class Standard(models.TextChoices):
    """Regulated standards a request type can fall under. The guaranteed-standards engine
    (outages.standards) records its compensation under the same code."""

    CONNECTION = "connection", "Connection within the regulated working days"


class RequestType(models.Model):
    """One service a utility offers online, with the fields its form needs.

    `fields` is a list of field specs, validated by services.details_validate:
    {"name": "voltage", "type": "choice", "required": true, "choices": ["low", "medium"],
     "label": {"en": "Voltage", "ar": "الجهد", "hi": "वोल्टेज"}}.
    Types: text (max_length), choice (choices), integer and decimal (min, max), date, boolean.
    """

    utility = models.ForeignKey(Utility, on_delete=models.CASCADE, related_name="request_types")
    code = models.SlugField(max_length=40)
    name_en = models.CharField(max_length=100)
    name_ar = models.CharField(max_length=100)
    name_hi = models.CharField(max_length=100)
    fields = models.JSONField(default=list, blank=True)
    takes_estimate = models.BooleanField(
        default=False, help_text="Staff issue a cost estimate that the consumer pays first."
    )
    standard = models.CharField(
        max_length=24,
        choices=Standard.choices,
        blank=True,
        help_text="A regulated standard whose deadline runs from payment (ConnectionPolicy).",
    )
    target_working_days = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="The utility's own target, in working days from submission (or from payment "
        "when it takes an estimate). Regulated types use their standard's days instead.",
    )
    target_hours = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="For urgent types (no supply): the target in hours from submission, around the "
        "clock; used instead of working days.",
    )
    max_attachments = models.PositiveSmallIntegerField(default=5)
    is_active = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["utility", "position", "code"]
        constraints = [
            models.UniqueConstraint(fields=["utility", "code"], name="request_type_code_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name_en} ({self.utility.code})"

    def name_in(self, language: str) -> str:
        return getattr(self, f"name_{language}", "") or self.name_en


class ConnectionPolicy(models.Model):
    """The connection-request standard of a utility, as data. Defaults: the Saudi regulator's table
    (DOMAIN.md §3): 20 working days on low voltage, 60 on medium voltage, from payment; missed, 400
    plus 20 per further working day or part of one. No row: connections have no regulated deadline."""

    utility = models.OneToOneField(
        Utility, on_delete=models.CASCADE, related_name="connection_policy", primary_key=True
    )
    low_voltage_days = models.PositiveSmallIntegerField(default=20)
    medium_voltage_days = models.PositiveSmallIntegerField(default=60)
    amount = models.DecimalField(**MONEY, default=Decimal(400), validators=POSITIVE)
    amount_per_day = models.DecimalField(
        **MONEY,
        default=Decimal(20),
        validators=POSITIVE,
        help_text="Added for every working day (or part of one) beyond the deadline.",
    )

    class Meta:
        verbose_name = "connection standard"
        verbose_name_plural = "connection standards"

    def __str__(self) -> str:
        return f"Connection standard of {self.utility.code}"

    def days_for(self, voltage: str) -> int | None:
        return {"low": self.low_voltage_days, "medium": self.medium_voltage_days}.get(voltage)


class OpeningHours(models.Model):
    """When the utility's service centre and helpline answer: one row per weekday and session."""

    utility = models.ForeignKey(Utility, on_delete=models.CASCADE, related_name="opening_hours")
    weekday = models.PositiveSmallIntegerField(
        validators=[MaxValueValidator(6)], help_text="0 = Monday … 6 = Sunday."
    )
    opens = models.TimeField(help_text="Local time.")
    closes = models.TimeField(help_text="Local time; after `opens`.")

    class Meta:
        ordering = ["utility", "weekday", "opens"]
        verbose_name_plural = "opening hours"
        constraints = [
            models.CheckConstraint(
                condition=Q(closes__gt=models.F("opens")), name="opening_hours_close_after_open"
            )
        ]

    def __str__(self) -> str:
        # Local wall-clock times, named with the utility's zone.
        return (
            f"{self.utility.code} {calendar.day_name[self.weekday]} "
            f"{self.opens:%H:%M} {self.utility.timezone} – {self.closes:%H:%M} {self.utility.timezone}"
        )


class ServiceRequest(models.Model):
    class Status(models.TextChoices):
        SUBMITTED = "submitted", "Submitted"
        UNDER_REVIEW = "under_review", "Under review"
        ESTIMATE_ISSUED = "estimate_issued", "Estimate issued"
        PAID = "paid", "Estimate paid"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"
        REJECTED = "rejected", "Rejected"
        CANCELLED = "cancelled", "Cancelled"

    OPEN = (
        Status.SUBMITTED,
        Status.UNDER_REVIEW,
        Status.ESTIMATE_ISSUED,
        Status.PAID,
        Status.IN_PROGRESS,
    )

    utility = models.ForeignKey(Utility, on_delete=models.PROTECT, related_name="+")
    account = models.ForeignKey(
        ConsumerAccount, on_delete=models.PROTECT, related_name="service_requests"
    )
    type = models.ForeignKey(RequestType, on_delete=models.PROTECT, related_name="requests")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SUBMITTED)
    details = models.JSONField(default=dict, blank=True)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_service_requests",
    )
    estimate_amount = models.DecimalField(**MONEY, null=True, blank=True)
    estimate_note = models.TextField(blank=True)
    estimate_issued_at = models.DateTimeField(null=True, blank=True)
    estimate_topup = models.ForeignKey(
        TopUp,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The latest payment started for the estimate.",
    )
    paid_at = models.DateTimeField(null=True, blank=True)
    clock_started_at = models.DateTimeField(null=True, blank=True)
    deadline_working_days = models.PositiveSmallIntegerField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    deadline_missed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the deadline check first found it late."
    )
    completed_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["account", "-created_at"]),
            models.Index(fields=["utility", "status", "deadline_at"]),
            models.Index(fields=["status", "deadline_at"]),
        ]
        permissions = [("process_servicerequest", "Can assign, reply to and move service requests")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.type.name_en} ({self.get_status_display()})"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN

    def is_overdue(self, now=None) -> bool:
        now = now or timezone.now()
        return self.is_open and self.deadline_at is not None and self.deadline_at <= now


class RequestEvent(models.Model):
    """One line of a request's timeline: a status change, a staff reply, a consumer comment, an
    estimate, an attachment, an assignment (staff only). Never edited."""

    class Kind(models.TextChoices):
        CREATED = "created", "Submitted"
        STATUS = "status", "Status changed"
        REPLY = "reply", "Staff reply"
        COMMENT = "comment", "Consumer comment"
        ESTIMATE = "estimate", "Estimate issued"
        ATTACHMENT = "attachment", "Attachment added"
        ASSIGNED = "assigned", "Assigned"

    request = models.ForeignKey(ServiceRequest, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    by_staff = models.BooleanField(default=False)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, blank=True)
    text = models.TextField(blank=True)
    visible_to_consumer = models.BooleanField(default=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        # No time here: the timeline shows `at` beside it, in the utility's zone.
        return f"{self.get_kind_display()} on request #{self.request_id}"


def attachment_path(instance: Attachment, filename: str) -> str:
    # Never the client's name on disk: a random one, with the extension of the sniffed type.
    extension = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf"}
    return (
        f"service-requests/{instance.request_id}/"
        f"{uuid.uuid4().hex}.{extension.get(instance.content_type, 'bin')}"
    )


class Attachment(models.Model):
    request = models.ForeignKey(
        ServiceRequest, on_delete=models.CASCADE, related_name="attachments"
    )
    file = models.FileField(upload_to=attachment_path, max_length=200)
    content_type = models.CharField(max_length=40, help_text="From the file's own bytes.")
    size = models.PositiveIntegerField()
    original_name = models.CharField(max_length=200)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.original_name


class OutageReport(models.Model):
    """A consumer's "my power is off" from the app: attached to the outage already known there,
    or, where none is, the fault request it opened (servicerequests.outage_reports)."""

    account = models.ForeignKey(ConsumerAccount, on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    meter = models.ForeignKey(
        "meters.Meter", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    outage = models.ForeignKey(
        "outages.Outage", null=True, blank=True, on_delete=models.PROTECT, related_name="reports"
    )
    service_request = models.ForeignKey(
        ServiceRequest, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    note = models.TextField(blank=True, help_text="What the consumer added, as written.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["account", "created_at"], name="outagereport_account")]

    def __str__(self) -> str:
        return f"Outage report {self.pk} of account {self.account_id}"
