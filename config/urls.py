from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core.apis import healthz
from core.metrics.apis import metrics


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema: YAML, or JSON when asked for by `Accept: application/json` or
    `?format=json` (the API takes no `format` parameter otherwise: URL_FORMAT_OVERRIDE is off)."""

    def perform_content_negotiation(self, request, force=False):
        wanted = request.query_params.get("format")
        for renderer in self.get_renderers():
            if wanted and renderer.format == wanted:
                return renderer, renderer.media_type
        return super().perform_content_negotiation(request, force)


admin.site.site_header = "Smart-meter utility administration"
admin.site.site_title = "Smart-meter admin"
# No "View site" link: consumers use the mobile app, so there is no web site behind the admin
# ("/" is a 404), and the API docs are a developers' page, not somewhere counter staff should land.
admin.site.site_url = None

api_v1 = [
    path("", include("accounts.urls")),
    path("", include("meters.urls")),
    path("", include("billing.urls")),
    path("", include("notifications.urls")),
    path("", include("outages.urls")),
    path("", include("servicerequests.urls")),
    path("", include("insight.urls")),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("pay/", include("billing.pages_urls")),
    path("admin/", admin.site.urls),
]

handler400 = "core.errors.handler400"
handler403 = "core.errors.handler403"
handler404 = "core.errors.handler404"
handler500 = "core.errors.handler500"
