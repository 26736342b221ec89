from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from accounts.models import ConsumerAccount, Utility
from core.money import money_text
from core.timebuckets import moment_text

# Money columns: enough for any account, and 3 decimals for the currencies that have them (KWD).
MONEY = {"max_digits": 14, "decimal_places": 3}


class LedgerEntry(models.Model):
    """One movement of money on a consumer account. Rows are never changed or deleted (on PostgreSQL
    a trigger refuses it); a mistake is undone by another entry. The balance is the sum of amounts."""

    class Kind(models.TextChoices):
        TOPUP = "topup", "Top-up"
        ENERGY_CHARGE = "energy_charge", "Energy charge"
        ENERGY_ADJUSTMENT = "energy_adjustment", "Energy charge adjustment (corrected readings)"
        FIXED_CHARGE = "fixed_charge", "Fixed daily charge"
        BILL = "bill", "Monthly bill"
        LATE_FINE = "late_fine", "Late payment fine"
        DEBT_RECOVERY = "debt_recovery", "Debt recovery"
        DEBT_TRANSFER = "debt_transfer", "Arrears carried as debt"
        COMPENSATION = "compensation", "Compensation (guaranteed standards)"
        REFUND = "refund", "Refund"
        ADJUSTMENT = "adjustment", "Staff adjustment"
        SERVICE_CHARGE = "service_charge", "Service charge (a paid cost estimate)"
        CREDIT_TRANSFER = "credit_transfer", "Credit carried between accounts (moving)"
        DEBT_WRITE_OFF = "debt_write_off", "Debt written off"
        EMERGENCY_CREDIT_FEE = "emergency_credit_fee", "Emergency credit fee"
        DEBT_RESCHEDULE = (
            "debt_reschedule",
            "Unpaid balance rescheduled as debt (reconnection on part payment)",
        )

    account = models.ForeignKey(ConsumerAccount, on_delete=models.PROTECT, related_name="ledger")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    amount = models.DecimalField(
        **MONEY, help_text="Positive credits the account, negative debits it."
    )
    balance_after = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    key = models.CharField(
        max_length=200, unique=True, help_text="What makes this entry happen once."
    )
    description = models.CharField(max_length=300)
    created_at = models.DateTimeField(default=timezone.now)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    kwh = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    rate = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True, help_text="Per kWh."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.TextField(blank=True)
    meta = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["account", "id"]
        indexes = [
            models.Index(fields=["account", "created_at"]),
            models.Index(fields=["account", "kind", "created_at"]),
        ]
        verbose_name_plural = "ledger entries"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {_money(self, self.amount)}"


class Balance(models.Model):
    """The sum of an account's ledger, kept beside it. Every posting locks this row, which is what
    makes concurrent top-ups and charges safe; `billing.selectors.ledger_check` proves it equal
    to the ledger."""

    account = models.OneToOneField(
        ConsumerAccount, on_delete=models.PROTECT, related_name="balance", primary_key=True
    )
    amount = models.DecimalField(**MONEY, default=0)
    debt = models.DecimalField(
        **MONEY, default=0, validators=[MinValueValidator(0)], help_text="Arrears still to recover."
    )
    updated_at = models.DateTimeField(default=timezone.now)
    # The open energy day (billing.energy_days): the newest local day's energy charge, already in
    # `amount` but not yet a ledger entry, so that a day of 96 pushes is one entry, not 96.
    open_day = models.DateField(
        null=True, blank=True, help_text="The local day whose energy charge is held here."
    )
    open_amount = models.DecimalField(
        **MONEY,
        default=0,
        db_default=0,
        help_text="Its charge so far (negative): in the balance, not the ledger.",
    )
    open_wh = models.BigIntegerField(default=0, db_default=0)
    open_seq = models.PositiveIntegerField(
        default=0,
        db_default=0,
        help_text="How many times an open day was posted: part of each posting's key.",
    )

    class Meta:
        indexes = [
            # The daily debt recovery's work: the accounts that still owe, not every balance.
            models.Index(
                fields=["account"], condition=models.Q(debt__gt=0), name="balance_in_debt"
            ),
            # The close of a day's work: the balances with an open day, by day. Its condition names
            # no column a push changes, so a push's update of the row can be HOT.
            models.Index(
                fields=["open_day", "account"],
                condition=models.Q(open_day__isnull=False),
                name="balance_open_day",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account}: {_money(self, self.amount)}"


class RelayCommand(models.Model):
    """A disconnect or reconnect order for a meter, and what became of it at the head-end."""

    class Action(models.TextChoices):
        DISCONNECT = "disconnect", "Disconnect"
        RECONNECT = "reconnect", "Reconnect"

    class Status(models.TextChoices):
        WAITING = "waiting", "Waiting for an allowed time"
        SENT = "sent", "Sent to the head-end"
        DONE = "done", "Confirmed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    meter = models.ForeignKey(
        "meters.Meter", on_delete=models.PROTECT, related_name="relay_commands"
    )
    account = models.ForeignKey(
        ConsumerAccount, on_delete=models.PROTECT, related_name="relay_commands"
    )
    action = models.CharField(max_length=10, choices=Action.choices)
    reason = models.CharField(max_length=40)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.WAITING)
    created_at = models.DateTimeField(default=timezone.now)
    not_before = models.DateTimeField(
        help_text="The earliest time the command may go (friendly hours)."
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the head-end accepted the order."
    )
    confirmed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the meter reported its relay switched as ordered (its own event's time).",
    )
    payment_notified_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="For a reconnect after payment: when the payment was notified.",
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "not_before"]),
            # The dashboard's "sent today": the day's commands, not every command ever sent.
            models.Index(
                fields=["sent_at"], condition=models.Q(sent_at__isnull=False), name="relay_sent_at"
            ),
            # The reconnections of the last weeks that the standards engine measures every quarter
            # hour (outages.standards.reconnections_evaluate), by when they were carried out or
            # confirmed: not every disconnect and reconnect ever ordered.
            models.Index(
                fields=["completed_at"],
                condition=models.Q(action="reconnect"),
                name="relay_reconnect_completed",
            ),
            models.Index(
                fields=["confirmed_at"],
                condition=models.Q(action="reconnect"),
                name="relay_reconnect_confirmed",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["meter"],
                condition=models.Q(status__in=["waiting", "sent"]),
                name="one_pending_relay_command_per_meter",
            )
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.meter} ({self.status})"


