"""The outage desk: plan, preview, publish, reschedule, cancel, start and restore outages; the
guaranteed standards, compensation and force-majeure exemptions. Times are the utility's local time."""

from __future__ import annotations

from datetime import datetime

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AdminSplitDateTime
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Min
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import ngettext

from billing.models import RelayCommand
from core.admin import (
    HistoryInline,
    MoneyForm,
    ReadOnlyMixin,
    UtilityScopedAdmin,
    money_column,
    staff_utility_ids,
)
from core.errors import DomainError
from core.money import utility_money
from outages import selectors, services, standards
from outages.models import (
    Compensation,
    Disconnection,
    ExemptionRequest,
    Outage,
    OutageEvent,
    ReminderSchedule,
    StandardsPolicy,
)

STATUS_COLOURS = {
    Outage.Status.DRAFT: "#6c757d",
    Outage.Status.PUBLISHED: "#0b61a4",
    Outage.Status.IN_PROGRESS: "#b3261e",
    Outage.Status.RESTORED: "#2e7d32",
    Outage.Status.CANCELLED: "#8d6e63",
}


def _local(value: datetime | None, zone) -> str:
    return value.astimezone(zone).strftime("%a %d %b %Y %H:%M") if value else "-"


class OutageForm(forms.ModelForm):
    class Meta:
        model = Outage
        fields = [
            "utility",
            "kind",
            "reason",
            "planned_start",
            "planned_end",
            "areas",
            "feeders",
            "transformers",
            "meters",
        ]
        labels = {
            "planned_start": "Start (local time)",
            "planned_end": "End (local time; for unplanned: estimated restoration)",
        }

    def clean(self):
        data = super().clean()
        start, end = data.get("planned_start"), data.get("planned_end")
        if start and end and end <= start:
            self.add_error("planned_end", "The end must be after the start.")
        scope = ["areas", "feeders", "transformers", "meters"]
        if not any(data.get(name) for name in scope if name in self.fields):
            raise forms.ValidationError(
                "Choose where the outage is: at least one area, feeder, transformer or meter."
            )
        utility = data.get("utility")
        if utility:
            wrong = [
                str(item)
                for item in (
                    *(data.get("areas") or []),
                    *(data.get("meters") or []),
                )
                if item.utility_id != utility.pk
            ]
            wrong += [str(f) for f in data.get("feeders") or [] if f.area.utility_id != utility.pk]
            wrong += [
                str(t)
                for t in data.get("transformers") or []
                if t.feeder.area.utility_id != utility.pk
            ]
            if wrong:
                raise forms.ValidationError(f"These belong to another utility: {', '.join(wrong)}.")
        return data


class EventInline(HistoryInline):
    model = OutageEvent
    fields = ["at", "action", "actor", "changes", "note"]
    verbose_name_plural = "History"


class PublishForm(forms.Form):
    confirm_late = forms.BooleanField(
        required=False,
        label="I confirm publishing with late notice.",  # worded per utility by the view
    )


class RescheduleForm(PublishForm):
    planned_start = forms.SplitDateTimeField(
        label="New start (local time)", widget=AdminSplitDateTime
    )
    planned_end = forms.SplitDateTimeField(label="New end (local time)", widget=AdminSplitDateTime)


class CancelForm(forms.Form):
    note = forms.CharField(
        required=False, label="Why (kept in the history)", widget=forms.Textarea(attrs={"rows": 3})
    )


class StartForm(forms.Form):
    at = forms.SplitDateTimeField(
        label="Supply went off at (local time)", widget=AdminSplitDateTime
    )


class RestoreForm(forms.Form):
    at = forms.SplitDateTimeField(
        label="Supply came back at (local time)", widget=AdminSplitDateTime
    )


# step: (form, title, button, allowed statuses)
STEPS = {
    "publish": (PublishForm, "Preview and publish", "Publish and notify consumers"),
    "reschedule": (RescheduleForm, "Reschedule", "Reschedule and notify consumers"),
    "cancel": (CancelForm, "Cancel outage", "Cancel the outage"),
    "start": (StartForm, "Mark started", "Mark started"),
    "restore": (RestoreForm, "Mark restored", "Mark restored and notify consumers"),
}


