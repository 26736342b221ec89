"""The outage desk's forms: the outage itself (its grid chosen from the tree), the step pages,
and filing an exemption. Grid elements are always labelled with their place in the grid and
their utility: four utilities each have a "Transformer 1"."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from core.admin import ZonedSplitDateTime
from meters.models import Feeder, GridArea, Transformer
from outages.admin.tree import GridTreeWidget
from outages.models import Outage

GRID_FIELDS = ("areas", "feeders", "transformers")


def area_label(area: GridArea) -> str:
    return f"{area.name} ({area.code}) · {area.utility.name}"


def feeder_label(feeder: Feeder) -> str:
    return f"{feeder.name} ({feeder.code}) · {feeder.area.name} · {feeder.area.utility.name}"


def transformer_label(transformer: Transformer) -> str:
    feeder = transformer.feeder
    own = f"{transformer.name} ({transformer.code})" if transformer.name else transformer.code
    return f"{own} · {feeder.name} ({feeder.code}) · {feeder.area.utility.name}"


class AreaChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj):
        return area_label(obj)


class FeederChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj):
        return feeder_label(obj)


class TransformerChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj):
        return transformer_label(obj)


# The related rows each label reads, fetched with the choices rather than one query a row.
GRID_CHOICES = {
    "areas": (AreaChoiceField, ("utility",)),
    "feeders": (FeederChoiceField, ("area__utility",)),
    "transformers": (TransformerChoiceField, ("feeder__area__utility",)),
}


class GridTreeField(forms.Field):
    """The tree's own slot in the form: its checkboxes post the `areas`, `feeders` and
    `transformers` fields, which validate them; this field holds nothing itself."""

    widget = GridTreeWidget

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def clean(self, value):
        return None


class OutageForm(forms.ModelForm):
    grid = GridTreeField(
        label=_("Grid"),
        help_text=_(
            "Tick an area, a feeder or a transformer: every meter under it is affected "
            "(a feeder means all its transformers)."
        ),
    )
    # Set by OutageAdmin.get_form: a callable giving the staff member's grid (selectors.grid_tree).
    grid_tree = None

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
            "planned_start": _("Start (local time)"),
            "planned_end": _("End (local time; for unplanned: estimated restoration)"),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "grid" in self.fields:
            self.fields["grid"].widget.tree = self.grid_tree
            if not self.is_bound:
                self.initial["grid"] = {
                    name: [str(pk) for pk in self._chosen(name)] for name in GRID_FIELDS
                }

    def _chosen(self, name: str) -> list[int]:
        if self.instance.pk is None:
            return [int(pk) for pk in self.initial.get(name) or [] if str(pk).isdigit()]
        return list(getattr(self.instance, name).values_list("pk", flat=True))

    def clean(self):
        data = super().clean()
        # The grid fields are posted by the tree's checkboxes: their errors are shown on it.
        for name in GRID_FIELDS:
            for error in self._errors.pop(name, []) if "grid" in self.fields else []:
                self.add_error("grid", error)
        start, end = data.get("planned_start"), data.get("planned_end")
        if start and end and end <= start:
            self.add_error("planned_end", _("The end must be after the start."))
        scope = [*GRID_FIELDS, "meters"]
        if not any(data.get(name) for name in scope if name in self.fields):
            raise forms.ValidationError(
                _("Choose where the outage is: at least one area, feeder, transformer or meter.")
            )
        utility = data.get("utility")
        if utility:
            wrong = [area_label(a) for a in data.get("areas") or [] if a.utility_id != utility.pk]
            wrong += [
                feeder_label(f)
                for f in data.get("feeders") or []
                if f.area.utility_id != utility.pk
            ]
            wrong += [
                transformer_label(t)
                for t in data.get("transformers") or []
                if t.feeder.area.utility_id != utility.pk
            ]
            wrong += [str(m) for m in data.get("meters") or [] if m.utility_id != utility.pk]
            if wrong:
                raise forms.ValidationError(
                    _("These belong to another utility than %(utility)s: %(items)s.")
                    % {"utility": utility.name, "items": "; ".join(wrong)}
                )
        return data


class PublishForm(forms.Form):
    confirm_late = forms.BooleanField(
        required=False,
        label=_("I confirm publishing with late notice."),  # worded per utility by the view
    )


class RescheduleForm(PublishForm):
    planned_start = forms.SplitDateTimeField(
        label=_("New start (local time)"), widget=ZonedSplitDateTime
    )
    planned_end = forms.SplitDateTimeField(
        label=_("New end (local time)"), widget=ZonedSplitDateTime
    )


class CancelForm(forms.Form):
    note = forms.CharField(
        required=False,
        label=_("Why (kept in the history)"),
        widget=forms.Textarea(attrs={"rows": 3}),
    )


class StartForm(forms.Form):
    at = forms.SplitDateTimeField(
        label=_("Supply went off at (local time)"), widget=ZonedSplitDateTime
    )


class RestoreForm(forms.Form):
    at = forms.SplitDateTimeField(
        label=_("Supply came back at (local time)"), widget=ZonedSplitDateTime
    )


class ExemptionFileForm(forms.Form):
    event = forms.ChoiceField(label=_("Event and standard"))
    justification = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text=_("The full justification the regulator will read."),
    )

    def __init__(self, *args, events=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["event"].choices = [("", "---------"), *events]


class ConfirmForm(forms.Form):
    """Confirming takes no input: the page shows what the meters reported."""


class EstimateForm(forms.Form):
    estimated_restoration = forms.SplitDateTimeField(
        label=_("Supply expected back at (local time)"),
        widget=ZonedSplitDateTime,
        help_text=_("Consumers under the outage are told this time."),
    )


class SplitForm(forms.Form):
    transformers = forms.TypedMultipleChoiceField(
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
        label=_("Transformers to split off"),
        help_text=_(
            "Their meters become an outage of their own, with the same start and estimate."
        ),
    )

    def __init__(self, *args, choices=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["transformers"].choices = list(choices)