class BillingPolicy(models.Model):
    """A utility's prepaid and collection rules, as data."""

    utility = models.OneToOneField(
        Utility, on_delete=models.CASCADE, related_name="billing_policy", primary_key=True
    )
    emergency_credit = models.DecimalField(
        **MONEY,
        default=0,
        help_text="How far below zero a prepaid balance may go before disconnection.",
    )
    debt_recovery_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=25,
        help_text="Share of each top-up that repays arrears.",
    )
    friendly_night_start = models.TimeField(
        default="18:00", help_text="No disconnection from this local time …"
    )
    friendly_night_end = models.TimeField(default="08:00", help_text="… until this one.")
    no_disconnect_on_weekends = models.BooleanField(default=True)
    no_disconnect_on_holidays = models.BooleanField(default=True)
    bill_due_days = models.PositiveSmallIntegerField(default=21)
    max_topup = models.DecimalField(
        **MONEY,
        null=True,
        blank=True,
        default=10000,
        help_text="The largest single top-up accepted; empty: no cap (Kuwait takes any amount "
        "from 1 KWD up). Absurd amounts are refused whatever this says.",
    )
    payment_link_hours = models.PositiveSmallIntegerField(default=24)
    # Postpaid: reminders and the late path (Egypt's regime; see docs/postpaid.md). Off when empty.
    bill_due_reminder_days = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Remind consumers this many days before a bill is due; empty: no reminder.",
    )
    removal_months_late = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="A consumer more than this many months late with a bill gets a formal notice of "
        "meter removal (Egypt: 2); empty: no late path.",
    )
    removal_notice_days = models.PositiveSmallIntegerField(
        default=30,
        validators=[MinValueValidator(1)],
        help_text="Days from the formal notice until the meter may be removed, unless the arrears "
        "are paid (Egypt: one month).",
    )

    class MoveOutCredit(models.TextChoices):
        REFUND = "refund", "Refund it to the consumer"
        CARRY = "carry", "Carry it to the consumer's new account"

    move_out_credit = models.CharField(
        max_length=8,
        choices=MoveOutCredit.choices,
        default=MoveOutCredit.REFUND,
        help_text="What happens to a prepaid balance left at move-out, unless staff choose otherwise.",
    )

    # Affordability (docs/affordability.md). Each rule is off where its field is empty or false.
    emergency_credit_on_request = models.BooleanField(
        default=False,
        help_text="The emergency credit is not automatic: the consumer sees it and takes it in the "
        "app (UK prepay meters, India's 7 days); off: it is an automatic allowance below zero.",
    )
    emergency_credit_fee = models.DecimalField(
        **MONEY, default=0, help_text="What taking emergency credit costs (0: free)."
    )
    emergency_credit_days = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Taken emergency credit must be repaid within this many days (India: 7); "
        "empty: until the next top-up, with no date.",
    )
    debt_recovery_daily_cap = models.DecimalField(
        **MONEY,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="The most recovered from a consumer's debt in one local day, top-up shares and "
        "the daily rate together; empty: no cap.",
    )
    debt_recovery_daily_rate = models.DecimalField(
        **MONEY,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="A fixed amount recovered each local day from a prepaid balance while debt "
        "remains (UK suppliers); empty: debt is recovered from top-ups only.",
    )
    reconnect_min_payment_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="A consumer disconnected for non-payment is reconnected once a payment covers "
        "this share of the dues, the rest rescheduled as debt (India: 50); empty: only when the "
        "balance is above zero again.",
    )
    auto_topup_enabled = models.BooleanField(
        default=True, help_text="Consumers may set automatic top-ups with a saved card."
    )
    shared_access_enabled = models.BooleanField(
        default=True, help_text="Holders may share an account with other mobile numbers."
    )
    max_shares_per_account = models.PositiveSmallIntegerField(default=5)
    pay_for_others_enabled = models.BooleanField(
        default=True, help_text="Anyone signed in may top up an account by its consumer id."
    )
    runout_cover_days = models.PositiveSmallIntegerField(
        default=7,
        validators=[MinValueValidator(1)],
        help_text="The run-out forecast's suggested top-up keeps the supply on this many days "
        "past the earliest disconnection.",
    )

    class Meta:
        verbose_name_plural = "billing policies"

    def __str__(self) -> str:
        return f"Billing policy of {self.utility}"