def steps_for(outage: Outage) -> list[str]:
    status, planned = outage.status, outage.kind == Outage.Kind.PLANNED
    return {
        Outage.Status.DRAFT: ["publish", "cancel"],
        Outage.Status.PUBLISHED: ["reschedule", "start", "cancel"] if planned else [],
        Outage.Status.IN_PROGRESS: ["restore"],
    }.get(status, [])


@admin.register(Outage)
class OutageAdmin(UtilityScopedAdmin):
    form = OutageForm
    list_display = [
        "id",
        "reason",
        "kind",
        "status_badge",
        "utility",
        "local_start",
        "local_end",
        "affected_meters",
        "reminder",
        "late_notice",
    ]
    list_display_links = ["id", "reason"]
    list_filter = ["status", "kind", "late_notice", "utility", "planned_start"]
    search_fields = [
        "reason",
        "areas__name",
        "feeders__name",
        "feeders__code",
        "transformers__code",
        "transformers__name",
        "meters__serial",
    ]
    list_select_related = ["utility"]
    date_hierarchy = "planned_start"
    filter_horizontal = ["areas", "feeders", "transformers"]
    raw_id_fields = ["meters"]
    inlines = [EventInline]
    change_form_template = "admin/outages/outage/change_form.html"
    fieldsets = (
        (None, {"fields": ("utility", "kind", "reason")}),
        ("When", {"fields": ("planned_start", "planned_end")}),
        (
            "Where",
            {
                "fields": ("areas", "feeders", "transformers", "meters"),
                "description": "Every meter under a chosen area, feeder or transformer is affected.",
            },
        ),
    )
    status_fieldset = (
        "Status",
        {
            "fields": (
                "status_badge",
                "affected_summary",
                "local_times",
                "reminder",
                "notice_delivery",
                "late_notice",
                "published_at",
                "version",
            )
        },
    )

    # --- Display --------------------------------------------------------------------------

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj):
        return format_html(
            '<strong style="color:#fff;background:{};padding:2px 8px;border-radius:10px">{}</strong>',
            STATUS_COLOURS.get(obj.status, "#333"),
            obj.get_status_display(),
        )

    @admin.display(description="Start (local)", ordering="planned_start")
    def local_start(self, obj):
        return _local(obj.planned_start, obj.utility.zone)

    @admin.display(description="End (local)", ordering="planned_end")
    def local_end(self, obj):
        return _local(obj.planned_end, obj.utility.zone)

    @admin.display(description="Meters")
    def affected_meters(self, obj):
        return selectors.outage_meters(outage=obj).count()

    @admin.display(description="Affected")
    def affected_summary(self, obj):
        preview = selectors.outage_preview(outage=obj, sample_size=0)
        return format_html(
            '<span id="affected-summary">{}, {}, {} to notify</span>',
            ngettext("%d meter", "%d meters", preview.meters) % preview.meters,
            ngettext("%d consumer account", "%d consumer accounts", preview.accounts)
            % preview.accounts,
            ngettext("%d person", "%d people", preview.users) % preview.users,
        )

    @admin.display(description="Times (local)")
    def local_times(self, obj):
        zone = obj.utility.zone
        return format_html(
            "Planned {} → {}<br>Actual {} → {}<br><small>{}</small>",
            _local(obj.planned_start, zone),
            _local(obj.planned_end, zone),
            _local(obj.actual_start, zone),
            _local(obj.actual_end, zone),
            obj.utility.timezone,
        )

    @admin.display(description="Reminder (local)")
    def reminder(self, obj):
        at = selectors.reminder_at(outage=obj)
        if at is None:
            return "-"
        sent = obj.reminded_version is not None and obj.reminded_version == obj.version
        return f"{_local(at, obj.utility.zone)}{' (sent)' if sent else ''}"

    @admin.display(description="Notice delivery")
    def notice_delivery(self, obj):
        summary = selectors.outage_notice_summary(outage=obj)
        if summary is None:
            return "-"
        return format_html(
            "Version {}: {} by the app, {} by SMS, {} on the way, {} not delivered; "
            "{} reached later than {} h before the start",
            summary.version,
            ngettext("%d account", "%d accounts", summary.by_app) % summary.by_app,
            summary.by_sms,
            summary.on_the_way,
            summary.not_delivered,
            summary.late,
            obj.utility.outage_notice_hours,
        )

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return self.fieldsets
        return (*self.fieldsets, self.status_fieldset)

    def get_readonly_fields(self, request, obj=None):
        status_fields = list(self.status_fieldset[1]["fields"])
        if obj is None:
            return []
        if obj.status != Outage.Status.DRAFT:
            # After publishing, the schedule changes only through Reschedule (which notifies).
            return [*OutageForm.Meta.fields, *status_fields]
        return status_fields

    def has_delete_permission(self, request, obj=None):
        # A draft only: a published outage is cancelled (which tells consumers), never deleted.
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or obj.status == Outage.Status.DRAFT)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        OutageEvent.objects.create(
            outage=form.instance,
            action="edited" if change else "created",
            actor=request.user,
            changes={name: "changed" for name in form.changed_data},
        )

    # --- Local time -----------------------------------------------------------------------

    def _zone_for(self, request, object_id=None):
        if object_id:
            outage = self.get_queryset(request).filter(pk=object_id).select_related("utility")
            outage = outage.first()
            if outage:
                return outage.utility.zone
        utility_id = request.POST.get("utility") or request.GET.get("utility")
        allowed = staff_utility_ids(request.user)
        if not utility_id and allowed and len(allowed) == 1:
            utility_id = allowed[0]
        if utility_id and str(utility_id).isdigit():
            from accounts.models import Utility

            utility = Utility.objects.filter(pk=utility_id).first()
            if utility:
                return utility.zone
        return None

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        zone = self._zone_for(request, object_id)
        extra_context = {**(extra_context or {}), "local_zone": zone}
        if object_id:
            outage = self.get_queryset(request).filter(pk=object_id).first()
            if outage:
                extra_context["outage_steps"] = [
                    (
                        step,
                        STEPS[step][1],
                        reverse(f"admin:outages_outage_{step}", args=[outage.pk]),
                    )
                    for step in steps_for(outage)
                ]
        if zone is None:
            return super().changeform_view(request, object_id, form_url, extra_context)
        with timezone.override(zone):
            response = super().changeform_view(request, object_id, form_url, extra_context)
            # Render now: a TemplateResponse renders after the view returns, outside the zone.
            if hasattr(response, "render"):
                response.render()
            return response

    # --- The workflow ---------------------------------------------------------------------

    def get_urls(self):
        urls = [
            path(
                f"<path:object_id>/{step}/",
                self.admin_site.admin_view(self.step_view),
                {"step": step},
                name=f"outages_outage_{step}",
            )
            for step in STEPS
        ]
        return urls + super().get_urls()

    def step_view(self, request, object_id, step):
        outage = self.get_object(request, object_id)
        if outage is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not request.user.has_perm("outages.publish_outage"):
            raise PermissionDenied
        form_class, title, button = STEPS[step]
        zone = outage.utility.zone
        with timezone.override(zone):
            initial = {}
            if step in ("start", "restore"):
                initial["at"] = timezone.localtime(timezone.now()).replace(second=0, microsecond=0)
            if step == "reschedule":
                initial = {"planned_start": outage.planned_start, "planned_end": outage.planned_end}
            form = form_class(request.POST if request.method == "POST" else None, initial=initial)
            late_message = None
            if step == "publish" and services.notice_is_late(outage=outage, now=timezone.now()):
                consequence = services.late_notice_consequence(utility=outage.utility)
                late_message = (
                    f"Published now, consumers get less than the {outage.utility.outage_notice_hours} "
                    f"hours' notice the utility promises. Publishing records a late notice: "
                    f"{consequence}."
                )
                # What confirming commits the utility to, in the box's own words.
                form.fields[
                    "confirm_late"
                ].label = f"I confirm publishing with late notice; {consequence}."
            if request.method == "POST" and form.is_valid():
                try:
                    self._run_step(request, outage, step, form.cleaned_data)
                except services.LateNoticeUnconfirmed as refused:
                    late_message = refused.message
                    form.add_error("confirm_late", "Tick this box to publish with late notice.")
                except DomainError as refused:
                    form.add_error(None, refused.message)
                else:
                    return redirect(reverse("admin:outages_outage_change", args=[outage.pk]))
            preview = selectors.outage_preview(outage=outage, sample_size=50)
            context = {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": f"{title}: {outage.reason}",
                "outage": outage,
                "step": step,
                "button": button,
                "form": form,
                "media": self.media + form.media,
                "preview": preview,
                "late_message": late_message,
                "zone_name": outage.utility.timezone,
                "start_local": _local(outage.planned_start, zone),
                "end_local": _local(outage.planned_end, zone),
                "reminder_local": _local(selectors.reminder_at(outage=outage), zone)
                if selectors.reminder_at(outage=outage)
                else "-",
                "area": selectors.outage_area_text(outage=outage),
                "dangerous": step == "cancel",
            }
            return TemplateResponse(request, "admin/outages/outage/step.html", context).render()

    def _run_step(self, request, outage, step, data):
        actor = request.user
        before = outage.status
        if step == "publish":
            result = services.outage_publish(
                outage_id=outage.pk, actor=actor, confirm_late=data["confirm_late"]
            )
            affected = result.affected.count()
            message = (
                f"Published. {ngettext('%d meter', '%d meters', affected) % affected} affected; "
                "notices are on their way."
            )
        elif step == "reschedule":
            result = services.outage_reschedule(
                outage_id=outage.pk,
                actor=actor,
                planned_start=data["planned_start"],
                planned_end=data["planned_end"],
                confirm_late=data["confirm_late"],
            )
            message = "Rescheduled; consumers are told the new time."
        elif step == "cancel":
            result = services.outage_cancel(outage_id=outage.pk, actor=actor, note=data["note"])
            message = "Cancelled." + (
                " Consumers are told." if before == Outage.Status.PUBLISHED else ""
            )
        elif step == "start":
            result = services.outage_start(outage_id=outage.pk, actor=actor, at=data["at"])
            message = "Marked started."
        else:
            result = services.outage_restore(outage_id=outage.pk, actor=actor, at=data["at"])
            message = "Marked restored; consumers are told power is back."
        self.audit(
            request,
            result,
            f"outage:{step}",
            {"status": [before, result.status], **{k: _plain_form(v) for k, v in data.items()}},
        )
        messages.success(request, message)


