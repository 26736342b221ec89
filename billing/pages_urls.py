from __future__ import annotations

from django.urls import path

from billing import pages

urlpatterns = [
    path("simulated/<str:reference>/", pages.simulated_checkout, name="pay-simulated"),
    path("link/<str:token>/", pages.payment_link, name="pay-link"),
]