class Tariff(models.Model):
    """What a utility charges for energy, valid over a date range. Rates are per kWh in the currency's
    major unit with up to 6 decimals (2 fils/kWh is 0.002000 KWD): never floats."""

    class Kind(models.TextChoices):
        FLAT = "flat", "Flat rate"
        PROGRESSIVE = "progressive", "Progressive monthly slabs"
        TIME_OF_USE = "tou", "Time of use"

    utility = models.ForeignKey(Utility, on_delete=models.PROTECT, related_name="tariffs")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    payment_mode = models.CharField(
        max_length=8, choices=[("prepaid", "Prepaid"), ("postpaid", "Postpaid")]
    )
    valid_from = models.DateField()
    valid_to = models.DateField(
        null=True, blank=True, help_text="Last day it applies; empty: until replaced."
    )
    flat_rate = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    fixed_daily_charge = models.DecimalField(**MONEY, default=0)

    class Meta:
        ordering = ["utility", "payment_mode", "-valid_from"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()}, from {self.valid_from})"


class TariffSlab(models.Model):
    """Progressive: each kWh of the month from `from_kwh` up to the next slab costs `rate`."""

    tariff = models.ForeignKey(Tariff, on_delete=models.CASCADE, related_name="slabs")
    from_kwh = models.PositiveIntegerField()
    rate = models.DecimalField(max_digits=12, decimal_places=6)

    class Meta:
        ordering = ["tariff", "from_kwh"]
        constraints = [
            models.UniqueConstraint(fields=["tariff", "from_kwh"], name="slab_start_unique")
        ]

    def __str__(self) -> str:
        return f"from {self.from_kwh} kWh: {self.rate}"


class TariffPeriod(models.Model):
    """Time of use: local time windows [start, end) and their rate; the rest of the day is `flat_rate`."""

    tariff = models.ForeignKey(Tariff, on_delete=models.CASCADE, related_name="periods")
    name = models.CharField(max_length=40)
    start = models.TimeField()
    end = models.TimeField()
    rate = models.DecimalField(max_digits=12, decimal_places=6)

    class Meta:
        ordering = ["tariff", "start"]

    def __str__(self) -> str:
        # A window of the utility's local day: its zone named, as every time staff read.
        zone = self.tariff.utility.timezone
        return f"{self.name} {self.start:%H:%M}-{self.end:%H:%M} {zone}: {self.rate}"


class ChargedDay(models.Model):
    """What has been charged for one prepaid meter's UTC day: a copy of the readings as they were
    charged, so that a later change is charged (or refunded) by its difference and nothing twice."""

    pk = models.CompositePrimaryKey("meter_id", "day")
    meter = models.ForeignKey(
        "meters.Meter", on_delete=models.CASCADE, db_index=False, related_name="+"
    )
    day = models.DateField()
    values = models.BinaryField()
    quality = models.BinaryField()
    version = models.PositiveIntegerField(default=0)
    charged_at = models.DateTimeField(
        help_text="The MeterDay's updated_at that was charged: a newer one is a change."
    )
    blocked_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The MeterDay's updated_at that could not be charged (no tariff): skipped until it changes.",
    )

    def __str__(self) -> str:
        return f"{self.meter_id} {self.day} v{self.version}"