def _plain_form(value):
    return value.isoformat() if isinstance(value, datetime) else value


class StandardsPolicyForm(MoneyForm):
    money_fields = (
        "notice_amount",
        "restoration_amount",
        "restoration_amount_per_hour",
        "reconnection_amount",
        "reconnection_amount_per_hour",
        "repeated_amount",
        "repeated_amount_per_outage",
        "wrongful_disconnection_amount",
    )


@admin.register(StandardsPolicy)
class StandardsPolicyAdmin(UtilityScopedAdmin):
    form = StandardsPolicyForm
    list_display = [
        "utility",
        "notice",
        "restoration_hours",
        "restoration",
        "restoration_per_hour",
        "reconnection_hours",
        "repeated_allowed",
        "wrongful_disconnection",
        "exemption_working_days",
        "payment_days",
    ]
    list_select_related = ["utility"]
    notice = money_column("notice_amount", description="Notice amount")
    restoration = money_column("restoration_amount", description="Restoration amount")
    restoration_per_hour = money_column(
        "restoration_amount_per_hour", description="Restoration amount per hour"
    )
    wrongful_disconnection = money_column(
        "wrongful_disconnection_amount", description="Wrongful disconnection amount"
    )
    fieldsets = (
        (None, {"fields": ("utility",)}),
        (
            "Notice of a planned outage",
            {
                "fields": ("notice_amount",),
                "description": "The notice period itself is the utility's outage notice hours.",
            },
        ),
        (
            "Restoration",
            {"fields": ("restoration_hours", "restoration_amount", "restoration_amount_per_hour")},
        ),
        (
            "Reconnection after payment",
            {
                "fields": (
                    "reconnection_hours",
                    "reconnection_amount",
                    "reconnection_amount_per_hour",
                )
            },
        ),
        (
            "Repeated outages",
            {
                "fields": (
                    "repeated_min_hours",
                    "repeated_allowed",
                    "repeated_amount",
                    "repeated_amount_per_outage",
                )
            },
        ),
        ("Wrongful disconnection", {"fields": ("wrongful_disconnection_amount",)}),
        ("Exemptions and payment", {"fields": ("exemption_working_days", "payment_days")}),
    )


