"""The admin index becomes the staff dashboard (console.dashboard): the stock index view, its
template extended with the figures above the app list, its context given the dashboard."""

from __future__ import annotations

from django.contrib import admin

from console.dashboard import dashboard_context

_stock_index = admin.site.index


def dashboard_index(request, extra_context=None):
    """admin.site.index with the dashboard in its context: the app list, permissions and
    each_context stay Django's own."""
    return _stock_index(
        request, extra_context={**dashboard_context(request), **(extra_context or {})}
    )


# The site's URLs are built after every admin module is imported (config/urls.py), so they
# route the index here.
admin.site.index = dashboard_index
admin.site.index_template = "console/dashboard.html"

# The account page and the search by every key staff hold (console/accounts.py).
from console import accounts  # noqa: E402, F401
