from __future__ import annotations

from django.urls import include, path

from accounts import apis

urlpatterns = [
    path("auth/code/", apis.SignInStartApi.as_view(), name="auth-code"),
    path("auth/token/", apis.SignInCompleteApi.as_view(), name="auth-token"),
    path("auth/token/refresh/", apis.TokenRefreshApi.as_view(), name="auth-token-refresh"),
    path("auth/logout/", apis.SignOutApi.as_view(), name="auth-logout"),
    path("me/", apis.ProfileApi.as_view(), name="me"),
    path("utilities/", apis.UtilityListApi.as_view(), name="utilities"),
    path("links/", apis.LinkListApi.as_view(), name="links"),
    path("links/confirm/", apis.LinkConfirmApi.as_view(), name="links-confirm"),
    path("links/<int:link_id>/", apis.LinkDetailApi.as_view(), name="link-detail"),
    path("", include("accounts.share_apis")),
    path(
        "utility/accounts/<str:consumer_id>/",
        apis.UtilityAccountApi.as_view(),
        name="utility-account",
    ),
]
