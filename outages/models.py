"""Outages (planned and unplanned), their notices, and the guaranteed-standards compensation they
and relay commands give rise to, with force-majeure exemptions."""

from __future__ import annotations

from datetime import time
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import ConsumerAccount, Utility
from billing.models import MONEY, LedgerEntry, RelayCommand
from core.money import money_text
from meters.models import Feeder, GridArea, Meter, SupplyPeriod, Transformer

POSITIVE = [MinValueValidator(0)]


class Standard(models.TextChoices):
    NOTICE = "notice", "Planned outage notified late"
    RESTORATION = "restoration", "Supply restored late"
    RECONNECTION = "reconnection", "Reconnection after payment late"
    REPEATED = "repeated", "Too many long outages this year"
    WRONGFUL_DISCONNECTION = "wrongful_disconnection", "Wrongful disconnection"
    CONNECTION = "connection", "Connection request completed late"


class StandardsPolicy(models.Model):
    """A utility's guaranteed service standards, as data. The defaults are the Saudi regulator's
    table (DOMAIN.md §3); a utility without a row compensates nothing. The notice threshold itself
    is Utility.outage_notice_hours, which also decides when publishing needs a late-notice
    confirmation."""

    utility = models.OneToOneField(
        Utility, on_delete=models.CASCADE, related_name="standards_policy", primary_key=True
    )
    notice_amount = models.DecimalField(**MONEY, default=Decimal(100), validators=POSITIVE)
    restoration_hours = models.PositiveSmallIntegerField(default=6)
    restoration_amount = models.DecimalField(**MONEY, default=Decimal(200), validators=POSITIVE)
    restoration_amount_per_hour = models.DecimalField(
        **MONEY,
        default=Decimal(50),
        validators=POSITIVE,
        help_text="Added for every started hour beyond the threshold.",
    )
    reconnection_hours = models.PositiveSmallIntegerField(default=2)
    reconnection_amount = models.DecimalField(**MONEY, default=Decimal(100), validators=POSITIVE)
    reconnection_amount_per_hour = models.DecimalField(
        **MONEY,
        default=Decimal(100),
        validators=POSITIVE,
        help_text="Added for every started hour beyond the threshold.",
    )
    repeated_min_hours = models.PositiveSmallIntegerField(
        default=2, help_text="Outages at least this long count towards the yearly limit."
    )
    repeated_allowed = models.PositiveSmallIntegerField(
        default=2, help_text="Long outages per calendar year before compensation is due."
    )
    repeated_amount = models.DecimalField(**MONEY, default=Decimal(400), validators=POSITIVE)
    repeated_amount_per_outage = models.DecimalField(
        **MONEY, default=Decimal(50), validators=POSITIVE
    )
    wrongful_disconnection_amount = models.DecimalField(
        **MONEY, default=Decimal(500), validators=POSITIVE
    )
    exemption_working_days = models.PositiveSmallIntegerField(
        default=10, help_text="Working days after a failure to file a force-majeure exemption."
    )
    payment_days = models.PositiveSmallIntegerField(
        default=30,
        validators=[MinValueValidator(1)],
        help_text="Compensation is credited within this many days of the failure.",
    )

    class Meta:
        verbose_name = "guaranteed-standards policy"
        verbose_name_plural = "guaranteed-standards policies"

    def __str__(self) -> str:
        return f"Guaranteed standards of {self.utility.code}"


