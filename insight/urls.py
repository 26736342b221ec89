"""Placeholder until this module's endpoints land in this session."""

from __future__ import annotations

urlpatterns: list = []
