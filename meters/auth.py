from __future__ import annotations

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from meters.models import ServiceToken, token_digest


class ServiceTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer hes_…` for head-end systems. A consumer's JWT is not accepted here."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace").split()
        if not header or header[0] != self.keyword:
            return None
        if len(header) != 2 or not header[1].startswith("hes_"):
            raise exceptions.AuthenticationFailed(
                "A head-end service token is required here.", code="not_a_service_token"
            )
        token = (
            ServiceToken.objects.select_related("utility")
            .filter(digest=token_digest(header[1]), revoked_at__isnull=True)
            .first()
        )
        if token is None:
            raise exceptions.AuthenticationFailed(
                "Unknown or revoked service token.", code="token_not_valid"
            )
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ServiceToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token, token

    def authenticate_header(self, request):
        return self.keyword


class ServiceTokenScheme(OpenApiAuthenticationExtension):
    target_class = ServiceTokenAuthentication
    name = "headEndToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A head-end service token (hes_…).",
        }
