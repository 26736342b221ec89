from __future__ import annotations

from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The staff console: the admin's dashboard and look, wiring several apps together. It sits
    above the domain apps (it reads them through their selectors); none of them imports it."""

    name = "console"
    verbose_name = "Staff console"
