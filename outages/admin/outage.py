"""The outage list and form: plan an outage by choosing its grid from the tree, see what consumers
will read, and follow it through its steps (views.py). Every time is shown in the utility's zone."""

from __future__ import annotations

from functools import partial

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from accounts.models import Utility
from core.admin import HistoryInline, UtilityScopedAdmin, staff_utility_ids
from core.errors import DomainError
from core.timebuckets import moment_text
from outages import detected, selectors
from outages.admin.forms import (
    GRID_CHOICES,
    GRID_FIELDS,
    OutageForm,
    area_label,
    feeder_label,
    transformer_label,
)
from outages.admin.views import STEPS, OutageStepsMixin, affected_text, steps_for
from outages.models import Outage, OutageEvent

STATUS_COLOURS = {
    Outage.Status.DRAFT: "#6c757d",
    Outage.Status.PUBLISHED: "#0b61a4",
    Outage.Status.IN_PROGRESS: "#b3261e",
    Outage.Status.RESTORED: "#2e7d32",
    Outage.Status.CANCELLED: "#8d6e63",
}
STATUS_FIELDS = (
    "status_badge",
    "affected_summary",
    "local_times",
    "reminder",
    "notice_delivery",
    "late_notice",
    "published_local",
    "version",
)


DETECTION_FIELDS = ("detected_local", "confirmed_text", "meter_reports", "merged_text")


class DetectedFilter(admin.SimpleListFilter):
    """Outages the meters reported: the ones waiting for a person to confirm them first. The
    dashboard's "outages detected from meters" figures link here."""

    title = gettext_lazy("detected from meters")
    parameter_name = "detected"

    def lookups(self, request, model_admin):
        return [
            ("to_confirm", _("Waiting for confirmation")),
            ("open", _("In progress")),
            ("all", _("All detected")),
            ("staff", _("Entered by staff")),
        ]

    def queryset(self, request, queryset):
        meters = queryset.filter(source=Outage.Source.METERS)
        running = {"status": Outage.Status.IN_PROGRESS}
        return {
            "to_confirm": lambda: meters.filter(confirmed_at__isnull=True, **running),
            "open": lambda: meters.filter(**running),
            "all": lambda: meters,
            "staff": lambda: queryset.filter(source=Outage.Source.STAFF),
        }.get(self.value(), lambda: queryset)()


class EventInline(HistoryInline):
    model = OutageEvent
    fields = ["at_local", "action", "actor", "changes", "note"]
    verbose_name_plural = gettext_lazy("History")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("outage__utility", "actor")

    @admin.display(description=gettext_lazy("When (local)"))
    def at_local(self, obj):
        return moment_text(obj.at, obj.outage.utility.zone)


