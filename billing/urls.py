from __future__ import annotations

from django.urls import include, path

from billing import apis
from billing.apis import utility
from core.schema import id_converter_register

id_converter_register()

urlpatterns = [
    path("accounts/<id:account_id>/balance/", apis.BalanceApi.as_view(), name="account-balance"),
    path(
        "accounts/<id:account_id>/statement/",
        apis.StatementApi.as_view(),
        name="account-statement",
    ),
    path("accounts/<id:account_id>/topups/", apis.TopUpListApi.as_view(), name="account-topups"),
    path(
        "accounts/<id:account_id>/topups/<uuid:topup_id>/",
        apis.TopUpDetailApi.as_view(),
        name="account-topup",
    ),
    path("accounts/<id:account_id>/bills/", apis.BillListApi.as_view(), name="account-bills"),
    path("payments/webhooks/<slug:gateway>/", apis.WebhookApi.as_view(), name="payment-webhook"),
    path("partners/payment-codes/<str:code>/", apis.PaymentCodeApi.as_view(), name="payment-code"),
    path(
        "partners/payment-codes/<str:code>/payments/",
        apis.PaymentCodePayApi.as_view(),
        name="payment-code-pay",
    ),
    path("utility/move-outs/", utility.MoveOutApi.as_view(), name="utility-move-out"),
    path("utility/move-ins/", utility.MoveInApi.as_view(), name="utility-move-in"),
    # Automatic top-ups and saved cards; emergency credit and the run-out forecast; paying for
    # an account one does not hold.
    path("", include("billing.apis.autotopup")),
    path("", include("billing.apis.affordability")),
    path("", include("billing.apis.forecast")),
    path("", include("billing.apis.payfor")),
]
