from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core.apis import healthz

admin.site.site_header = "Smart-meter utility administration"
admin.site.site_title = "Smart-meter admin"

api_v1 = [
    path("", include("accounts.urls")),
    path("", include("meters.urls")),
    path("", include("billing.urls")),
    path("", include("notifications.urls")),
    path("", include("outages.urls")),
    path("", include("servicerequests.urls")),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("healthz", healthz, name="healthz"),
    path("pay/", include("billing.pages_urls")),
    path("admin/", admin.site.urls),
]

handler400 = "core.errors.handler400"
handler403 = "core.errors.handler403"
handler404 = "core.errors.handler404"
handler500 = "core.errors.handler500"
