from __future__ import annotations

import hashlib
from datetime import UTC

from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from accounts.models import ConsumerAccount, Utility


class GridArea(models.Model):
    utility = models.ForeignKey(Utility, on_delete=models.PROTECT, related_name="grid_areas")
    code = models.CharField(max_length=32)
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["utility", "code"]
        constraints = [models.UniqueConstraint(fields=["utility", "code"], name="area_code_unique")]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


# Where a feeder or transformer supplies, in the words its consumers use. The outage notice names
# the place from these (outages.selectors.outage_place), never from an equipment code or name.
LOCALITY_HELP = (
    "The neighbourhood or block it supplies, as its consumers say it in the utility's language: "
    '"Salmiya, block 4". Outage notices name it; left empty, they name the feeder\'s locality '
    "or the area."
)
STREETS_HELP = (
    'The streets it supplies, as consumers know them: "streets 1–12". Optional; outage '
    "notices add it after the locality."
)
ENGLISH_HELP = (
    "The same in English, when the words above are in another language (Arabic, Hindi): "
    "notices to English readers use it."
)


class Feeder(models.Model):
    area = models.ForeignKey(GridArea, on_delete=models.PROTECT, related_name="feeders")
    code = models.CharField(max_length=32)
    name = models.CharField(max_length=200)
    locality = models.CharField(max_length=120, blank=True, help_text=LOCALITY_HELP)
    streets = models.CharField(max_length=200, blank=True, help_text=STREETS_HELP)
    locality_en = models.CharField(
        "locality in English", max_length=120, blank=True, help_text=ENGLISH_HELP
    )
    streets_en = models.CharField(
        "streets in English", max_length=200, blank=True, help_text=ENGLISH_HELP
    )

    class Meta:
        ordering = ["area", "code"]
        constraints = [models.UniqueConstraint(fields=["area", "code"], name="feeder_code_unique")]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class Transformer(models.Model):
    """A distribution transformer: the smallest place in the grid an outage is planned for."""

    feeder = models.ForeignKey(Feeder, on_delete=models.PROTECT, related_name="transformers")
    code = models.CharField(max_length=32)
    name = models.CharField(max_length=200, blank=True)
    locality = models.CharField(max_length=120, blank=True, help_text=LOCALITY_HELP)
    streets = models.CharField(max_length=200, blank=True, help_text=STREETS_HELP)
    locality_en = models.CharField(
        "locality in English", max_length=120, blank=True, help_text=ENGLISH_HELP
    )
    streets_en = models.CharField(
        "streets in English", max_length=200, blank=True, help_text=ENGLISH_HELP
    )

    class Meta:
        ordering = ["feeder", "code"]
        constraints = [
            models.UniqueConstraint(fields=["feeder", "code"], name="transformer_code_unique")
        ]

    def __str__(self) -> str:
        return self.name or self.code


class Meter(models.Model):
    class PaymentMode(models.TextChoices):
        PREPAID = "prepaid", "Prepaid"
        POSTPAID = "postpaid", "Postpaid"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        DISCONNECTED = "disconnected", "Disconnected"
        REMOVED = "removed", "Removed"

    class Relay(models.TextChoices):
        CLOSED = "closed", "Closed (supply on)"
        OPEN = "open", "Open (supply off)"
        UNKNOWN = "unknown", "Unknown"

    utility = models.ForeignKey(Utility, on_delete=models.PROTECT, related_name="meters")
    serial = models.CharField(max_length=40)
    account = models.ForeignKey(
        ConsumerAccount, null=True, blank=True, on_delete=models.PROTECT, related_name="meters"
    )
    payment_mode = models.CharField(
        max_length=8, choices=PaymentMode.choices, default=PaymentMode.PREPAID
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    relay = models.CharField(max_length=8, choices=Relay.choices, default=Relay.CLOSED)
    rated_capacity_kw = models.DecimalField(
        max_digits=8,
        decimal_places=2,
        validators=[MinValueValidator(0)],
        help_text="The most the meter can pass; bounds a 15-minute reading at kW × 250 Wh.",
    )
    transformer = models.ForeignKey(
        Transformer, null=True, blank=True, on_delete=models.PROTECT, related_name="meters"
    )
    installed_at = models.DateTimeField(default=timezone.now)
    last_communication_at = models.DateTimeField(null=True, blank=True)
    last_reading_at = models.DateTimeField(
        null=True, blank=True, help_text="Start of the newest interval."
    )

    class Meta:
        ordering = ["utility", "serial"]
        constraints = [
            models.UniqueConstraint(fields=["utility", "serial"], name="meter_serial_unique")
        ]
        indexes = [
            models.Index(fields=["account", "status"]),
            # The outage planner's grid tree counts supplied meters and accounts per transformer
            # of a utility in one grouped query: an index-only scan of this, not of the table.
            models.Index(
                fields=["utility", "transformer", "account"],
                name="meter_grid_counts",
                condition=models.Q(transformer__isnull=False) & ~models.Q(status="removed"),
            ),
            # Prepaid meters whose supply is off: the deferred-reconnect sweep (billing.relay).
            models.Index(
                fields=["account"],
                condition=models.Q(relay="open", payment_mode="prepaid")
                & ~models.Q(status="removed"),
                name="meter_prepaid_relay_open",
            ),
            # Postpaid meters in service: the monthly bill issuance (billing.bills).
            models.Index(
                fields=["utility", "account"],
                condition=models.Q(payment_mode="postpaid") & ~models.Q(status="removed"),
                name="meter_postpaid_in_service",
            ),
            # Meters not reporting (the dashboard, the meter list's filter). last_reading_at is
            # written at most every TOUCH_EVERY (meters.services), so this index is not rewritten
            # by every 15-minute push.
            models.Index(
                fields=["utility", "last_reading_at"],
                condition=models.Q(status__in=["active", "disconnected"]),
                name="meter_last_reading",
            ),
        ]

    def __str__(self) -> str:
        return self.serial

    @property
    def max_wh_per_interval(self) -> int:
        return int(self.rated_capacity_kw * 250)


class MeterAssignment(models.Model):
    """Which account a meter served, and when. The current one has no end."""

    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="assignments")
    account = models.ForeignKey(
        ConsumerAccount, on_delete=models.PROTECT, related_name="meter_assignments"
    )
    start = models.DateTimeField()
    end = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["meter", "start"]
        constraints = [
            models.UniqueConstraint(
                fields=["meter"],
                condition=models.Q(end__isnull=True),
                name="one_open_assignment_per_meter",
            )
        ]

    def __str__(self) -> str:
        return f"{self.meter} → {self.account} from {self.start:%Y-%m-%d}"