@admin.register(ReminderSchedule)
class ReminderScheduleAdmin(UtilityScopedAdmin):
    list_display = ["utility", "enabled", "days_before", "local_time", "upcoming"]

    @admin.display(description="Next reminders (local)")
    def upcoming(self, obj):
        outages = Outage.objects.filter(
            utility=obj.utility,
            status=Outage.Status.PUBLISHED,
            kind=Outage.Kind.PLANNED,
            planned_start__gt=timezone.now(),
        ).order_by("planned_start")[:3]
        zone = obj.utility.zone
        return (
            "; ".join(
                f"#{o.pk} {_local(selectors.reminder_at(outage=o, schedule=obj), zone)}"
                for o in outages
            )
            or "-"
        )


@admin.register(Compensation)
class CompensationAdmin(ReadOnlyMixin, UtilityScopedAdmin):
    list_display = [
        "id",
        "account",
        "standard",
        "amount_text",
        "status",
        "failure_at",
        "exemption_deadline",
        "pay_by",
        "outage",
    ]
    list_filter = ["status", "standard", "utility"]
    search_fields = ["account__consumer_id", "account__name", "event_key", "reason"]
    list_select_related = ["utility", "account__utility", "outage"]
    date_hierarchy = "failure_at"
    # The stored amount has 3 decimals whatever the currency: shown through amount_text instead.
    fields = [
        "amount_text" if f.name == "amount" else f.name
        for f in Compensation._meta.fields
        if f.name not in ("id", "currency")
    ]
    readonly_fields = fields
    amount_text = money_column("amount", description="Amount")
    actions = ["file_exemption"]

    def has_file_exemption_permission(self, request) -> bool:
        return request.user.has_perm("outages.add_exemptionrequest")

    @admin.action(
        description="File a force-majeure exemption for this event",
        permissions=["file_exemption"],
    )
    def file_exemption(self, request, queryset):
        events = sorted(set(queryset.values_list("standard", "event_key")))
        if len(events) != 1:
            messages.error(request, "Choose compensations of one event and standard.")
            return None
        standard, event_key = events[0]
        url = reverse("admin:outages_exemptionrequest_add")
        return redirect(f"{url}?event={standard}|{event_key}")