class ChargeCursor(models.Model):
    """How far the charging pass has read MeterDay changes (by their updated_at)."""

    name = models.CharField(max_length=20, primary_key=True)
    position = models.DateTimeField()
    # The last change read, with its key: the next pass starts strictly after it.
    meter_id = models.BigIntegerField(null=True, blank=True)
    day = models.DateField(null=True, blank=True)
    rechecked_at = models.DateTimeField(
        null=True, blank=True, help_text="When the pass last looked behind the position."
    )

    def __str__(self) -> str:
        return f"{self.name} at {self.position}"


class ChargeMonth(models.Model):
    """An account's charged energy and exact cost in one local month. Slabs price the month's running
    total, and each posting is the rounded total minus what was posted, so rounding never drifts."""

    account = models.ForeignKey(ConsumerAccount, on_delete=models.PROTECT, related_name="+")
    month = models.DateField(help_text="First day of the local month.")
    wh = models.BigIntegerField(default=0)
    exact_cost = models.DecimalField(max_digits=24, decimal_places=10, default=0)
    posted = models.DecimalField(**MONEY, default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "month"], name="charge_month_unique")
        ]

    def __str__(self) -> str:
        return f"{self.account} {self.month:%Y-%m}"


class TopUp(models.Model):
    class Channel(models.TextChoices):
        APP = "app", "Mobile app"
        WEB = "web", "Website"
        CALL_CENTRE = "call_centre", "Call-centre payment link"
        COUNTER = "counter", "Office counter"
        PAYMENT_CODE = "payment_code", "Payment network (payment code)"
        AUTO = "auto", "Automatic top-up (saved card)"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for payment"
        SUCCEEDED = "succeeded", "Paid"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(ConsumerAccount, on_delete=models.PROTECT, related_name="topups")
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)

    class Purpose(models.TextChoices):
        BALANCE = "balance", "Top up the balance"
        ESTIMATE = "estimate", "Pay a service request's cost estimate"

    channel = models.CharField(max_length=12, choices=Channel.choices)
    purpose = models.CharField(max_length=8, choices=Purpose.choices, default=Purpose.BALANCE)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    gateway = models.CharField(max_length=20, blank=True)
    gateway_reference = models.CharField(max_length=100, blank=True)
    checkout_url = models.URLField(
        max_length=500, blank=True, help_text="The gateway's hosted payment page for this top-up."
    )
    reconcile_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="While pending: when reconciliation next asks the gateway about it.",
    )
    reconcile_note = models.CharField(
        max_length=200, blank=True, help_text="What the gateway answered when last asked."
    )
    receipt_number = models.CharField(max_length=32, blank=True, unique=True, null=True)
    created_at = models.DateTimeField(default=timezone.now)
    paid_at = models.DateTimeField(null=True, blank=True)
    ledger_entry = models.OneToOneField(
        LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["account", "created_at"]),
            # Reconciliation's work: only pending top-ups are in it, however long the history.
            models.Index(
                fields=["reconcile_at"],
                condition=models.Q(status="pending"),
                name="topup_pending_reconcile",
            ),
            # The dashboard's top-ups by channel (paid in the last 30 days) and failed today: the
            # period's rows, not the whole history.
            models.Index(
                fields=["paid_at"], condition=models.Q(status="succeeded"), name="topup_paid_at"
            ),
            models.Index(
                fields=["created_at"], condition=models.Q(status="failed"), name="topup_failed_at"
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["gateway", "gateway_reference"],
                condition=~models.Q(gateway_reference=""),
                name="gateway_reference_unique",
            )
        ]
        permissions = [
            ("reconcile_topup", "Can ask the gateway about pending top-ups and settle them"),
            ("take_counter_payment", "Can record a cash payment at the counter"),
        ]

    def __str__(self) -> str:
        return f"{_money(self, self.amount)} {self.channel} ({self.status})"

    @property
    def checkout_valid_until(self):
        """Until when its hosted checkout takes payment: past it, a pending top-up is expired by
        reconciliation (unless the gateway says it was paid) and a new checkout is started."""
        return self.created_at + timedelta(minutes=settings.PAYMENT_CHECKOUT_VALID_MINUTES)


class IdempotencyRecord(models.Model):
    """The first answer to a client's Idempotency-Key, replayed to its retries."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=100)
    scope = models.CharField(max_length=60)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    body = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "scope", "key"], name="idempotency_key_unique")
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.key}"


class WebhookEvent(models.Model):
    """Every gateway event we accepted, once: a replay of the same event id is answered and ignored."""

    gateway = models.CharField(max_length=20)
    event_id = models.CharField(max_length=100)
    received_at = models.DateTimeField(default=timezone.now)
    payload = models.JSONField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["gateway", "event_id"], name="webhook_event_once")
        ]

    def __str__(self) -> str:
        return f"{self.gateway} {self.event_id}"


class PaymentLink(models.Model):
    """A call-centre link sent by SMS to the registered mobile: one amount, one use, a short life."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(
        ConsumerAccount, on_delete=models.PROTECT, related_name="payment_links"
    )
    amount = models.DecimalField(**MONEY)
    token = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    topup = models.OneToOneField(
        TopUp, null=True, blank=True, on_delete=models.PROTECT, related_name="payment_link"
    )

    def __str__(self) -> str:
        return f"Link for {self.account}: {_money(self, self.amount)}"


