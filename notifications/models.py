from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import ConsumerAccount, Language, Utility


class Device(models.Model):
    """A phone (or browser) that can receive pushes. A token belongs to one user at a time."""

    class Platform(models.TextChoices):
        ANDROID = "android", "Android"
        IOS = "ios", "iOS"
        WEB = "web", "Web"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="devices"
    )
    # FCM registration tokens are about 160 characters today; the protocol sets no limit, so leave room.
    token = models.CharField(max_length=512, unique=True)
    # The app's Firebase installation ID, when the app sends one: firebase-admin 7.5+ prefers it to
    # the registration token as a message's target.
    fid = models.CharField(max_length=512, blank=True)
    platform = models.CharField(max_length=8, choices=Platform.choices)
    app_version = models.CharField(max_length=32, blank=True)
    language = models.CharField(max_length=2, choices=Language.choices, default=Language.ENGLISH)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-last_seen_at", "id"]

    def __str__(self) -> str:
        return f"{self.platform} device of {self.user}"


class NotificationPreference(models.Model):
    """A user's choices. No row means the defaults: everything on, no quiet hours."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preference"
    )
    disabled_categories = models.JSONField(default=list, blank=True)
    # In the account's currency; null means the per-currency default (LOW_BALANCE_DEFAULT_AMOUNTS).
    low_balance_amount = models.DecimalField(
        max_digits=12, decimal_places=3, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    low_balance_days = models.PositiveSmallIntegerField(null=True, blank=True)
    # Local time in the utility's zone; both set or neither. start > end spans midnight.
    quiet_start = models.TimeField(null=True, blank=True)
    quiet_end = models.TimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Preferences of {self.user}"


class Fanout(models.Model):
    """One alert to a large audience (an outage notice): its inbox rows point back here.

    A streamed fan-out (services.fanout_open) is `writing` while its caller writes its audience a
    chunk at a time after the event commits (`written_through`: how far, in the caller's own
    order; `progressed_at`: when the last chunk committed, so a stalled stream is found), then
    `written`; `stopped` when what it says no longer holds (a cancelled or moved outage).
    """

    class State(models.TextChoices):
        WRITING = "writing", "Writing the inbox"
        WRITTEN = "written", "Written"
        STOPPED = "stopped", "Stopped: no longer holds"

    dedupe_key = models.CharField(max_length=200, unique=True)
    category = models.CharField(max_length=32)
    utility = models.ForeignKey(Utility, null=True, blank=True, on_delete=models.SET_NULL)
    # Inbox rows written so far (all of them once `written`).
    audience_size = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=8, choices=State.choices, default=State.WRITTEN)
    written_through = models.BigIntegerField(default=0)
    progressed_at = models.DateTimeField(null=True, blank=True)
    # Rendered once, when it opens: each chunk's rows take these, whatever the chunk.
    texts = models.JSONField(default=dict, blank=True)  # {language: {"title": …, "body": …}}
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The sweep of stalled streams reads only those still writing.
            models.Index(
                fields=["progressed_at"],
                condition=Q(state="writing"),
                name="fanout_writing",
            )
        ]

    def __str__(self) -> str:
        return f"{self.category} to {self.audience_size} ({self.dedupe_key})"


class Notification(models.Model):
    """An alert as the user's inbox shows it, and the state of its push.

    The row is written in the transaction of the event that causes it; its push is dispatched after
    commit and claimed by a conditional update, so a task delivered twice sends once.
    """

    class PushStatus(models.TextChoices):
        PENDING = "pending", "Waiting to be sent"
        HELD = "held", "Held for quiet hours"
        SENDING = "sending", "Being sent"
        SENT = "sent", "Sent"
        NO_DEVICE = "no_device", "No working device"
        OFF = "off", "Category turned off"
        FAILED = "failed", "Failed"
        # The deployment has no FCM credentials: the push was written to the worker's log only.
        # Not "sent": staff read this to tell a consumer whether their phone got the alert.
        NOT_CONFIGURED = "no_config", "Not sent: push not configured (no FCM credentials)"

    class SmsStatus(models.TextChoices):
        NONE = "", "None"
        QUEUED = "queued", "Queued"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    category = models.CharField(max_length=32)
    # Unique per user: the same event reported twice (a retried task, a re-run) is one alert.
    dedupe_key = models.CharField(max_length=200)
    title = models.CharField(max_length=200)
    body = models.TextField()
    language = models.CharField(max_length=2, choices=Language.choices)
    data = models.JSONField(default=dict, blank=True)
    utility = models.ForeignKey(Utility, null=True, blank=True, on_delete=models.SET_NULL)
    fanout = models.ForeignKey(
        Fanout, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    push_status = models.CharField(
        max_length=10, choices=PushStatus.choices, default=PushStatus.PENDING
    )
    # When a task was last queued for it; the sweeper re-queues what stays pending long after.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claim = models.UUIDField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    push_attempts = models.PositiveSmallIntegerField(default=0)
    # Devices already reached, so a retry after a partial failure skips them.
    devices_done = models.JSONField(default=list, blank=True)
    pushed_at = models.DateTimeField(null=True, blank=True)
    sms_status = models.CharField(
        max_length=8, choices=SmsStatus.choices, default=SmsStatus.NONE, blank=True
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "dedupe_key"], name="one_alert_per_key")
        ]
        indexes = [
            # The inbox: a user's newest first, and the unread count.
            models.Index(fields=["user", "-created_at"]),
            models.Index(fields=["user"], condition=Q(read_at__isnull=True), name="unread_by_user"),
            # The sweeper reads only rows that are not finished.
            models.Index(
                fields=["push_status", "next_attempt_at"],
                condition=Q(push_status__in=["pending", "held", "sending"]),
                name="push_unfinished",
            ),
            models.Index(fields=["fanout", "push_status"]),
        ]

    def __str__(self) -> str:
        return f"{self.category} to {self.user}"


class BalanceAlertState(models.Model):
    """Which balance thresholds are armed for one user and account: an alert fires once per crossing
    and re-arms when a top-up lifts the balance back above the threshold."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    account = models.ForeignKey(ConsumerAccount, on_delete=models.CASCADE, related_name="+")
    low_armed = models.BooleanField(default=True)
    days_armed = models.BooleanField(default=True)
    zero_armed = models.BooleanField(default=True)
    # Each crossing gets its own number, which makes its alert's dedupe key.
    crossings = models.PositiveIntegerField(default=0)
    disconnect_alerted_for = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "account"], name="one_balance_state_per_link")
        ]

    def __str__(self) -> str:
        return f"Balance alerts of {self.user} on {self.account}"
