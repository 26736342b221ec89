from __future__ import annotations

import json
from decimal import Decimal

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is larger than this endpoint accepts."
    default_code = "payload_too_large"


class BoundedJSONParser(JSONParser):
    """JSON, refused past DATA_UPLOAD_MAX_MEMORY_SIZE.

    DRF reads the body from the request stream, which skips Django's own size check on
    request.body, so the bound is kept here: never more than the limit is read into memory.
    """

    max_bytes: int | None = None

    def parse(self, stream, media_type=None, parser_context=None):
        limit = self.max_bytes or settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        data = stream.read(limit + 1) if stream is not None else b""
        if len(data) > limit:
            raise PayloadTooLarge()
        try:
            # Numbers with a fraction become Decimal, never float: 1.005 KWD stays 1.005.
            return json.loads(data.decode("utf-8"), parse_float=Decimal)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
