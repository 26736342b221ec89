from __future__ import annotations

from django.contrib import admin
from django.db.models import OuterRef, Subquery

from accounts.models import AccountLink
from core.admin import MoneyForm, UtilityScopedAdmin
from core.money import money_text
from notifications import selectors
from notifications.models import Device, Fanout, Notification, NotificationPreference


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "platform", "app_version", "language", "last_seen_at"]
    list_filter = ["platform", "language"]
    search_fields = ["user__phone", "user__username"]
    readonly_fields = ["created_at", "last_seen_at"]
    raw_id_fields = ["user"]


@admin.register(Notification)
class NotificationAdmin(UtilityScopedAdmin):
    """A consumer's alerts as their inbox holds them, with the truth about each push: times in
    the alert's utility's zone (UtilityScopedAdmin)."""

    list_display = ["id", "user", "category", "title", "push_status", "created_at", "read_at"]
    list_filter = ["category", "push_status", "language"]
    list_select_related = ["user"]
    search_fields = ["user__phone", "dedupe_key"]
    raw_id_fields = ["user", "fanout"]
    readonly_fields = [f.name for f in Notification._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(Fanout)
class FanoutAdmin(UtilityScopedAdmin):
    """Staff follow a large alert here: how many are sent, held, waiting or unreachable. A staff
    member granted it sees only the utilities' own alerts."""

    list_display = ["id", "category", "utility", "state", "audience_size", "progress", "created_at"]
    list_filter = ["state", "category", "utility"]
    readonly_fields = [
        "dedupe_key",
        "category",
        "utility",
        "state",
        "audience_size",
        "created_at",
        "progressed_at",
        "progress",
    ]
    fields = readonly_fields

    def has_add_permission(self, request):
        return False

    @admin.display(description="progress")
    def progress(self, fanout: Fanout) -> str:
        p = selectors.fanout_progress(fanout=fanout)
        if fanout.state == Fanout.State.WRITING:
            # A streamed fan-out: its audience is still being written while the first pushes go.
            state = f"writing ({fanout.audience_size} written so far)"
        elif fanout.state == Fanout.State.STOPPED:
            state = f"stopped, no longer holds ({fanout.audience_size} were written)"
        else:
            state = "done" if p["done"] else "in progress"
        no_config = p.get(Notification.PushStatus.NOT_CONFIGURED, 0)
        return (
            f"{state}: {p['sent']} sent, {p['pending'] + p['sending']} waiting, {p['held']} held "
            f"for quiet hours, {p['no_device']} without a device, {p['off']} turned off, "
            f"{p['failed']} failed"
            # Logged by a worker without FCM credentials: never counted among the sent.
            + (f", {no_config} not sent (push not configured)" if no_config else "")
        )


class NotificationPreferenceForm(MoneyForm):
    """The low-balance amount in the currency of the accounts the user holds (as the API shows
    it), when they share one."""

    money_fields = ("low_balance_amount",)

    def minor_unit(self, data: dict) -> int | None:
        user = data.get("user")
        if user is None and self.instance.user_id:
            user = self.instance.user
        utility = selectors.preferences_utility(user=user) if user is not None else None
        return utility.currency_minor_unit if utility is not None else None


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):
    form = NotificationPreferenceForm
    list_display = ["user", "quiet_hours", "low_balance", "low_balance_days"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]

    def get_queryset(self, request):
        # The currency of the user's accounts, in the list's one query: the lowest and highest
        # code differ when the user holds accounts in several currencies.
        links = AccountLink.objects.filter(user=OuterRef("user_id"), unlinked_at__isnull=True)
        currency, zone = "account__utility__currency", "account__utility__timezone"
        first = links.order_by(currency)
        return (
            super()
            .get_queryset(request)
            .annotate(
                currency=Subquery(first.values(currency)[:1]),
                last_currency=Subquery(links.order_by(f"-{currency}").values(currency)[:1]),
                minor_unit=Subquery(first.values("account__utility__currency_minor_unit")[:1]),
                zone=Subquery(links.order_by(zone).values(zone)[:1]),
                last_zone=Subquery(links.order_by(f"-{zone}").values(zone)[:1]),
            )
        )

    @admin.display(description="Quiet hours")
    def quiet_hours(self, preference: NotificationPreference) -> str:
        start, end = preference.quiet_start, preference.quiet_end
        if start is None or end is None:
            return "-"
        zone = getattr(preference, "zone", None)
        if zone is None or zone != preference.last_zone:
            # Held alerts follow each alert's utility's zone (notifications.delivery).
            return f"{start:%H:%M}–{end:%H:%M}, local time of each alert's utility"
        return f"{start:%H:%M} {zone} – {end:%H:%M} {zone}"

    @admin.display(description="Low-balance amount", ordering="low_balance_amount")
    def low_balance(self, preference: NotificationPreference) -> str:
        amount = preference.low_balance_amount
        if amount is None:
            return "-"
        currency = getattr(preference, "currency", None)
        if currency is None or currency != preference.last_currency:
            return f"{amount:f}"
        return money_text(amount, currency=currency, minor_unit=preference.minor_unit)