class ExemptionFileForm(forms.Form):
    event = forms.ChoiceField(label="Event and standard")
    justification = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text="The full justification the regulator will read.",
    )

    def __init__(self, *args, events=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["event"].choices = [("", "---------"), *events]


@admin.register(ExemptionRequest)
class ExemptionRequestAdmin(UtilityScopedAdmin):
    list_display = [
        "id",
        "standard",
        "event_key",
        "status",
        "filed_by",
        "filed_at",
        "deadline",
        "decided_by",
        "covered",
    ]
    list_filter = ["status", "standard", "utility"]
    search_fields = ["event_key", "justification"]
    readonly_fields = [f.name for f in ExemptionRequest._meta.fields] + ["covered"]
    actions = ["approve", "reject"]

    @admin.display(description="Compensations")
    def covered(self, obj):
        rows = Compensation.objects.filter(standard=obj.standard, event_key=obj.event_key)
        return ", ".join(
            f"{r['status']}: {r['n']}"
            for r in rows.values("status").annotate(n=Count("id")).order_by("status")
        )

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def _events(self, request):
        rows = (
            scope_compensations(request)
            .filter(status=Compensation.Status.PENDING, exemption_deadline__gt=timezone.now())
            .values("standard", "event_key")
            .annotate(n=Count("id"), deadline=Min("exemption_deadline"))
            .order_by("deadline")
        )
        labels = dict(Compensation._meta.get_field("standard").choices)
        return [
            (
                f"{r['standard']}|{r['event_key']}",
                f"{r['event_key']} — {labels[r['standard']]} ({r['n']} consumers, deadline "
                f"{r['deadline']:%Y-%m-%d %H:%M} UTC)",
            )
            for r in rows
        ]

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        events = self._events(request)
        form = ExemptionFileForm(
            request.POST if request.method == "POST" else None,
            events=events,
            initial={"event": request.GET.get("event")},
        )
        if request.method == "POST" and form.is_valid():
            standard, event_key = form.cleaned_data["event"].split("|", 1)
            try:
                exemption = standards.exemption_file(
                    standard=standard,
                    event_key=event_key,
                    justification=form.cleaned_data["justification"],
                    actor=request.user,
                )
            except DomainError as refused:
                form.add_error(None, refused.message)
            else:
                self.audit(request, exemption, "exemption:file")
                messages.success(
                    request, "Exemption filed. Its compensations are held until it is decided."
                )
                return redirect(reverse("admin:outages_exemptionrequest_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "File a force-majeure exemption",
            "form": form,
            "button": "File the exemption",
            "step": "exemption",
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/outages/outage/step.html", context)

    def _decide(self, request, queryset, approve: bool):
        for exemption in queryset:
            try:
                _, cancelled = standards.exemption_decide(
                    exemption_id=exemption.pk, approve=approve, actor=request.user
                )
            except DomainError as refused:
                messages.error(request, f"Exemption {exemption.pk}: {refused.message}")
            else:
                cancelled_text = (
                    ngettext("%d compensation cancelled", "%d compensations cancelled", cancelled)
                    % cancelled
                )
                verdict = f"approved; {cancelled_text}" if approve else "rejected"
                messages.success(request, f"Exemption {exemption.pk} {verdict}.")

    def has_decide_permission(self, request) -> bool:
        return request.user.has_perm("outages.decide_exemptionrequest")

    @admin.action(
        description="Approve the selected requests (cancels their compensation)",
        permissions=["decide"],
    )
    def approve(self, request, queryset):
        self._decide(request, queryset, approve=True)

    @admin.action(description="Reject the selected requests", permissions=["decide"])
    def reject(self, request, queryset):
        self._decide(request, queryset, approve=False)


def scope_compensations(request):
    from core.admin import scope_queryset

    return scope_queryset(Compensation.objects.all(), request.user)


@admin.register(Disconnection)
class DisconnectionAdmin(UtilityScopedAdmin):
    """Disconnect orders, to mark one as wrongful. (RelayCommand's own admin belongs to billing.)"""

    utility_path = "account__utility"
    list_display = ["meter", "account", "reason", "status", "created_at", "completed_at"]
    list_filter = ["status", "reason", "account__utility"]
    search_fields = ["meter__serial", "account__consumer_id"]
    list_select_related = ["meter", "account"]
    actions = ["mark_wrongful"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(action=RelayCommand.Action.DISCONNECT)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in RelayCommand._meta.fields]

    @admin.action(
        description="Mark as wrongful: compensate and reconnect now",
        permissions=["change"],
    )
    def mark_wrongful(self, request, queryset):
        for command in queryset:
            try:
                compensation, reconnect = standards.wrongful_disconnection_record(
                    command_id=command.pk, actor=request.user
                )
            except DomainError as refused:
                messages.error(request, f"{command.meter}: {refused.message}")
                continue
            owed = (
                f"{utility_money(compensation.amount, compensation.utility)} compensation recorded"
                if compensation
                else "no standards policy, so no compensation"
            )
            reconnection = (
                "reconnection ordered"
                if reconnect
                else "reconnection follows once the command in flight is answered"
            )
            messages.success(request, f"{command.meter}: {owed}; {reconnection}.")