class PaymentPartner(models.Model):
    """A payment network that looks up payment codes and pays against them (Egypt's outlets and
    platform). Authenticated by a token of which only the SHA-256 is stored."""

    utility = models.ForeignKey(Utility, on_delete=models.CASCADE, related_name="payment_partners")
    name = models.CharField(max_length=100)
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    is_authenticated = True  # DRF asks request.user this

    def __str__(self) -> str:
        return f"{self.name} ({self.utility.code})"


class PartnerPayment(models.Model):
    partner = models.ForeignKey(PaymentPartner, on_delete=models.PROTECT, related_name="payments")
    reference = models.CharField(max_length=100)
    topup = models.OneToOneField(TopUp, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["partner", "reference"], name="partner_reference_once")
        ]

    def __str__(self) -> str:
        return f"{self.partner} {self.reference}"


class Bill(models.Model):
    """A postpaid month: energy, fixed charges, what is still unpaid, and its fine."""

    class Status(models.TextChoices):
        UNPAID = "unpaid", "Unpaid"
        PAID = "paid", "Paid"
        TRANSFERRED = "transferred", "Carried as debt (conversion to prepaid, or moving out)"
        WRITTEN_OFF = "written_off", "Written off on moving out"

    account = models.ForeignKey(ConsumerAccount, on_delete=models.PROTECT, related_name="bills")
    month = models.DateField(help_text="First day of the local month billed.")
    kwh = models.DecimalField(max_digits=14, decimal_places=3)
    energy_amount = models.DecimalField(**MONEY)
    fixed_amount = models.DecimalField(**MONEY)
    amount = models.DecimalField(**MONEY)
    paid_amount = models.DecimalField(**MONEY, default=0)
    issued_at = models.DateTimeField(default=timezone.now)
    due_date = models.DateField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.UNPAID)
    fined_at = models.DateTimeField(null=True, blank=True)
    fine_amount = models.DecimalField(**MONEY, default=0)
    reminded_at = models.DateTimeField(
        null=True, blank=True, help_text="When the consumer was reminded that it is due soon."
    )

    class Meta:
        ordering = ["account", "month"]
        constraints = [
            models.UniqueConstraint(fields=["account", "month"], name="one_bill_per_month")
        ]
        indexes = [
            # The daily run's work (reminders, fines, arrears, notices): open bills by due date,
            # however many paid bills the years pile up.
            models.Index(
                fields=["due_date"], condition=models.Q(status="unpaid"), name="bill_unpaid_due"
            )
        ]

    def __str__(self) -> str:
        return f"{self.account} {self.month:%Y-%m}: {_money(self, self.amount)}"

    @property
    def unpaid(self):
        return self.amount + self.fine_amount - self.paid_amount


