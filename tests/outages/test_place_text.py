"""The consumer's notice names the place in words the consumer knows (the locality and streets the
utility gave, or the area), in Arabic, English and Hindi, and never an equipment code."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from notifications.models import Notification
from outages import selectors, services
from tests.outages.factories import (
    FeederFactory,
    GridAreaFactory,
    OutageFactory,
    TransformerFactory,
    consumer_on,
    saudi,
    staff_member,
)

pytestmark = pytest.mark.django_db
START = datetime(2026, 12, 10, 6, tzinfo=UTC)  # 09:00 in Riyadh
EARLY = datetime(2026, 12, 1, 6, tzinfo=UTC)
CODES = ("F01", "F02", "T0001", "T0002", "T0003", "Transformer", "Feeder")


@pytest.fixture
def salmiya():
    utility = saudi()
    area = GridAreaFactory(utility=utility, name="Hawalli", code="A1")
    block4 = FeederFactory(
        area=area, name="Feeder 1", code="F01", locality="Salmiya, block 4", streets=""
    )
    return {
        "utility": utility,
        "area": area,
        "block4": block4,
        "t1": TransformerFactory(
            feeder=block4, name="Transformer 1", code="T0001", streets="streets 1–12"
        ),
        "t2": TransformerFactory(
            feeder=block4, name="Transformer 2", code="T0002", streets="streets 14–20"
        ),
        "bare": TransformerFactory(
            feeder=FeederFactory(area=area, name="Feeder 2", code="F02"),
            name="Transformer 3",
            code="T0003",
        ),
    }


def _outage(grid, **scope):
    outage = OutageFactory(
        utility=grid["utility"], planned_start=START, planned_end=START.replace(hour=10)
    )
    for name, elements in scope.items():
        getattr(outage, name).set(elements)
    return outage


def _said(outage) -> dict[str, str]:
    place = selectors.outage_place(outage=outage)
    return {language: place.said_in(language) for language in ("en", "ar", "hi")}


def test_the_transformers_streets_are_grouped_under_their_locality_in_each_language(salmiya):
    outage = _outage(salmiya, transformers=[salmiya["t1"], salmiya["t2"]])

    assert _said(outage) == {
        "en": "Salmiya, block 4: streets 1–12, streets 14–20",
        "ar": "Salmiya, block 4: streets 1–12، streets 14–20",
        "hi": "Salmiya, block 4: streets 1–12, streets 14–20",
    }


def test_english_readers_get_the_english_words_when_the_utility_gave_them(salmiya):
    block4 = salmiya["block4"]
    block4.locality, block4.locality_en = "السالمية، قطعة 4", "Salmiya, block 4"
    block4.save()
    transformer = salmiya["t1"]
    transformer.streets, transformer.streets_en = "الشوارع 1–12", "streets 1–12"
    transformer.save()
    outage = _outage(salmiya, transformers=[transformer])

    assert _said(outage) == {
        "en": "Salmiya, block 4: streets 1–12",
        "ar": "السالمية، قطعة 4: الشوارع 1–12",
        "hi": "السالمية، قطعة 4: الشوارع 1–12",  # no Hindi words given: the utility's own
    }


def test_a_feeder_is_its_locality_and_several_places_are_listed(salmiya):
    outage = _outage(salmiya, feeders=[salmiya["block4"]], transformers=[salmiya["bare"]])

    # The bare transformer has no place words: its area's name stands for it.
    assert _said(outage) == {
        "en": "Salmiya, block 4; Hawalli",
        "ar": "Salmiya, block 4؛ Hawalli",
        "hi": "Salmiya, block 4; Hawalli",
    }


def test_a_feeder_without_words_of_its_own_is_said_by_its_transformers(salmiya):
    salmiya["block4"].locality = ""
    salmiya["block4"].save()
    salmiya["t1"].locality = "Salmiya, block 4"
    salmiya["t1"].save()
    outage = _outage(salmiya, feeders=[salmiya["block4"]])

    # T1 has a locality; T2 has only streets, under its feeder's (empty) locality: the area.
    assert _said(outage)["en"] == "Salmiya, block 4: streets 1–12; Hawalli: streets 14–20"


def test_a_grid_without_place_words_falls_back_to_the_area_never_a_code(salmiya):
    outage = _outage(salmiya, transformers=[salmiya["bare"]])

    said = _said(outage)

    assert said == {"en": "Hawalli", "ar": "Hawalli", "hi": "Hawalli"}


def test_single_meters_alone_are_your_premises(salmiya):
    meter, _ = consumer_on(salmiya["bare"])
    outage = _outage(salmiya, meters=[meter])

    assert _said(outage) == {"en": "your premises", "ar": "عقارك", "hi": "आपके परिसर"}


def test_a_place_too_long_for_an_sms_is_said_by_its_areas(salmiya):
    transformers = [
        TransformerFactory(
            feeder=salmiya["block4"],
            locality=f"Salmiya, block {n}",
            streets=f"streets {n}01–{n}99",
        )
        for n in range(5, 25)
    ]
    other_areas = [GridAreaFactory(utility=salmiya["utility"], name=name) for name in "BCD"]
    outage = _outage(salmiya, transformers=transformers, areas=other_areas)

    assert _said(outage) == {
        "en": "B; C; D and other areas",
        "ar": "B؛ C؛ D ومناطق أخرى",
        "hi": "B; C; D और अन्य क्षेत्रों",
    }


def test_the_notice_each_reader_gets_names_the_place_in_their_language(salmiya):
    for language in ("en", "ar", "hi"):
        consumer_on(salmiya["t1"], language=language)
    outage = _outage(salmiya, transformers=[salmiya["t1"]])

    services.outage_publish(outage_id=outage.pk, now=EARLY)

    bodies = dict(
        Notification.objects.filter(category="outage_planned").values_list("language", "body")
    )
    assert bodies["en"].startswith("Power will be off in Salmiya, block 4: streets 1–12 from ")
    assert bodies["ar"].startswith("ستنقطع الكهرباء في Salmiya, block 4: streets 1–12 من ")
    assert bodies["hi"].startswith("रखरखाव के कारण Salmiya, block 4: streets 1–12 में ")
    for body in bodies.values():
        assert not any(code in body for code in CODES), body


def test_the_publish_page_shows_the_exact_consumer_text(salmiya, client):
    consumer_on(salmiya["t1"], language="ar")
    outage = _outage(salmiya, transformers=[salmiya["t1"]])
    client.force_login(staff_member(salmiya["utility"], "planner"))

    page = client.get(f"/admin/outages/outage/{outage.pk}/publish/").content.decode()

    services.outage_publish(outage_id=outage.pk, now=EARLY)
    sent = Notification.objects.get(category="outage_planned")
    assert sent.language == "ar" and sent.body in page and sent.title in page
    assert 'id="outage-area" dir="auto">Salmiya, block 4: streets 1–12<' in page


def test_the_consumer_api_says_the_place_in_the_readers_language(salmiya, make_api):
    _, [reader] = consumer_on(salmiya["t1"], language="ar")
    outage = _outage(salmiya, transformers=[salmiya["t1"], salmiya["t2"]])
    services.outage_publish(outage_id=outage.pk, now=EARLY)
    api = make_api(reader)

    [listed] = api.get("/api/v1/outages/").json()
    detail = api.get(f"/api/v1/outages/{outage.pk}/").json()

    assert listed["area"] == detail["area"] == "Salmiya, block 4: streets 1–12، streets 14–20"
