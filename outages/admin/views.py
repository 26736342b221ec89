"""The outage's step pages: preview and publish, reschedule, cancel, mark started, mark restored;
for an outage the meters reported, confirm it, set the restoration estimate and split it. Each shows where (in the consumers' words), when (local, with the zone), who is affected and the
exact notice consumers will get, then runs one service."""

from __future__ import annotations

from datetime import datetime

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from core.errors import DomainError
from core.timebuckets import moment_text
from notifications import categories as c
from outages import detected, selectors, services
from outages.admin.forms import (
    CancelForm,
    ConfirmForm,
    EstimateForm,
    PublishForm,
    RescheduleForm,
    RestoreForm,
    SplitForm,
    StartForm,
)
from outages.models import Outage

# step: (form, title, button)
STEPS = {
    "publish": (
        PublishForm,
        gettext_lazy("Preview and publish"),
        gettext_lazy("Publish and notify consumers"),
    ),
    "reschedule": (
        RescheduleForm,
        gettext_lazy("Reschedule"),
        gettext_lazy("Reschedule and notify consumers"),
    ),
    "cancel": (CancelForm, gettext_lazy("Cancel outage"), gettext_lazy("Cancel the outage")),
    "start": (StartForm, gettext_lazy("Mark started"), gettext_lazy("Mark started")),
    "restore": (
        RestoreForm,
        gettext_lazy("Mark restored"),
        gettext_lazy("Mark restored and notify consumers"),
    ),
    "confirm": (
        ConfirmForm,
        gettext_lazy("Confirm the outage"),
        gettext_lazy("Confirm: the meters are right"),
    ),
    "estimate": (
        EstimateForm,
        gettext_lazy("Set the restoration estimate"),
        gettext_lazy("Set the estimate and tell consumers"),
    ),
    "split": (
        SplitForm,
        gettext_lazy("Split the outage"),
        gettext_lazy("Split the chosen transformers off"),
    ),
}


def steps_for(outage: Outage) -> list[str]:
    status, planned = outage.status, outage.kind == Outage.Kind.PLANNED
    if status == Outage.Status.IN_PROGRESS and not planned:
        steps = ["estimate", "restore"]
        if outage.source == Outage.Source.METERS:
            steps = ["split", *steps]
            if outage.confirmed_at is None:
                steps = ["confirm", *steps]
        return steps
    return {
        Outage.Status.DRAFT: ["publish", "cancel"],
        Outage.Status.PUBLISHED: ["reschedule", "start", "cancel"] if planned else [],
        Outage.Status.IN_PROGRESS: ["restore"],
    }.get(status, [])


def transformer_choice_label(transformer, meters: int) -> str:
    """ "T0012 · Al Olaya, King Fahd Road · 14 meters": the code staff know it by, the place
    words consumers know, and how many of the outage's meters hang on it."""
    locality = transformer.locality_en or transformer.locality or transformer.feeder.area.name
    streets = transformer.streets_en or transformer.streets
    place = f"{locality}, {streets}" if streets else locality
    count = ngettext("%d meter", "%d meters", meters) % meters
    return f"{transformer.code} · {place} · {count}"


def _form_for(step: str, outage: Outage, data, initial: dict):
    form_class = STEPS[step][0]
    if step == "split":
        choices = [
            (t.pk, transformer_choice_label(t, n))
            for t, n in detected.outage_transformers(outage=outage)
        ]
        return form_class(data, initial=initial, choices=choices)
    return form_class(data, initial=initial)


def affected_text(preview: selectors.Preview) -> str:
    """ "3 meters, 3 consumer accounts, 1 person to notify" """
    return _("%(meters)s, %(accounts)s, %(people)s to notify") % {
        "meters": ngettext("%d meter", "%d meters", preview.meters) % preview.meters,
        "accounts": ngettext("%d consumer account", "%d consumer accounts", preview.accounts)
        % preview.accounts,
        "people": ngettext("%d person", "%d people", preview.users) % preview.users,
    }


def _notice_category(outage: Outage, step: str) -> str | None:
    """The notice the step sends, to show its exact text before staff send it."""
    if step == "publish":
        return selectors.outage_notice_category(outage=outage)
    if step == "cancel" and outage.status == Outage.Status.PUBLISHED:
        return c.OUTAGE_CANCELLED
    return None


def _plain_form(value):
    return value.isoformat() if isinstance(value, datetime) else value