class DetectionPolicy(models.Model):
    """How a utility's meters' failures become outages of its grid (outages.detection), as data.
    No row means the defaults below; `enabled` off leaves every outage to staff."""

    utility = models.OneToOneField(
        Utility, on_delete=models.CASCADE, related_name="detection_policy", primary_key=True
    )
    enabled = models.BooleanField(default=True)
    window_seconds = models.PositiveIntegerField(
        default=120,
        validators=[MinValueValidator(10), MaxValueValidator(3600)],
        help_text="Failures under one transformer this close together are one event.",
    )
    min_meters = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(2)],
        help_text="Fewer meters off under a transformer is a fault at those consumers.",
    )
    min_share = models.DecimalField(
        max_digits=3,
        decimal_places=2,
        default=Decimal("0.50"),
        validators=[MinValueValidator(Decimal("0.01")), MaxValueValidator(1)],
        help_text="The share of a transformer's meters that must be off (0.50 = half); a feeder "
        "or area is out when this share of its transformers is.",
    )
    estimate_minutes = models.PositiveIntegerField(
        default=240,
        validators=[MinValueValidator(15)],
        help_text="The restoration estimate consumers are told until staff set one.",
    )

    class Meta:
        verbose_name = "outage detection policy"
        verbose_name_plural = "outage detection policies"

    def __str__(self) -> str:
        return f"Outage detection of {self.utility.code}"


class ReminderSchedule(models.Model):
    """When the evening-before reminder of a planned outage goes out, per utility. No row means the
    defaults: the day before, at 18:00 local time."""

    utility = models.OneToOneField(
        Utility, on_delete=models.CASCADE, related_name="outage_reminder", primary_key=True
    )
    enabled = models.BooleanField(default=True)
    days_before = models.PositiveSmallIntegerField(
        default=1, validators=[MaxValueValidator(7)], help_text="1 = the day before the outage."
    )
    local_time = models.TimeField(default=time(18, 0), help_text="In the utility's time zone.")

    def __str__(self) -> str:
        return f"Outage reminders of {self.utility.code}"