class MeterDay(models.Model):
    """One meter's 96 quarter-hours of one UTC day: the storage of every reading.

    `values` packs 96 little-endian int32 Wh, `quality` 96 bytes (see meters.storage.Quality). A UTC day
    always has 96 quarter-hours, so local days of 92 or 100 are read across two rows, never stored oddly.
    Why this layout rather than a row per reading: docs/storage.md.
    """

    pk = models.CompositePrimaryKey("meter_id", "day")
    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, db_index=False, related_name="+")
    day = models.DateField()
    values = models.BinaryField()
    quality = models.BinaryField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "meters_meterday"
        # Billing finds the rows changed since its last pass by this index.
        indexes = [models.Index(fields=["updated_at", "meter", "day"], name="meterday_changes")]

    def __str__(self) -> str:
        return f"{self.meter_id} {self.day}"


class ReadingCorrection(models.Model):
    """The audit trail: every time a stored interval was replaced by a different value."""

    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="corrections")
    interval_start = models.DateTimeField()
    old_wh = models.IntegerField(null=True)
    old_quality = models.CharField(max_length=10)
    new_wh = models.IntegerField(null=True)
    new_quality = models.CharField(max_length=10)
    batch = models.ForeignKey("IngestBatch", null=True, on_delete=models.SET_NULL, related_name="+")
    corrected_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["meter", "interval_start", "corrected_at"]
        indexes = [models.Index(fields=["meter", "interval_start"])]

    def __str__(self) -> str:
        return (
            f"{self.meter_id} {self.interval_start.astimezone(UTC):%Y-%m-%d %H:%M} UTC: "
            f"{self.old_wh} → {self.new_wh}"
        )


