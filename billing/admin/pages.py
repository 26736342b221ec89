"""The billing admin's own form pages (move out and in, removal grounds, confirmations), drawn
in the admin's frame with the shared template admin/billing/form.html."""

from __future__ import annotations

from django import forms
from django.template.response import TemplateResponse

from core.errors import DomainError


class FormPageMixin:
    """For a ModelAdmin with custom views: `_render(request, form, title)` draws the form."""

    def _render(self, request, form, title: str):
        return TemplateResponse(
            request,
            "admin/billing/form.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": title,
                "form": form,
            },
        )


def form_errors_add(form: forms.Form, exc: DomainError) -> None:
    """A service's refusal on the form: each field error beside its field, else the message."""
    placed = False
    for field, errors in exc.fields.items():
        if field in form.fields:
            for error in errors:
                form.add_error(field, error["message"])
            placed = True
    if not placed:
        form.add_error(None, exc.message)
