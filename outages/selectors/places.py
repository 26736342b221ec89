"""Where an outage is, in the words its consumers know, and the exact notice they get."""

from __future__ import annotations

from typing import Any

from meters.models import Feeder, GridArea, Transformer
from notifications import categories as c
from notifications.messages import (
    YOUR_AREA,
    YOUR_PREMISES,
    Phrase,
    Rendered,
    message_render,
    places_phrase,
)
from outages.models import Outage

# A notice names at most this much place before it says the areas instead: an SMS is short.
PLACE_TEXT_LIMIT = 200
PLACE_AREAS_SHOWN = 3


def _words(element: Feeder | Transformer, field: str, english: bool) -> str:
    """The element's place words, in English for English readers when the utility gave them."""
    own = getattr(element, f"{field}_en").strip() if english else ""
    return own or getattr(element, field).strip()


def _feeder_place(feeder: Feeder, english: bool) -> tuple[str, str]:
    locality = _words(feeder, "locality", english) or feeder.area.name
    return (locality, _words(feeder, "streets", english))


def _transformer_place(transformer: Transformer, english: bool) -> tuple[str, str]:
    if transformer.locality.strip():
        return (_words(transformer, "locality", english), _words(transformer, "streets", english))
    locality, streets = _feeder_place(transformer.feeder, english)
    return (locality, _words(transformer, "streets", english) or streets)


def _place(element: GridArea | Feeder | Transformer, english: bool) -> tuple[str, str]:
    if isinstance(element, GridArea):
        return (element.name, "")
    if isinstance(element, Feeder):
        return _feeder_place(element, english)
    return _transformer_place(element, english)


def _grouped(places: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """One entry per locality, in the order chosen; a locality meant whole drops its streets."""
    groups: dict[str, list[str] | None] = {}
    for locality, streets in places:
        if locality in groups and groups[locality] is None:
            continue
        if not streets:
            groups[locality] = None
        elif streets not in groups.setdefault(locality, []):
            groups[locality].append(streets)
    return [(locality, streets or []) for locality, streets in groups.items()]


def outage_place(*, outage: Outage) -> Phrase:
    """Where the outage is, in the words its consumers know (said in each language by the
    notice): each chosen element's locality and streets as the utility gave them (a feeder
    without its own: its transformers'), else its area's name; never an equipment code. Single
    meters alone are "your premises". A place too long for an SMS is said by its areas instead."""
    areas = list(outage.areas.all())
    feeders = list(outage.feeders.select_related("area"))
    transformers = list(outage.transformers.select_related("feeder__area"))
    # A feeder without a locality of its own is said by its transformers' places.
    wordless = {feeder.pk: [] for feeder in feeders if not (feeder.locality or feeder.streets)}
    for transformer in Transformer.objects.filter(feeder_id__in=wordless).select_related(
        "feeder__area"
    ):
        wordless[transformer.feeder_id].append(transformer)
    elements: list[GridArea | Feeder | Transformer] = [*areas]
    for feeder in feeders:
        elements += wordless.get(feeder.pk) or [feeder]
    elements += transformers
    if not elements:
        return YOUR_PREMISES if outage.meters.exists() else YOUR_AREA
    # Single meters beside grid elements: the place of each one's transformer (a bounded list,
    # chosen one by one by staff).
    meters = outage.meters.select_related("transformer__feeder__area")[:50]
    elements += [meter.transformer for meter in meters if meter.transformer is not None]
    phrase = places_phrase(
        _grouped([_place(element, False) for element in elements]),
        english=_grouped([_place(element, True) for element in elements]),
    )
    if max(len(phrase.en), len(phrase.ar), len(phrase.hi)) <= PLACE_TEXT_LIMIT:
        return phrase
    names = list(dict.fromkeys(_area_of(element).name for element in elements))
    return places_phrase(
        [(name, []) for name in names[:PLACE_AREAS_SHOWN]], more=len(names) > PLACE_AREAS_SHOWN
    )


def _area_of(element: GridArea | Feeder | Transformer) -> GridArea:
    if isinstance(element, GridArea):
        return element
    return element.area if isinstance(element, Feeder) else element.feeder.area


def outage_area_text(*, outage: Outage, language: str = "en") -> str:
    """The outage's place as a consumer reading `language` is told it (outage_place)."""
    return outage_place(outage=outage).said_in(language)


def outage_notice_context(*, outage: Outage) -> dict[str, Any]:
    """What every notice of the outage says: its place (in the reader's language) and times."""
    return {
        "outage_id": outage.pk,
        "area": outage_place(outage=outage),
        "start": outage.planned_start,
        "end": outage.planned_end,
    }


def outage_notice_category(*, outage: Outage) -> str:
    """The category of the notice publishing (or rescheduling) the outage now sends."""
    if outage.kind == Outage.Kind.UNPLANNED:
        return c.OUTAGE_UNPLANNED_ETA
    return c.OUTAGE_PLANNED if outage.version < 1 else c.OUTAGE_RESCHEDULED


def outage_notice_preview(
    *, outage: Outage, category: str | None = None
) -> list[tuple[str, Rendered]]:
    """The exact title and body consumers get, in each language the utility writes to, its
    default first: what the publish page shows staff before they send it."""
    category = category or outage_notice_category(outage=outage)
    utility = outage.utility
    languages = [utility.default_language] + [
        language for language in (utility.languages or []) if language != utility.default_language
    ]
    context = outage_notice_context(outage=outage)
    return [
        (
            language,
            message_render(category=category, language=language, context=context, utility=utility),
        )
        for language in languages
    ]
