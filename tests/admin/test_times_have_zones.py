"""Every time the admin shows carries its zone. Over the demo data (`seed_demo`), a superuser and a
utility's staff member (in every role) open every admin page: each list, each add form, and the
change, history and delete pages of a few rows of every registered model, plus every custom page
of a row the admin's own URLs name (steps, receipts …). Every date-time in the visible text must
be followed by its zone (an abbreviation of a zone in use, an offset or an IANA name), and every
date-and-time input must have its zone named beside it."""

from __future__ import annotations

import re
from datetime import datetime
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.test import RequestFactory
from django.urls import reverse

from accounts.models import User, Utility
from tests.accounts.factories import UtilityFactory
from tests.admin.objects import Rows
from tests.outages.factories import staff_member

pytestmark = pytest.mark.django_db

ROLES = ["planner", "approver", "cashier", "support"]
OBJECT_PARAMS = {"object_id", "pk", "id"}
ROWS_PER_MODEL = 2

# --- What a time looks like ------------------------------------------------------------------
MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?"
CLOCK = r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:\s*(?:a\.m\.|p\.m\.|[AaPp]\.?[Mm]\b\.?))?"
CLOCK_WORDS = r"(?:noon|midnight)"
TIMES = re.compile(
    "|".join(
        [
            rf"\b\d{{4}}-\d{{2}}-\d{{2}}(?:[ T]|,\s*)(?:{CLOCK})",  # 2026-12-01 04:41, ISO 8601
            rf"\b{MONTH} \d{{1,2}}, \d{{4}},? (?:{CLOCK}|{CLOCK_WORDS})",  # Dec. 1, 2026, 4:41 a.m.
            rf"\b\d{{1,2}} {MONTH},? \d{{4}},? (?:{CLOCK}|{CLOCK_WORDS})",  # 01 Dec 2026 04:41
            rf"\b\d{{1,2}}[/.]\d{{1,2}}[/.]\d{{2,4}},? (?:{CLOCK})",  # 01/12/2026 04:41
            r"\b\d{1,2}(?::\d{2})?\s*(?:a\.m\.|p\.m\.)",  # 4:41 p.m., 4 p.m.
            r"\b\d{1,2}:\d{2}(?::\d{2})?\s*(?:AM|PM|am|pm)\b",  # 4:41 PM
            r"(?<![\d:+-])\b[0-2]?\d:[0-5]\d(?::[0-5]\d)?\b(?!:)",  # 04:41, a time of day alone
        ]
    )
)


def zone_pattern() -> re.Pattern:
    """What must follow a time: its zone, maybe after a comma or an opening parenthesis, or
    after Arabic's morning and evening marks (ص, م)."""
    return re.compile(r"\s*(?:[صم]\s+)?[(,]?\s*" + zone_words())


def zone_words() -> str:
    """A zone as people read it: an offset (+03, +05:30, Z), an IANA name, or an abbreviation of
    a zone in use (the utilities' and UTC), in summer or winter."""
    names = {"UTC", *Utility.objects.values_list("timezone", flat=True)}
    abbreviations = {
        datetime(2026, month, 15, 12, tzinfo=ZoneInfo(name)).tzname()
        for name in names
        for month in (1, 7)
    }
    words = sorted(names | abbreviations | {"GMT"}, key=len, reverse=True)
    return (
        # A minus right after a time is a range ("08:00-15:00"), not an offset.
        r"(?:\+\d{2}(?::?\d{2})?\b|(?<=\s)-\d{2}(?::?\d{2})?\b|Z\b|"
        + "|".join(re.escape(word) for word in words)
        + r"|[A-Z][a-z]+/[A-Z][A-Za-z_]+)"
    )


ISOLATES = re.compile("[\u2066-\u2069]")