class Conversion(models.Model):
    """An account on its way from postpaid to prepaid: flagged by arrears, carried out by staff."""

    class Status(models.TextChoices):
        FLAGGED = "flagged", "Flagged for conversion"
        DONE = "done", "Converted"

    account = models.ForeignKey(
        ConsumerAccount, on_delete=models.PROTECT, related_name="conversions"
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.FLAGGED)
    reason = models.CharField(max_length=200)
    flagged_at = models.DateTimeField(default=timezone.now)
    done_at = models.DateTimeField(null=True, blank=True)
    done_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    old_meter = models.ForeignKey(
        "meters.Meter", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    new_meter = models.ForeignKey(
        "meters.Meter", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    new_account = models.ForeignKey(
        ConsumerAccount,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The prepaid account that replaced the postpaid contract.",
    )
    arrears = models.DecimalField(**MONEY, default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account"], condition=models.Q(status="flagged"), name="one_open_conversion"
            )
        ]
        permissions = [("convert_meter", "Can carry out a conversion to prepaid")]

    def __str__(self) -> str:
        return f"{self.account}: {self.get_status_display()}"


class RemovalOrder(models.Model):
    """The removal of a postpaid meter and the end of its contract (Egypt's regime).

    Arrears: a consumer more than the policy's months late is sent a formal notice
    (notice_sent); when the notice period is over unpaid the removal is due (removal_due); staff
    confirm it once the meter is taken out and a prepaid one put in (removal_confirmed). Paying the
    arrears named in the notice cancels it (cancelled). Other grounds (tampering, bypass …) are
    recorded by staff with their evidence and are due at once.
    """

    class Ground(models.TextChoices):
        ARREARS = "arrears", "Arrears: more than the allowed months late, after a formal notice"
        TAMPERING = "tampering", "Tampering with the meter or its seals"
        BYPASS = "bypass", "Bypassing the meter"
        SUPPLY_TO_OTHERS = "supply_to_others", "Supplying electricity to others illegally"
        PREVENTING_INSPECTION = "preventing_inspection", "Preventing inspection or maintenance"
        DEMOLITION = "demolition", "Demolition of the premises"
        LOAD_OVER_CONTRACT = (
            "load_over_contract",
            "Load over the contracted load without permission",
        )

    class Status(models.TextChoices):
        NOTICE_SENT = "notice_sent", "Formal notice sent"
        REMOVAL_DUE = "removal_due", "Removal due"
        REMOVAL_CONFIRMED = "removal_confirmed", "Removed; contract ended"
        CANCELLED = "cancelled", "Cancelled"

    OPEN = (Status.NOTICE_SENT, Status.REMOVAL_DUE)

    account = models.ForeignKey(
        ConsumerAccount, on_delete=models.PROTECT, related_name="removal_orders"
    )
    ground = models.CharField(max_length=24, choices=Ground.choices)
    status = models.CharField(max_length=20, choices=Status.choices)
    arrears = models.DecimalField(
        **MONEY, default=0, help_text="What the formal notice asked to be paid."
    )
    arrears_due_before = models.DateField(
        null=True,
        blank=True,
        help_text="The notice's arrears are the bills due before this local day; once none of "
        "them is unpaid the order is cancelled.",
    )
    notice_sent_at = models.DateTimeField(null=True, blank=True)
    removal_due_on = models.DateField(
        null=True, blank=True, help_text="The local day from which the meter may be removed."
    )
    due_at = models.DateTimeField(null=True, blank=True, help_text="When the removal became due.")
    evidence = models.TextField(blank=True, help_text="What staff found (other grounds).")
    evidence_data = models.JSONField(
        default=dict,
        blank=True,
        help_text="Structured evidence: report numbers, readings, photos' ids.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    conversion = models.ForeignKey(
        Conversion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The conversion to prepaid that replaced the removed meter.",
    )
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One open order per account and ground: a retried daily run notifies once.
            models.UniqueConstraint(
                fields=["account", "ground"],
                condition=models.Q(status__in=["notice_sent", "removal_due"]),
                name="one_open_removal_order",
            )
        ]
        indexes = [
            # The daily run finds the notices whose period ends, not every order ever made.
            models.Index(
                fields=["removal_due_on"],
                condition=models.Q(status="notice_sent"),
                name="removal_notice_running",
            )
        ]

    def __str__(self) -> str:
        return f"{self.account}: {self.get_ground_display()} ({self.get_status_display()})"


class Move(models.Model):
    """A tenancy's end or start on a meter, as staff or the utility's systems recorded it, with
    what became of the money: the audit record of every move-out and move-in."""

    class Kind(models.TextChoices):
        MOVE_OUT = "move_out", "Move-out"
        MOVE_IN = "move_in", "Move-in"

    class Credit(models.TextChoices):
        NONE = "", "Nothing left"
        REFUND = "refund", "Refunded"
        CARRY = "carry", "Carried to the new account"

    class Debt(models.TextChoices):
        NONE = "", "No debt"
        CARRY = "carry", "Carried to the new account"
        WRITE_OFF = "write_off", "Written off"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    account = models.ForeignKey(ConsumerAccount, on_delete=models.PROTECT, related_name="moves")
    meters = models.ManyToManyField("meters.Meter", related_name="+")
    at = models.DateTimeField(help_text="The tenancy ends (move-out) or begins (move-in) here.")
    credit = models.CharField(max_length=8, choices=Credit.choices, blank=True)
    credit_amount = models.DecimalField(**MONEY, default=0)
    debt = models.CharField(max_length=10, choices=Debt.choices, blank=True)
    debt_amount = models.DecimalField(**MONEY, default=0)
    carried_to = models.ForeignKey(
        ConsumerAccount, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.TextField(blank=True)
    final_statement = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    source = models.CharField(max_length=10, help_text="admin or api")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # An account closes once: a retried move-out finds this row instead of a second one.
            models.UniqueConstraint(
                fields=["account"], condition=models.Q(kind="move_out"), name="one_move_out"
            ),
            models.UniqueConstraint(
                fields=["account"], condition=models.Q(kind="move_in"), name="one_move_in"
            ),
        ]

    # Set by billing.moves when a retried request finds the move already made.
    replayed = False

    def __str__(self) -> str:
        at = moment_text(self.at, self.account.utility.zone)
        return f"{self.get_kind_display()} {self.account} at {at}"


