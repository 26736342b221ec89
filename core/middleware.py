"""Middleware of our own. Settings name them in MIDDLEWARE."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from core.errors import error_body
from core.http import content_length

NUL_MESSAGE = "The request may not contain the NUL character (%00)."
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class RefuseNulMiddleware:
    """Refuse (400 invalid_character) a request whose path, query string, cookies or form fields
    hold a NUL character, before any view sees it.

    PostgreSQL cannot store NUL in text, nor even compare text with it: a filter on a client's
    string holding one fails as a server error, wherever it is used. JSON bodies are checked by
    core.parsers.json_loads_bounded; this covers what does not go through it. Multipart bodies
    are checked only within DATA_UPLOAD_MAX_MEMORY_SIZE: a larger one is an upload (an
    attachment), which its view refuses by size before it is read, and whose fields are files.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self._holds_nul(request):
            if request.path.startswith("/api/"):
                return JsonResponse(error_body("invalid_character", NUL_MESSAGE), status=400)
            return HttpResponseBadRequest(NUL_MESSAGE)
        return self.get_response(request)

    @staticmethod
    def _holds_nul(request: HttpRequest) -> bool:
        if "\x00" in request.path:  # %00 in the path is decoded into it
            return True
        query = request.META.get("QUERY_STRING", "")
        if "%00" in query or "\x00" in query:
            return True
        if any("\x00" in name or "\x00" in value for name, value in request.COOKIES.items()):
            return True
        if request.method not in ("POST", "PUT", "PATCH"):
            return False
        if request.path.startswith("/api/"):
            # The API's own parsers read its bodies: JSON through json_loads_bounded, multipart
            # fields through serializers' CharFields (DRF refuses NUL in them). Reading a form
            # here would spend the stream, and a view that takes no forms would then see an
            # empty body (400) instead of answering 415 unsupported_media_type.
            return False
        content_type = request.content_type or ""
        if content_type == FORM_TYPES[0]:
            # Django refuses a form body over DATA_UPLOAD_MAX_MEMORY_SIZE itself (400).
            return b"%00" in request.body or b"\x00" in request.body
        if content_type == FORM_TYPES[1] and _small(request):
            fields = [(name, value) for name, values in request.POST.lists() for value in values]
            files = [
                (name, upload.name or "") for name, ups in request.FILES.lists() for upload in ups
            ]
            return any("\x00" in name or "\x00" in value for name, value in fields + files)
        return False


def _small(request: HttpRequest) -> bool:
    from django.conf import settings

    return 0 < content_length(request) <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE


class StaffZoneMiddleware:
    """In the admin, a staff member whose utilities all share one zone sees every time in it, for
    the whole request: lists, forms, custom pages, what they type into a time field. Others (a
    superuser, staff of utilities in several zones) keep UTC, named as such; their lists and
    object pages show each row in its own utility's zone (core.admin.UtilityScopedAdmin). Every
    time shown carries its zone either way (config/formats)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        zone = self._zone(request)
        if zone is None:
            return self.get_response(request)
        with timezone.override(zone):
            return self.get_response(request)

    @staticmethod
    def _zone(request: HttpRequest):
        try:
            prefix = reverse("admin:index")
        except NoReverseMatch:
            return None
        user = getattr(request, "user", None)
        if not request.path.startswith(prefix) or user is None or not user.is_authenticated:
            return None
        from core.admin import staff_zone  # the admin's module, loaded only for its pages

        return staff_zone(user)
