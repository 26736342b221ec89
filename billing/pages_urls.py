from __future__ import annotations

from django.urls import path

from billing import pages

urlpatterns = [
    path("simulated/<str:reference>/", pages.simulated_checkout, name="pay-simulated"),
    # The simulated gateway's API, asked by reconciliation (billing.gateway.SimulatedGateway).
    path(
        "simulated/api/payments/<str:reference>/",
        pages.simulated_status,
        name="pay-simulated-status",
    ),
    path("link/<str:token>/", pages.payment_link, name="pay-link"),
]