class SimulatedPayment(models.Model):
    """The simulated gateway's own books, not ours: each checkout it opened, what the payer did
    on its page, and its delivery of the outcome to our webhook. Like a real gateway it keeps
    retrying an undelivered outcome (with backoff, from this table, surviving restarts) and
    answers status queries from it (billing.gateway)."""

    class Outcome(models.TextChoices):
        OPEN = "", "Waiting for payment"
        SUCCEEDED = "succeeded", "Paid"
        FAILED = "failed", "Cancelled by the payer"

    reference = models.CharField(max_length=100, unique=True)
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(help_text="The checkout page refuses payment after this.")
    outcome = models.CharField(max_length=10, choices=Outcome.choices, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    event_id = models.CharField(
        max_length=40, blank=True, help_text="The outcome's event: the same on every delivery."
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="When the outcome is next sent; empty: nothing to send."
    )
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True)

    class Meta:
        indexes = [
            # The delivery queue: only outcomes still to send are in it.
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(next_attempt_at__isnull=False),
                name="simulated_delivery_due",
            )
        ]

    def __str__(self) -> str:
        return f"{self.reference} ({self.get_outcome_display()})"


def _money(row: models.Model, amount) -> str:
    """An amount of a row with an account, in its utility's decimals ("100.00 INR", "1.500 KWD")."""
    utility = row.account.utility
    return money_text(amount, currency=utility.currency, minor_unit=utility.currency_minor_unit)


class TamperCase(models.Model):
    """A meter's tamper, bypass and overload events as one case in its utility's work queue
    (billing.tamper): open while staff look into it; where the utility removes meters on such
    grounds (Egypt), recording the removal ground from the case keeps its events as evidence."""

    class Status(models.TextChoices):
        OPEN = "open", "To review"
        INSPECTING = "inspecting", "Inspection sent"
        REMOVAL = "removal", "Recorded as grounds for removal"
        DISMISSED = "dismissed", "Dismissed"
        RESOLVED = "resolved", "Resolved"

    OPEN_STATUSES = (Status.OPEN, Status.INSPECTING)

    utility = models.ForeignKey(Utility, on_delete=models.PROTECT, related_name="+", db_index=False)
    meter = models.ForeignKey("meters.Meter", on_delete=models.PROTECT, related_name="+")
    account = models.ForeignKey(
        ConsumerAccount, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    kinds = models.JSONField(default=list, help_text="The kinds of event the case holds.")
    events = models.PositiveIntegerField(default=0)
    first_event = models.ForeignKey(
        "meters.MeterEvent", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    first_event_at = models.DateTimeField()
    last_event_at = models.DateTimeField()
    opened_at = models.DateTimeField(default=timezone.now)
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.TextField(blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    removal_order = models.ForeignKey(
        RemovalOrder, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-last_event_at", "-id"]
        constraints = [
            # New events of a meter join its open case rather than opening another.
            models.UniqueConstraint(
                fields=["meter"],
                condition=models.Q(status__in=["open", "inspecting"]),
                name="one_open_tamper_case",
            )
        ]
        indexes = [
            # The work queue: a utility's cases by status, newest first.
            models.Index(fields=["utility", "status", "last_event_at"], name="tampercase_queue")
        ]

    def __str__(self) -> str:
        return f"Tamper case {self.pk} at meter {self.meter_id}"


class EmergencyCredit(models.Model):
    """Emergency credit a consumer took in the app (BillingPolicy.emergency_credit_on_request).

    It moves no money: it lowers the level at which the balance is disconnected by `amount` until
    the balance is back above zero (repaid) or `repay_by` passes (expired). Its fee, if any, is a
    ledger entry. See docs/affordability.md.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "In use"
        REPAID = "repaid", "Repaid"
        EXPIRED = "expired", "Not repaid in time"

    account = models.ForeignKey(
        ConsumerAccount, on_delete=models.PROTECT, related_name="emergency_credits"
    )
    amount = models.DecimalField(**MONEY)
    fee = models.DecimalField(**MONEY, default=0)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    taken_at = models.DateTimeField(default=timezone.now)
    taken_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    repay_by = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    fee_entry = models.OneToOneField(
        LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-taken_at"]
        constraints = [
            # Taken once at a time: a double tap or a retry finds the credit already in use.
            models.UniqueConstraint(
                fields=["account"],
                condition=models.Q(status="active"),
                name="one_active_emergency_credit",
            )
        ]
        indexes = [
            # The daily run's work: credits whose repayment date passes.
            models.Index(
                fields=["repay_by"],
                condition=models.Q(status="active"),
                name="emergency_credit_due",
            )
        ]

    def __str__(self) -> str:
        return f"Emergency credit {_money(self, self.amount)} ({self.get_status_display()})"


class PaymentMethod(models.Model):
    """A card a user saved with the gateway: only the gateway's reusable reference and what a
    person needs to recognise it (brand, last four digits, expiry). Card data never reaches us."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="payment_methods"
    )
    gateway = models.CharField(max_length=20)
    reference = models.CharField(max_length=100, help_text="The gateway's reusable token.")
    brand = models.CharField(max_length=20, blank=True)
    last4 = models.CharField(max_length=4, blank=True)
    exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["gateway", "reference"], name="payment_method_once")
        ]

    def __str__(self) -> str:
        return f"{self.brand} ending {self.last4}"


class AutoTopUp(models.Model):
    """A standing order to top up an account from a saved card: when the balance falls to a level,
    or on a schedule; never more than the monthly cap in one local month. billing.autotopup."""

    class Trigger(models.TextChoices):
        BALANCE = "balance", "When the balance falls to a level"
        SCHEDULE = "schedule", "On a schedule"

    class Frequency(models.TextChoices):
        WEEKLY = "weekly", "Weekly"
        MONTHLY = "monthly", "Monthly"

    account = models.ForeignKey(
        ConsumerAccount, on_delete=models.PROTECT, related_name="auto_topups"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Who set it up, and whose card pays.",
    )
    payment_method = models.ForeignKey(PaymentMethod, on_delete=models.PROTECT, related_name="+")
    trigger = models.CharField(max_length=8, choices=Trigger.choices)
    amount = models.DecimalField(**MONEY)
    threshold = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="Balance trigger: top up at or below this."
    )
    frequency = models.CharField(max_length=8, choices=Frequency.choices, blank=True)
    weekday = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Weekly: 0 = Monday … 6 = Sunday."
    )
    day_of_month = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Monthly: 1 to 28, so that every month has it."
    )
    at_time = models.TimeField(null=True, blank=True, help_text="Schedule: local time.")
    next_run_at = models.DateTimeField(null=True, blank=True)
    monthly_cap = models.DecimalField(
        **MONEY, help_text="The most automatic top-ups take in one local month."
    )
    armed = models.BooleanField(
        default=True,
        help_text="Balance trigger: fires once per fall to the level, re-armed above it.",
    )
    crossings = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "trigger"],
                condition=models.Q(is_active=True),
                name="one_active_auto_topup_per_trigger",
            )
        ]
        indexes = [
            # The scheduler's work: active schedules by when they are due.
            models.Index(
                fields=["next_run_at"],
                condition=models.Q(is_active=True, trigger="schedule"),
                name="auto_topup_schedule_due",
            )
        ]

    def __str__(self) -> str:
        return f"Automatic top-up of {_money(self, self.amount)} ({self.get_trigger_display()})"