class Outage(models.Model):
    class Kind(models.TextChoices):
        PLANNED = "planned", "Planned"
        UNPLANNED = "unplanned", "Unplanned"

    class Source(models.TextChoices):
        STAFF = "staff", "Entered by staff"
        METERS = "meters", "Detected from the meters"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        PUBLISHED = "published", "Published"
        IN_PROGRESS = "in_progress", "In progress"
        RESTORED = "restored", "Restored"
        CANCELLED = "cancelled", "Cancelled"

    utility = models.ForeignKey(Utility, on_delete=models.PROTECT, related_name="outages")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PLANNED)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT)
    reason = models.CharField(max_length=300, help_text="Shown to consumers.")
    planned_start = models.DateTimeField(
        help_text="Planned: when the supply goes off. Unplanned: when it went off."
    )
    planned_end = models.DateTimeField(
        help_text="Planned: when it comes back. Unplanned: the estimated restoration."
    )
    actual_start = models.DateTimeField(null=True, blank=True)
    actual_end = models.DateTimeField(null=True, blank=True)
    areas = models.ManyToManyField(GridArea, blank=True, related_name="+")
    feeders = models.ManyToManyField(Feeder, blank=True, related_name="+")
    transformers = models.ManyToManyField(Transformer, blank=True, related_name="+")
    meters = models.ManyToManyField(Meter, blank=True, related_name="+")
    # Each publish or reschedule is a new version: notices are keyed by it, so a retried publish
    # sends nothing twice and a reschedule sends again.
    version = models.PositiveIntegerField(default=0)
    published_at = models.DateTimeField(null=True, blank=True)
    notice_given_at = models.DateTimeField(
        null=True, blank=True, help_text="When consumers were told of the schedule in force."
    )
    late_notice = models.BooleanField(default=False)
    reminded_version = models.PositiveIntegerField(null=True, blank=True)
    # A planned outage larger than a chunk is published with its snapshot's first chunk; its
    # notice's stream writes the rest a chunk a task, each chunk with its people (services/stream.py).
    snapshot_through = models.BigIntegerField(
        null=True,
        blank=True,
        editable=False,
        help_text="While its snapshot is still being written: the last meter written (by id). "
        "Empty once the snapshot holds every meter of the scope.",
    )
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.STAFF)
    detected_at = models.DateTimeField(
        null=True, blank=True, help_text="When the meters' failures were grouped into it."
    )
    confirmed_at = models.DateTimeField(
        null=True, blank=True, help_text="When staff confirmed an outage the meters reported."
    )
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    merged_into = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="merged",
        help_text="Staff merged this detected outage into that one.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-planned_start", "-id"]
        indexes = [models.Index(fields=["utility", "status", "planned_start"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(planned_end__gt=models.F("planned_start")),
                name="outage_planned_end_after_start",
            )
        ]
        permissions = [
            ("publish_outage", "Can publish, reschedule, cancel, start and restore outages")
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.reason}"

    @property
    def is_open(self) -> bool:
        return self.status in (self.Status.PUBLISHED, self.Status.IN_PROGRESS)


class AffectedMeter(models.Model):
    """The outage's scope resolved to meters and accounts when it was published: notices,
    the consumer API and compensation all read this snapshot."""

    # Neither has an index of its own: (outage, id) and (account, outage) lead with them, and a
    # city's snapshot of a million rows writes one index fewer.
    # A city's snapshot is a million rows written in the publishing transaction, each row's
    # outage, meter and account copied from the rows the same statement reads. The database does
    # not check them again one by one at commit (three lookups, each locking the row it finds: 14 s
    # of a 1M publication); Django keeps their deletion rules (PROTECT, CASCADE) as it always does.
    outage = models.ForeignKey(
        Outage,
        on_delete=models.CASCADE,
        related_name="affected",
        db_index=False,
        db_constraint=False,
    )
    meter = models.ForeignKey(
        Meter, on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    account = models.ForeignKey(
        ConsumerAccount,
        null=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    # Written later, by detection, for the few meters that report their own failure: indexed
    # where set (affected_period), so a city's publication writes no index entry for it.
    period = models.ForeignKey(
        SupplyPeriod,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="affected",
        db_index=False,
        help_text="The meter's own failure and restoration in this outage, when it reported them.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["outage", "meter"], name="affected_meter_once")
        ]
        indexes = [
            models.Index(fields=["account", "outage"]),
            # A streamed notice pages through a city's snapshot in id order, 5,000 at a time.
            models.Index(fields=["outage", "id"], name="affected_outage_page"),
            models.Index(
                fields=["period"], condition=Q(period__isnull=False), name="affected_period"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.meter} in outage {self.outage_id}"


class OutageNotice(models.Model):
    """The notice of one schedule version of a planned outage to one affected account: when it
    reached the account and by which channel. The notice standard (DOMAIN.md §3) measures each
    account's notice from `sent_at`: a late or failed delivery is a late notice for that account
    alone. Written set-based at publish and reschedule (one row per account), then settled by
    outages.services.outage_notices_settle once the pushes to the account's people are answered:
    reached by the app, or an SMS to the account's registered mobile."""

    class Status(models.TextChoices):
        WAITING = "waiting", "Waiting for the app push"
        SMS = "sms", "SMS to send"
        SENDING = "sending", "SMS being sent"
        SENT = "sent", "Delivered"
        FAILED = "failed", "Not delivered"
        DROPPED = "dropped", "Not sent: rescheduled, cancelled or begun"

    class Channel(models.TextChoices):
        NONE = "", "None"
        PUSH = "push", "App push"
        SMS = "sms", "SMS to the registered mobile"

    UNFINISHED = (Status.WAITING, Status.SMS, Status.SENDING)

    # Written a city at a time (one row per account) in the publishing transaction, from the
    # snapshot's own rows: not checked again one by one by the database (see AffectedMeter).
    outage = models.ForeignKey(
        Outage, on_delete=models.CASCADE, related_name="notices", db_constraint=False
    )
    version = models.PositiveIntegerField(help_text="The schedule version it announces.")
    account = models.ForeignKey(
        ConsumerAccount, on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.WAITING)
    channel = models.CharField(max_length=4, choices=Channel.choices, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True, help_text="When it reached the account.")
    sms_to = models.CharField(max_length=16, blank=True)
    sms_attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claim = models.UUIDField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # Also the index that reads an outage's notices (evaluation, the admin summary).
            models.UniqueConstraint(
                fields=["outage", "version", "account"], name="one_notice_per_account_version"
            )
        ]
        indexes = [
            # The sweeper reads only notices still on their way.
            models.Index(
                fields=["status", "outage"],
                condition=Q(status__in=["waiting", "sms", "sending"]),
                name="outage_notice_unfinished",
            )
        ]

    def __str__(self) -> str:
        return f"Notice v{self.version} of outage {self.outage_id} to account {self.account_id}"


class OutageEvent(models.Model):
    """The outage's history: every state change and schedule change, who made it and what changed."""

    outage = models.ForeignKey(Outage, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=32)
    changes = models.JSONField(default=dict, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        # No time here: a bare UTC time would pass for a local one (the admin shows `at` in the
        # utility's zone beside it).
        return f"{self.action} (outage #{self.outage_id})"


class Compensation(models.Model):
    """What one consumer account is owed for one failed standard at one event. Unique per
    (account, standard, event), so the engine may run any number of times."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending (exemption window open)"
        CREDITED = "credited", "Credited"
        CANCELLED = "cancelled", "Cancelled (exemption approved)"

    utility = models.ForeignKey(Utility, on_delete=models.PROTECT, related_name="+")
    account = models.ForeignKey(
        ConsumerAccount, on_delete=models.PROTECT, related_name="compensations"
    )
    standard = models.CharField(max_length=24, choices=Standard.choices)
    event_key = models.CharField(max_length=80, help_text="outage:<id> or relay:<id>.")
    outage = models.ForeignKey(
        Outage, null=True, blank=True, on_delete=models.PROTECT, related_name="compensations"
    )
    relay_command = models.ForeignKey(
        RelayCommand, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=300, help_text="Why, as the consumer reads it.")
    details = models.JSONField(default=dict, blank=True)
    failure_at = models.DateTimeField(help_text="When the standard was missed.")
    exemption_deadline = models.DateTimeField()
    pay_by = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    credited_at = models.DateTimeField(null=True, blank=True)
    ledger_entry = models.ForeignKey(
        LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-failure_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "standard", "event_key"], name="one_compensation_per_event"
            )
        ]
        indexes = [
            models.Index(fields=["status", "exemption_deadline"]),
            models.Index(fields=["standard", "event_key"]),
        ]

    def __str__(self) -> str:
        # The account's utility is the compensation's own, and str(account) loads it anyway.
        minor_unit = self.account.utility.currency_minor_unit
        amount = money_text(self.amount, currency=self.currency, minor_unit=minor_unit)
        return f"{self.get_standard_display()}: {amount} to {self.account}"


class ExemptionRequest(models.Model):
    """A force-majeure request for one event and standard: filed by staff within the exemption
    window, decided by an approver. Approved, it cancels every still-pending compensation of that
    event and standard."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    utility = models.ForeignKey(Utility, on_delete=models.PROTECT, related_name="+")
    standard = models.CharField(max_length=24, choices=Standard.choices)
    event_key = models.CharField(max_length=80)
    outage = models.ForeignKey(
        Outage, null=True, blank=True, on_delete=models.PROTECT, related_name="exemptions"
    )
    justification = models.TextField()
    filed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    filed_at = models.DateTimeField(default=timezone.now)
    deadline = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-filed_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["standard", "event_key"],
                condition=Q(status__in=["pending", "approved"]),
                name="one_live_exemption_per_event",
            )
        ]
        permissions = [("decide_exemptionrequest", "Can approve or reject exemption requests")]

    def __str__(self) -> str:
        return f"Exemption {self.pk}: {self.get_standard_display()} at {self.event_key}"


class Disconnection(RelayCommand):
    """Disconnect orders as the guaranteed-standards desk sees them (to mark one as wrongful)."""

    class Meta:
        proxy = True
        verbose_name = "disconnection (standards review)"
        verbose_name_plural = "disconnections (standards review)"