@admin.register(Outage)
class OutageAdmin(OutageStepsMixin, UtilityScopedAdmin):
    form = OutageForm
    # Narrow enough for the 717 px the list gets at 1366 px beside the menu and the filters.
    list_display = [
        "title",
        "status_badge",
        "source_text",
        "when_local",
        "affected_meters",
        "reminder",
        "late_notice",
    ]
    list_display_links = ["title"]
    list_filter = [DetectedFilter, "status", "kind", "late_notice", "utility", "planned_start"]
    actions = ["merge_selected"]
    search_fields = [
        "reason",
        "areas__name",
        "feeders__name",
        "feeders__code",
        "feeders__locality",
        "transformers__code",
        "transformers__name",
        "transformers__locality",
        "meters__serial",
    ]
    list_select_related = ["utility"]
    date_hierarchy = "planned_start"
    # Single meters by serial or consumer id (MeterAdmin's search), never an internal id.
    autocomplete_fields = ["meters"]
    inlines = [EventInline]
    change_form_template = "admin/outages/outage/change_form.html"
    head_fieldsets = (
        (None, {"fields": ("utility", "kind", "reason")}),
        (gettext_lazy("When"), {"fields": ("planned_start", "planned_end")}),
    )
    where_help = gettext_lazy(
        "Every meter under a chosen area, feeder or transformer is affected. Single meters are "
        "found by their serial or the consumer id."
    )
    status_fieldset = (gettext_lazy("Status"), {"fields": STATUS_FIELDS})

    def get_list_display(self, request):
        # The utility is worth a column only to someone who works for several.
        allowed = staff_utility_ids(request.user)
        if allowed is not None and len(allowed) == 1:
            return self.list_display
        return [*self.list_display[:1], "utility_code", *self.list_display[1:]]

    # --- Display --------------------------------------------------------------------------

    @admin.display(description=gettext_lazy("Source"), ordering="source")
    def source_text(self, obj):
        if obj.source != Outage.Source.METERS:
            return _("Staff")
        if obj.status == Outage.Status.IN_PROGRESS and obj.confirmed_at is None:
            return format_html(
                '<strong class="to-confirm" style="color:#b3261e">{}</strong>',
                _("Meters: to confirm"),
            )
        return _("Meters")

    @admin.display(description=gettext_lazy("Detected (local)"))
    def detected_local(self, obj):
        return moment_text(obj.detected_at, obj.utility.zone)

    @admin.display(description=gettext_lazy("Confirmed"))
    def confirmed_text(self, obj):
        if obj.confirmed_at is None:
            return _("Not yet: waiting for a person to confirm it")
        who = (
            obj.confirmed_by.get_full_name() or obj.confirmed_by.username
            if obj.confirmed_by
            else "-"
        )
        return f"{moment_text(obj.confirmed_at, obj.utility.zone)} ({who})"

    @admin.display(description=gettext_lazy("What the meters reported"))
    def meter_reports(self, obj):
        n = detected.outage_meter_reports(outage=obj)
        return format_html(
            '<span id="meter-reports">{}: {} {}, {} {}, {} {}; {} {}</span>',
            ngettext("%d meter", "%d meters", n["meters"]) % n["meters"],
            n["reported_off"],
            _("reported their supply off"),
            n["back_on"],
            _("back on"),
            n["still_off"],
            _("still off"),
            n["no_report"],
            _("sent no report"),
        )

    @admin.display(description=gettext_lazy("Merged"))
    def merged_text(self, obj):
        if obj.merged_into_id is None:
            merged = list(obj.merged.values_list("pk", flat=True))
            return ", ".join(f"#{pk}" for pk in merged) if merged else "-"
        url = reverse("admin:outages_outage_change", args=[obj.merged_into_id])
        return format_html('{} <a href="{}">#{}</a>', _("Into"), url, obj.merged_into_id)

    # --- Merging --------------------------------------------------------------------------

    def has_publish_permission(self, request):
        return request.user.has_perm("outages.publish_outage")

    @admin.action(description=gettext_lazy("Merge selected outages"), permissions=["publish"])
    def merge_selected(self, request, queryset):
        try:
            kept = detected.outages_merge(
                outage_ids=list(queryset.values_list("pk", flat=True)), actor=request.user
            )
        except DomainError as refused:
            self.message_user(request, _("Not merged: %s") % refused.message, messages.ERROR)
            return None
        merged = list(kept.merged.values_list("pk", flat=True))
        self.message_user(
            request,
            _("Merged into outage #%(pk)s, which goes on from %(start)s; %(others)s cancelled.")
            % {
                "pk": kept.pk,
                "start": moment_text(kept.actual_start, kept.utility.zone),
                "others": ", ".join(f"#{pk}" for pk in merged),
            },
        )
        return None

    @admin.display(description=gettext_lazy("Status"), ordering="status")
    def status_badge(self, obj):
        return format_html(
            '<strong style="color:#fff;background:{};padding:2px 8px;border-radius:10px;'
            'white-space:nowrap">{}</strong> <small>{}</small>',
            STATUS_COLOURS.get(obj.status, "#333"),
            obj.get_status_display(),
            obj.get_kind_display(),
        )

    @admin.display(description=gettext_lazy("Outage"), ordering="pk")
    def title(self, obj):
        return f"#{obj.pk} {obj.reason}"

    @admin.display(description=gettext_lazy("Utility"), ordering="utility__name")
    def utility_code(self, obj):
        return format_html('<span title="{}">{}</span>', obj.utility.name, obj.utility.code)

    @admin.display(description=gettext_lazy("When (local)"), ordering="planned_start")
    def when_local(self, obj):
        """ "2026-12-02 09:00 → 13:00 +03", or both dates when it spans days."""
        zone = obj.utility.zone
        start, end = obj.planned_start.astimezone(zone), obj.planned_end.astimezone(zone)
        if start.date() == end.date() and start.utcoffset() == end.utcoffset():
            return f"{start:%Y-%m-%d %H:%M} → {end:%H:%M %Z}"
        return f"{moment_text(obj.planned_start, zone)} → {moment_text(obj.planned_end, zone)}"

    @admin.display(description=gettext_lazy("Published (local)"))
    def published_local(self, obj):
        return moment_text(obj.published_at, obj.utility.zone)

    @admin.display(description=gettext_lazy("Meters"))
    def affected_meters(self, obj):
        return selectors.outage_meter_count(outage=obj)

    @admin.display(description=gettext_lazy("Affected"))
    def affected_summary(self, obj):
        preview = selectors.outage_preview(outage=obj, sample_size=0)
        return format_html('<span id="affected-summary">{}</span>', affected_text(preview))

    @admin.display(description=gettext_lazy("Times (local)"))
    def local_times(self, obj):
        zone = obj.utility.zone
        return format_html(
            "{} {} → {}<br>{} {} → {}<br><small>{}</small>",
            _("Planned"),
            moment_text(obj.planned_start, zone),
            moment_text(obj.planned_end, zone),
            _("Actual"),
            moment_text(obj.actual_start, zone),
            moment_text(obj.actual_end, zone),
            obj.utility.timezone,
        )

    @admin.display(description=gettext_lazy("Reminder (local)"))
    def reminder(self, obj):
        at = selectors.reminder_at(outage=obj)
        if at is None:
            return "-"
        sent = obj.reminded_version is not None and obj.reminded_version == obj.version
        return moment_text(at, obj.utility.zone) + (f" ({_('sent')})" if sent else "")

    @admin.display(description=gettext_lazy("Notice delivery"))
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

    @admin.display(description=gettext_lazy("Grid"))
    def scope_text(self, obj):
        """The chosen grid, each element with its place in the grid and its utility."""
        labels = [area_label(a) for a in obj.areas.select_related("utility")]
        labels += [feeder_label(f) for f in obj.feeders.select_related("area__utility")]
        labels += [
            transformer_label(t) for t in obj.transformers.select_related("feeder__area__utility")
        ]
        meters = obj.meters.count()
        if meters:
            labels.append(ngettext("%d single meter", "%d single meters", meters) % meters)
        return format_html_join("", "<div>{}</div>", ((label,) for label in labels)) or "-"

    @admin.display(description=gettext_lazy("Consumers read"))
    def consumer_place(self, obj):
        """The place as the notice says it, in each language the utility writes to."""
        place = selectors.outage_place(outage=obj)
        languages = obj.utility.languages or [obj.utility.default_language]
        return format_html_join(
            "",
            '<div lang="{}" dir="auto" class="consumer-place" id="consumer-place-{}">{}</div>',
            ((language, language, place.said_in(language)) for language in languages),
        )

    # --- Form -----------------------------------------------------------------------------

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []  # a new outage has no history yet

    def _tree_editable(self, request, obj) -> bool:
        if obj is None:
            return True
        return obj.status == Outage.Status.DRAFT and self.has_change_permission(request, obj)

    def get_fieldsets(self, request, obj=None):
        if self._tree_editable(request, obj):
            where = ["grid", "meters"] + (["consumer_place"] if obj is not None else [])
        else:
            where = ["scope_text", "consumer_place"]
        fieldsets = (
            *self.head_fieldsets,
            (_("Where"), {"fields": where, "description": self.where_help}),
        )
        if obj is None:
            return fieldsets
        if obj.source == Outage.Source.METERS:
            fieldsets = (*fieldsets, (_("Detected from the meters"), {"fields": DETECTION_FIELDS}))
        return (*fieldsets, self.status_fieldset)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        if obj.status != Outage.Status.DRAFT:
            # After publishing, the schedule changes only through Reschedule (which notifies).
            head = flatten_fieldsets(self.head_fieldsets)
            return [*head, "scope_text", "consumer_place", *STATUS_FIELDS, *DETECTION_FIELDS]
        return ["consumer_place", "scope_text", *STATUS_FIELDS, *DETECTION_FIELDS]

    def get_form(self, request, obj=None, change=False, **kwargs):
        fields = kwargs.get("fields")
        if fields is None:
            fields = flatten_fieldsets(self.get_fieldsets(request, obj))
        if "grid" in fields:  # the tree's checkboxes post these
            fields = [*fields, *(name for name in GRID_FIELDS if name not in fields)]
        kwargs["fields"] = fields
        form = super().get_form(request, obj, change=change, **kwargs)
        tree = partial(selectors.grid_tree, utility_ids=staff_utility_ids(request.user))
        return type(form.__name__, (form,), {"grid_tree": staticmethod(tree)})

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name in GRID_CHOICES:
            field_class, related = GRID_CHOICES[db_field.name]
            kwargs["form_class"] = field_class
            kwargs["queryset"] = db_field.related_model._default_manager.select_related(*related)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

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
            changes={name: "changed" for name in form.changed_data if name != "grid"},
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
            utility = Utility.objects.filter(pk=utility_id).first()
            if utility:
                return utility.zone
        return None

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        zone = self._zone_for(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "local_zone": zone,
            "local_zone_now": moment_text(timezone.now(), zone) if zone else "",
        }
        if object_id:
            outage = self.get_queryset(request).filter(pk=object_id).first()
            if outage and outage.status != Outage.Status.DRAFT:
                # Nothing on the page is editable: its changes go through the steps.
                extra_context.update(
                    show_save=False, show_save_and_continue=False, show_save_and_add_another=False
                )
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