class _VisibleText(HTMLParser):
    """The text a person reads in a page's body: text nodes, not scripts or styles."""

    HIDDEN = {"script", "style", "template", "noscript", "head"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.HIDDEN:
            self.hidden += 1

    def handle_endtag(self, tag):
        if tag in self.HIDDEN and self.hidden:
            self.hidden -= 1

    def handle_data(self, data):
        # Direction isolates (U+2066..U+2069) keep "+03" reading left to right in Arabic; they
        # are not seen.
        data = ISOLATES.sub("", data)
        if not self.hidden and data.strip():
            self.parts.append(" ".join(data.split()))


def visible_text(html: str) -> str:
    parser = _VisibleText()
    parser.feed(html)
    return " ".join(parser.parts)


def times_without_zone(html: str, zone: re.Pattern) -> list[str]:
    text = visible_text(html)
    # A range names its zone once, after its end: "2026-12-04 09:00 → 15:00 EET".
    range_end = re.compile(
        r"\s*(?:→|–|—|-|to)\s*(?:\d{4}-\d{2}-\d{2}[ T])?\d{1,2}:\d{2}(?::\d{2})?" + zone.pattern
    )
    found = []
    for match in TIMES.finditer(text):
        if not (zone.match(text, match.end()) or range_end.match(text, match.end())):
            found.append(text[max(0, match.start() - 40) : match.end() + 15])
    return found


WIDGET = re.compile(r'<p class="datetime">.*?</p>', re.S)


def inputs_without_zone(html: str) -> list[str]:
    """Date-and-time inputs (the admin's split widget) with no zone named right after them."""
    found = []
    for match in WIDGET.finditer(html):
        after = visible_text(html[match.end() : match.end() + 600])[:80]
        if not re.search(zone_words(), after):
            name = re.search(r'name="([^"]+)"', match.group(0))
            found.append(f"input {name.group(1) if name else '?'} then {after!r}")
    return found


# --- The walk ----------------------------------------------------------------------------------


def admin_urls(user) -> list[str]:
    request = RequestFactory().get("/admin/")
    request.user = user
    urls = [reverse("admin:index")]
    for model_admin in admin.site._registry.values():
        pks = _sample_pks(model_admin.get_queryset(request))
        for pattern in model_admin.get_urls():
            if pattern.name is None:  # Django's old "<id>/" address: a redirect
                continue
            params = set(pattern.pattern.converters)
            if not params:
                urls.append(reverse(f"admin:{pattern.name}"))
            elif params <= OBJECT_PARAMS:
                urls += [
                    reverse(f"admin:{pattern.name}", kwargs=dict.fromkeys(params, pk)) for pk in pks
                ]
            elif params == {"object_id", "attachment_id"}:
                continue  # an attached file's download, not a page
            else:
                raise AssertionError(f"{pattern.name}: what is <{'>, <'.join(params)}>?")
    return urls


def _sample_pks(queryset) -> list:
    ordered = queryset.order_by("pk").values_list("pk", flat=True)
    first = list(ordered[: ROWS_PER_MODEL - 1])
    last = list(queryset.order_by("-pk").values_list("pk", flat=True)[:1])
    return list(dict.fromkeys(first + last))


def walk(client, user) -> tuple[dict[str, list[str]], int]:
    zone = zone_pattern()
    client.force_login(user)
    client.raise_request_exception = False  # a page that fails is reported with the others
    problems: dict[str, list[str]] = {}
    shown = 0
    for url in admin_urls(user):
        response = client.get(url)
        if response.status_code >= 500:
            problems[url] = [f"answered {response.status_code}: its times cannot be checked"]
            continue
        if response.status_code != 200 or response.streaming:
            continue
        if "text/html" not in response.get("Content-Type", ""):
            continue
        shown += 1
        html = response.content.decode()
        found = times_without_zone(html, zone) + inputs_without_zone(html)
        if found:
            problems[url] = sorted(set(found))
    return problems, shown


@pytest.fixture
def demo(db):
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    egypt = Utility.objects.get(code="eg-nedc")  # daylight saving: EET in winter, EEST in summer
    # A row of every model the demo data has none of, so that every change page is opened.
    rows = Rows(code="walk", mark="", utility=egypt)
    for model in admin.site._registry:
        if not model._default_manager.filter(**_of_utility(model, egypt)).exists():
            rows.of(model)
    return egypt


def _of_utility(model, utility) -> dict:
    from core.admin import utility_path

    path = utility_path(model)
    if path is None:
        return {}
    return {"pk": utility.pk} if path == "pk" else {path: utility}


def _report(problems: dict[str, list[str]]) -> str:
    lines = [f"{url}: {' | '.join(found[:4])}" for url, found in sorted(problems.items())]
    return f"{len(problems)} admin pages show a time without its zone:\n" + "\n".join(lines)


def test_every_time_a_superuser_sees_carries_its_zone(demo, client):
    superuser = User.objects.get(username="admin")

    problems, shown = walk(client, superuser)

    assert shown > 100  # the walk reached the admin's pages
    assert problems == {}, _report(problems)


def test_every_time_a_utilitys_staff_see_carries_its_zone(demo, client):
    staff = staff_member(demo, role=ROLES[0], username="walker")
    for role in ROLES[1:]:
        from core.models import ROLE_GROUPS, StaffMembership
        from tests.outages.factories import _role_group

        StaffMembership.objects.create(user=staff, utility=demo, role=role)
        staff.groups.add(_role_group(ROLE_GROUPS[role]))

    problems, shown = walk(client, staff)

    assert shown > 50
    assert problems == {}, _report(problems)


# --- The checks themselves ------------------------------------------------------------------


@pytest.fixture
def zone(db):
    for code, name in [("eg", "Africa/Cairo"), ("in", "Asia/Kolkata"), ("kw", "Asia/Kuwait")]:
        UtilityFactory(code=code, timezone=name)
    return zone_pattern()


@pytest.mark.parametrize(
    "html",
    [
        "<td>2026-12-01 04:41</td>",
        "<td>Dec. 1, 2026, 4:41 a.m.</td>",
        "<td>Dec. 1, 2026, midnight</td>",
        "<p>Deadline: Tue 01 Dec 2026 04:41 (the utility's time)</p>",
        "<td>4:41 p.m.</td>",
        "<td>01/12/2026 16:41</td>",
        "<td>2026-12-01T04:41:00</td>",
        "<td>16:41</td><td>Transformer 1</td>",
        "<td>2026-12-04 09:00 → 15:00</td>",
    ],
)
def test_a_time_without_its_zone_is_found(html, zone):
    assert times_without_zone(html, zone)


@pytest.mark.parametrize(
    "html",
    [
        "<td>2026-12-01 04:41 +03</td>",
        "<td>2026-03-29 09:00 EEST</td>",
        "<td>2026-12-01 04:41 UTC</td>",
        "<td>2026-12-01 10:11 +0530</td>",
        "<td>2026-12-01T04:41:00+03:00</td>",
        "<td>08:00 (Africa/Cairo)</td>",
        "<td>08:00 Africa/Cairo – 15:00 Africa/Cairo</td>",
        "<td>2026-12-01 01:49:38.749915+00:00</td>",
        "<td>2026-12-01 04:41:07.123+0000</td>",
        "<td>2026-12-04 09:00 → 15:00 EET</td>",
        "<td>2026-12-04 09:00 → 2026-12-05 15:00 +03</td>",
        "<td>2026-12-01</td><td>12.50 KWD</td>",
    ],
)
def test_a_time_with_its_zone_passes(html, zone):
    assert times_without_zone(html, zone) == []


def test_a_date_and_time_input_without_its_zone_is_found(db):
    bare = '<p class="datetime">Date: <input name="at_0"> Time: <input name="at_1"></p></div>'
    named = bare + '<p class="help timezone-name">Time zone: Africa/Cairo (EET)</p>'

    assert inputs_without_zone(bare)
    assert inputs_without_zone(named) == []
