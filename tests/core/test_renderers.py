from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.utils.translation import gettext_lazy
from rest_framework.renderers import JSONRenderer

from core.renderers import OrjsonRenderer

DOCUMENT = {
    "amount": "1.500",
    "rate": Decimal("0.002500"),
    "as_of": datetime(2026, 11, 22, 9, 0, 0, 123456, tzinfo=UTC),
    "start": datetime(2026, 11, 1, tzinfo=ZoneInfo("Asia/Kuwait")),
    "london": datetime(2026, 12, 1, 12, tzinfo=ZoneInfo("Europe/London")),
    "day": date(2026, 12, 18),
    "at": time(18, 30),
    "lasted": timedelta(minutes=90),
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "message": gettext_lazy("This field is required."),
    "name": "فهد المطيري",
    "separator": "a\u2028b\u2029c",
    "counts": {1: "one", "2": [True, False, None]},
    "values": (1, 2, 3),
    "nothing": None,
}


def test_it_writes_what_drfs_renderer_writes():
    ours = OrjsonRenderer().render(DOCUMENT)
    drf = JSONRenderer().render(DOCUMENT)
    assert ours == drf
    assert b"2026-11-22T09:00:00.123456Z" in ours and b"2026-11-01T00:00:00+03:00" in ours


def test_floats_mean_the_same():
    document = {"average_wh": 412.3, "tiny": 1e-7, "big": 1e16, "kw": 12.0}
    ours = OrjsonRenderer().render(document)
    assert json.loads(ours) == json.loads(JSONRenderer().render(document))


def test_an_indented_answer_is_drfs():
    accepted = "application/json; indent=4"
    assert OrjsonRenderer().render(DOCUMENT, accepted) == JSONRenderer().render(DOCUMENT, accepted)


def test_what_orjson_refuses_goes_to_drf():
    document = {"huge": 2**70, "amount": Decimal("1.5")}
    assert OrjsonRenderer().render(document) == JSONRenderer().render(document)
    assert OrjsonRenderer().render(None) == b""


def test_the_api_answers_through_it(client):
    response = client.get("/api/v1/meters/")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_authenticated"
