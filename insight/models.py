"""What a household learns from its own readings: policy per utility, and the small rolling state
the daily pass keeps per account (docs/insight.md)."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from accounts.models import ConsumerAccount, Utility


class InsightPolicy(models.Model):
    """A utility's insight rules, as data. A rule is off where its field is empty or false."""

    utility = models.OneToOneField(
        Utility, on_delete=models.CASCADE, related_name="insight_policy", primary_key=True
    )
    high_usage_percent = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        default=50,
        validators=[MinValueValidator(1)],
        help_text="A day's use this many percent above the household's baseline counts as high "
        "(one US utility's rule: 50); empty: no high-usage alert.",
    )
    high_usage_days = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(14)],
        help_text="Consecutive high days before the alert: a single spike is not told.",
    )
    baseline_days = models.PositiveSmallIntegerField(
        default=30,
        validators=[MinValueValidator(7), MaxValueValidator(60)],
        help_text="The baseline is the household's average over this many days before the streak.",
    )
    bill_forecast_min_coverage_percent = models.PositiveSmallIntegerField(
        default=75,
        validators=[MaxValueValidator(100)],
        help_text="No bill forecast unless at least this share of the recent quarter-hours were "
        "read (Opower-style portals: 75 % of the last 7 days).",
    )
    bill_forecast_coverage_days = models.PositiveSmallIntegerField(
        default=7, validators=[MinValueValidator(1), MaxValueValidator(31)]
    )
    tod_shift_percent = models.PositiveSmallIntegerField(
        default=10,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="The time-of-day view's saving if this share of peak use moved to the cheapest "
        "hours.",
    )
    day_started = models.DateField(
        null=True,
        blank=True,
        editable=False,
        help_text="The last local day the daily pass was started for: each day is started once.",
    )
    sanctioned_load_alerts = models.BooleanField(
        default=False,
        help_text="Tell the consumer when a 15-minute demand exceeds the sanctioned load "
        "(India's consumer-rights rules).",
    )

    class Meta:
        verbose_name_plural = "insight policies"

    def __str__(self) -> str:
        return f"Insight policy of {self.utility}"


class UsageBaseline(models.Model):
    """One account's daily use over its recent local days, kept by the daily pass so that the
    high-usage rule reads one small row instead of a month of readings."""

    account = models.OneToOneField(
        ConsumerAccount, on_delete=models.CASCADE, related_name="+", primary_key=True
    )
    last_day = models.DateField(help_text="The newest local day in `daily_wh`.")
    daily_wh = models.JSONField(
        default=list, help_text="Wh per local day, oldest first, ending at last_day; null: unread."
    )
    streak = models.PositiveSmallIntegerField(
        default=0, help_text="Consecutive high days ending at last_day."
    )
    alerted_streak_from = models.DateField(
        null=True, blank=True, help_text="The first day of the streak already told: told once."
    )
    peak_demand_w = models.PositiveIntegerField(
        null=True, blank=True, help_text="last_day's highest 15-minute demand, in watts."
    )
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Baseline of {self.account_id} to {self.last_day}"
