"""Request bodies: JSON read within bounds (size, depth, no NUL), whoever reads it.

DRF views get BoundedJSONParser; a view that reads raw bytes itself (the gateway's webhook, the
head-end's batches) calls json_loads_bounded, so every JSON body meets the same rules.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser

# Deeper than any body we take (a batch of blocks is 3 levels). Python's json recurses once per
# level and fails near 1,000 with RecursionError: a 500 instead of a refusal.
MAX_JSON_DEPTH = 32


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is larger than this endpoint accepts."
    default_code = "payload_too_large"


# core.errors is imported where it is used: it imports DRF's views, which import this module
# (DEFAULT_PARSER_CLASSES) while core.errors is half loaded.


def _too_deep() -> Exception:
    from core.errors import DomainError

    return DomainError(
        f"The JSON is nested more than {MAX_JSON_DEPTH} levels deep.", code="too_deep"
    )


def _nul_refused() -> Exception:
    from core.errors import DomainError

    # PostgreSQL text cannot hold NUL, nor UTF-8 a lone surrogate (\\ud800 without its pair):
    # stored or even compared, either fails as a server error.
    return DomainError(
        "Text may not contain the NUL character (\\u0000) or an unpaired surrogate (\\ud800).",
        code="invalid_character",
    )


# What no text we store may hold: NUL, and surrogates JSON escapes left unpaired.
BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
# In the raw JSON: a \u0000 escape, or an escape of a surrogate (a paired one is harmless: the
# walk it triggers finds nothing).
BAD_TEXT_ESCAPE = re.compile(r"\\u(0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def _constant_refused(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _check_value(value: Any, *, max_depth: int, nul_possible: bool) -> None:
    """Walk the parsed value without recursion: refuse nesting deeper than `max_depth`, and any
    string or key holding NUL when the raw text had a \\u0000 escape (`nul_possible`)."""
    walked = {dict, list, str} if nul_possible else {dict, list}
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise _too_deep()
        if isinstance(node, dict):
            if nul_possible and any(BAD_TEXT.search(key) for key in node):
                raise _nul_refused()
            items = node.values()
        else:
            items = node
        # The types of a list in one pass at C speed: a head-end's thousands of lists of
        # numbers are skipped whole; only lists holding containers or text are walked.
        if walked.isdisjoint(map(type, items)):
            continue
        for item in items:
            kind = type(item)
            if kind is dict or kind is list:
                stack.append((item, depth + 1))
            elif nul_possible and kind is str and BAD_TEXT.search(item):
                raise _nul_refused()


def json_loads_bounded(data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON from a client: numbers with a fraction or exponent as Decimal (never float), nesting at
    most `max_depth` deep, no NUL in any string or key. Refused with DomainError (400):
    parse_error, too_deep or invalid_character.

    A raw NUL cannot appear inside a JSON string (control characters must be escaped), so only a
    text with a \\u0000 escape is searched for one; a text with few brackets cannot be deep.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        # 1.005 KWD stays 1.005; 1e400 becomes Decimal("1E+400"), which money_parse refuses.
        value = json.loads(text, parse_float=Decimal, parse_constant=_constant_refused)
    except RecursionError:
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError) as exc:
        from core.errors import DomainError

        # Python's int() refuses over 4,300 digits with ValueError: a parse error too.
        raise DomainError(f"JSON parse error - {exc}", code="parse_error") from None
    if not isinstance(value, dict | list):
        return value
    nul_possible = BAD_TEXT_ESCAPE.search(text) is not None
    if nul_possible or text.count("[") + text.count("{") > max_depth:
        _check_value(value, max_depth=max_depth, nul_possible=nul_possible)
    return value


class BoundedJSONParser(JSONParser):
    """JSON, refused past DATA_UPLOAD_MAX_MEMORY_SIZE and as json_loads_bounded refuses it.

    DRF reads the body from the request stream, which skips Django's own size check on
    request.body, so the bound is kept here: never more than the limit is read into memory.
    """

    max_bytes: int | None = None

    def parse(self, stream, media_type=None, parser_context=None):
        limit = self.max_bytes or settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        data = stream.read(limit + 1) if stream is not None else b""
        if len(data) > limit:
            raise PayloadTooLarge()
        return json_loads_bounded(data)