class OutageStepsMixin:
    """The step pages of OutageAdmin: one URL per step, one service per step."""

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
        title, button = STEPS[step][1], STEPS[step][2]
        zone = outage.utility.zone
        with timezone.override(zone):
            initial = {}
            if step in ("start", "restore"):
                initial["at"] = timezone.localtime(timezone.now()).replace(second=0, microsecond=0)
            if step == "reschedule":
                initial = {"planned_start": outage.planned_start, "planned_end": outage.planned_end}
            if step == "estimate":
                initial = {"estimated_restoration": outage.planned_end}
            form = _form_for(
                step, outage, request.POST if request.method == "POST" else None, initial
            )
            late_message = None
            if step == "publish" and services.notice_is_late(outage=outage, now=timezone.now()):
                consequence = services.late_notice_consequence(utility=outage.utility)
                late_message = _(
                    "Published now, consumers get less than the %(hours)s hours' notice the "
                    "utility promises. Publishing records a late notice: %(consequence)s."
                ) % {"hours": outage.utility.outage_notice_hours, "consequence": consequence}
                # What confirming commits the utility to, in the box's own words.
                form.fields["confirm_late"].label = _(
                    "I confirm publishing with late notice; %(consequence)s."
                ) % {"consequence": consequence}
            if request.method == "POST" and form.is_valid():
                try:
                    self._run_step(request, outage, step, form.cleaned_data)
                except services.LateNoticeUnconfirmed as refused:
                    late_message = refused.message
                    form.add_error("confirm_late", _("Tick this box to publish with late notice."))
                except DomainError as refused:
                    form.add_error(None, refused.message)
                else:
                    return redirect(reverse("admin:outages_outage_change", args=[outage.pk]))
            preview = selectors.outage_preview(outage=outage, sample_size=50)
            reminder = selectors.reminder_at(outage=outage)
            category = _notice_category(outage, step)
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
                "affected": affected_text(preview),
                "late_message": late_message,
                "zone_name": outage.utility.timezone,
                "start_local": moment_text(outage.planned_start, zone),
                "end_local": moment_text(outage.planned_end, zone),
                "reminder_local": moment_text(reminder, zone) if reminder else "-",
                "area": selectors.outage_area_text(
                    outage=outage, language=outage.utility.default_language
                ),
                "notices": selectors.outage_notice_preview(outage=outage, category=category)
                if category
                else [],
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
            affected = selectors.outage_meter_count(outage=result)
            message = _("Published. %(meters)s affected; notices are on their way.") % {
                "meters": ngettext("%d meter", "%d meters", affected) % affected
            }
        elif step == "reschedule":
            result = services.outage_reschedule(
                outage_id=outage.pk,
                actor=actor,
                planned_start=data["planned_start"],
                planned_end=data["planned_end"],
                confirm_late=data["confirm_late"],
            )
            message = _("Rescheduled; consumers are told the new time.")
        elif step == "cancel":
            result = services.outage_cancel(outage_id=outage.pk, actor=actor, note=data["note"])
            message = _("Cancelled.")
            if before == Outage.Status.PUBLISHED:
                message += " " + _("Consumers are told.")
        elif step == "confirm":
            result = detected.outage_confirm(outage_id=outage.pk, actor=actor)
            message = _("Confirmed: the outage stands as the meters reported it.")
        elif step == "estimate":
            result = detected.outage_estimate_set(
                outage_id=outage.pk,
                estimated_restoration=data["estimated_restoration"],
                actor=actor,
            )
            message = _("Estimate set to %(at)s; consumers are told.") % {
                "at": moment_text(result.planned_end, outage.utility.zone)
            }
        elif step == "split":
            new = detected.outage_split(
                outage_id=outage.pk, transformer_ids=data["transformers"], actor=actor
            )
            moved = new.affected.count()
            message = _("Split: %(meters)s now in outage #%(pk)s.") % {
                "meters": ngettext("%d meter", "%d meters", moved) % moved,
                "pk": new.pk,
            }
            self.audit(request, new, "outage:split_from", {"from": outage.pk})
            result = Outage.objects.get(pk=outage.pk)
        elif step == "start":
            result = services.outage_start(outage_id=outage.pk, actor=actor, at=data["at"])
            message = _("Marked started.")
        else:
            result = services.outage_restore(outage_id=outage.pk, actor=actor, at=data["at"])
            message = _("Marked restored; consumers are told power is back.")
        self.audit(
            request,
            result,
            f"outage:{step}",
            {"status": [before, result.status], **{k: _plain_form(v) for k, v in data.items()}},
        )
        messages.success(request, message)
