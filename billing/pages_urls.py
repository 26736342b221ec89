from __future__ import annotations

from django.urls import path

from billing import pages

urlpatterns = [
    # The simulated gateway's card tokenisation (its client SDK's call); before the checkout's
    # pattern, which would take "tokens" for a reference.
    path("simulated/tokens/", pages.simulated_tokens, name="pay-simulated-tokens"),
    path("simulated/<str:reference>/", pages.simulated_checkout, name="pay-simulated"),
    # The simulated gateway's API, asked by reconciliation (billing.gateway.SimulatedGateway).
    path(
        "simulated/api/payments/<str:reference>/",
        pages.simulated_status,
        name="pay-simulated-status",
    ),
    path("link/<str:token>/", pages.payment_link, name="pay-link"),
]
