"""The billing admin's own form pages (move out and in, removal grounds, confirmations), drawn
in the admin's frame with the shared template admin/billing/form.html."""

from __future__ import annotations

from django.template.response import TemplateResponse


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