def token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ServiceToken(models.Model):
    """A machine credential for a utility's head-end system. Only its SHA-256 is stored."""

    utility = models.ForeignKey(Utility, on_delete=models.CASCADE, related_name="service_tokens")
    name = models.CharField(max_length=100)
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(
        max_length=12, help_text="The token's first characters, to recognise it."
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    # DRF's IsAuthenticated asks the request's user this.
    is_authenticated = True


class IngestBatch(models.Model):
    """One batch received from a head-end: what it held and what became of it."""

    # Indexed by ingestbatch_received (utility, received_at), whose first column serves the
    # foreign key too: no second index on utility alone.
    utility = models.ForeignKey(Utility, on_delete=models.CASCADE, related_name="+", db_index=False)
    token = models.ForeignKey(ServiceToken, null=True, on_delete=models.SET_NULL, related_name="+")
    source = models.CharField(max_length=16)  # json, csv, file
    external_id = models.CharField(
        max_length=100, blank=True, help_text="The head-end's own batch id."
    )
    received_at = models.DateTimeField(default=timezone.now)
    readings = models.PositiveIntegerField(default=0)
    stored = models.PositiveIntegerField(default=0)
    corrected = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    supply_pending = models.BooleanField(
        default=False,
        help_text="Events: its power failures and restorations are stored but not yet folded "
        "into the meters' supply periods (meters.events.supply_periods_fold).",
    )

    class Meta:
        ordering = ["-received_at"]
        verbose_name_plural = "ingest batches"
        indexes = [
            # The dashboard's batches received today, per utility.
            models.Index(fields=["utility", "received_at"], name="ingestbatch_received"),
            # The batches whose supply periods are still to be folded: a handful at any time.
            models.Index(
                fields=["utility"],
                condition=models.Q(supply_pending=True),
                name="ingestbatch_supply_pending",
            ),
        ]

    def __str__(self) -> str:
        return f"batch {self.pk} ({self.readings} readings)"


class MeterEvent(models.Model):
    """Something a meter reported through the head-end: its supply failed or came back, its cover
    was opened, its relay switched … Stored once per meter and event id, or per meter, kind and
    time when the head-end gives no id (meters.events). The kinds and the IEC 61968-9
    EndDeviceEvent type codes that map to them: docs/events.md."""

    class Kind(models.TextChoices):
        POWER_OFF = "power_off", "Supply failed (last gasp)"
        POWER_ON = "power_on", "Supply restored"
        COVER_OPEN = "cover_open", "Cover opened"
        MAGNETIC_TAMPER = "magnetic_tamper", "Magnetic tamper"
        NEUTRAL_TAMPER = "neutral_tamper", "Neutral tamper"
        BYPASS = "bypass", "Meter bypassed"
        REVERSE_CURRENT = "reverse_current", "Reverse current"
        RELAY_OPEN = "relay_open", "Relay opened"
        RELAY_CLOSED = "relay_closed", "Relay closed"
        OVERLOAD = "overload", "Load over the sanctioned limit"

    TAMPER_KINDS = ("cover_open", "magnetic_tamper", "neutral_tamper", "bypass", "reverse_current")
    SUPPLY_KINDS = ("power_off", "power_on")
    RELAY_KINDS = ("relay_open", "relay_closed")

    # Both indexed by the constraints and indexes below, whose first columns they are. A storm
    # writes tens of thousands of events a second, each checked against its foreign keys at
    # commit: the meter's is kept, the utility (the meter's own, copied for the admin's scoping) and
    # the batch are not checked by the database.
    utility = models.ForeignKey(
        Utility, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="+", db_index=False)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    occurred_at = models.DateTimeField(help_text="When the meter says it happened.")
    received_at = models.DateTimeField(default=timezone.now)
    external_id = models.CharField(
        max_length=64, blank=True, help_text="The head-end's id of the event, when it gives one."
    )
    code = models.CharField(
        max_length=24, blank=True, help_text="The IEC 61968-9 EndDeviceEvent type as sent."
    )
    details = models.JSONField(
        default=dict, blank=True, help_text="What came with it: off_since, load_kw …"
    )
    batch = models.ForeignKey(
        "IngestBatch",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["meter", "kind", "occurred_at"], name="meter_event_once"
            ),
            models.UniqueConstraint(
                fields=["meter", "external_id"],
                condition=~models.Q(external_id=""),
                name="meter_event_id_once",
            ),
        ]
        indexes = [
            # A meter's newest events (its status, its timeline in the admin).
            models.Index(fields=["meter", "occurred_at"], name="meterevent_meter_time"),
            # The admin's list of a utility's events, newest first.
            models.Index(fields=["utility", "received_at"], name="meterevent_received"),
            # A batch's failures and restorations, folded into supply periods after it commits.
            models.Index(
                fields=["batch"],
                condition=models.Q(kind__in=["power_off", "power_on"]),
                name="meterevent_supply_batch",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} at meter {self.meter_id}"


class SupplyPeriod(models.Model):
    """A meter without supply, from its failure to its restoration, as its own events say: the
    fact the outage detector groups and the guaranteed standards measure each consumer by. Kept
    in time order whatever order the events arrived in (meters.events.supply_periods_rebuild).

    `state` is the detector's: new until it has looked, then part of an outage of the grid, or a
    fault at this consumer alone."""

    class State(models.TextChoices):
        NEW = "new", "Not yet looked at"
        OUTAGE = "outage", "Part of an outage"
        SINGLE = "single", "This meter alone"

    # As for MeterEvent: the meter's key is checked by the database, the copies beside it are not.
    utility = models.ForeignKey(
        Utility, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="+", db_index=False)
    off_at = models.DateTimeField()
    on_at = models.DateTimeField(null=True, blank=True, help_text="Empty while still off.")
    off_event = models.ForeignKey(
        MeterEvent,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    on_event = models.ForeignKey(
        MeterEvent,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    state = models.CharField(max_length=8, choices=State.choices, default=State.NEW)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-off_at"]
        constraints = [
            models.UniqueConstraint(fields=["meter", "off_at"], name="supply_period_once"),
            models.UniqueConstraint(
                fields=["meter"],
                condition=models.Q(on_at__isnull=True),
                name="one_open_supply_period",
            ),
            models.CheckConstraint(
                condition=models.Q(on_at__isnull=True) | models.Q(on_at__gt=models.F("off_at")),
                name="supply_period_on_after_off",
            ),
        ]
        indexes = [
            # The detector reads only what it has not looked at yet.
            models.Index(
                fields=["utility", "off_at"],
                condition=models.Q(state="new"),
                name="supply_period_new",
            ),
        ]

    def __str__(self) -> str:
        return f"meter {self.meter_id} off from {self.off_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