class AutoTopUpRun(models.Model):
    """One firing of an automatic top-up: charged once however often it is retried (its id is the
    gateway's idempotency key), then succeeded, failed and reported, or skipped (cap reached)."""

    class Status(models.TextChoices):
        PENDING = "pending", "To charge"
        RETRYING = "retrying", "Retrying after a transient failure"
        SUCCEEDED = "succeeded", "Paid"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    rule = models.ForeignKey(AutoTopUp, on_delete=models.PROTECT, related_name="runs")
    occurrence = models.CharField(
        max_length=60, help_text="What fired it: a balance crossing's number or a schedule's date."
    )
    amount = models.DecimalField(**MONEY)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    topup = models.OneToOneField(
        TopUp, null=True, blank=True, on_delete=models.PROTECT, related_name="auto_run"
    )
    error = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "occurrence"], name="auto_topup_run_once")
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status__in=["pending", "retrying"]),
                name="auto_topup_run_due",
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule} {self.occurrence} ({self.status})"


class SimulatedPaymentMethod(models.Model):
    """The simulated gateway's own books: a card it tokenised. Only the gateway keeps the card's
    behaviour (a test number that declines, one that fails transiently), never our side."""

    reference = models.CharField(max_length=100, unique=True)
    brand = models.CharField(max_length=20)
    last4 = models.CharField(max_length=4)
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
    behaviour = models.CharField(
        max_length=20, default="succeed", help_text="succeed, decline or transient (test cards)."
    )
    single_use_token = models.CharField(max_length=100, unique=True)
    attached_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.brand} {self.last4}"


class SimulatedCharge(models.Model):
    """The simulated gateway's record of an off-session charge, by the caller's idempotency key:
    a retry of the same key is answered from here and never charges twice."""

    idempotency_key = models.CharField(max_length=100, unique=True)
    method_reference = models.CharField(max_length=100)
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    reference = models.CharField(max_length=100, unique=True)
    outcome = models.CharField(max_length=10)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.reference} ({self.outcome})"
