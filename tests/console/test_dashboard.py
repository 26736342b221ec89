"""The admin index as the staff dashboard: its figures are the rows, each link opens a list of
exactly those rows, a staff member sees their own utilities only, and its cost does not grow
with the number of meters."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from console.selectors import dashboard_figures
from tests.accounts.factories import UserFactory, UtilityFactory
from tests.console.scenario import NOW, day_readings, staff_of, two_utilities
from tests.meters.factories import EGYPT, MeterFactory

FIGURE = re.compile(
    r'data-figure="(?P<key>\w+)">\s*<(?:a|span) class="console-number"(?: href="(?P<url>[^"]*)")?>'
    r"(?P<number>[\d,]+)<"
)


@pytest.fixture
def pinned():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def scenario(db, pinned):
    return two_utilities()


def shown_figures(html: str, utility_code: str) -> dict[str, tuple[int, str | None]]:
    """{figure: (number, link)} of one utility's section of the page."""
    start = html.index(f'data-utility="{utility_code}"')
    end = html.find("<section", start + 1)
    section = html[start : end if end > 0 else len(html)]
    return {
        m["key"]: (int(m["number"].replace(",", "")), m["url"] and unescape(m["url"]))
        for m in FIGURE.finditer(section)
    }


def test_the_figures_are_the_rows_counted_by_hand(scenario):
    kuwait, egypt = scenario
    figures = {
        f.utility.pk: f
        for f in dashboard_figures(utility_ids=[kuwait.utility.pk, egypt.utility.pk], now=NOW)
    }
    for expected in (kuwait, egypt):
        got = figures[expected.utility.pk]
        for name, count in expected.figures.items():
            assert getattr(got, name) == count, (expected.utility.code, name)
    assert figures[kuwait.utility.pk].compensations_due_amount == 250
    # 3 meters reporting × 48 quarter-hours of Kuwait's day ended by 12:00 +03.
    assert figures[kuwait.utility.pk].quarter_hours_elapsed == 48
    assert figures[kuwait.utility.pk].readings_expected == 3 * 48
    assert figures[egypt.utility.pk].quarter_hours_elapsed == 44  # 11:00 EET


def test_the_superuser_sees_every_utility_and_each_link_lists_that_many_rows(scenario, client):
    kuwait, egypt = scenario
    client.force_login(UserFactory(username="root", phone=None, is_staff=True, is_superuser=True))
    html = client.get("/admin/").content.decode()
    assert "Kuwait MEW" in html and "North Egypt Distribution" in html
    for expected in (kuwait, egypt):
        shown = shown_figures(html, expected.utility.code)
        for name, count in expected.figures.items():
            if name in shown:
                assert shown[name][0] == count, (expected.utility.code, name)
        assert set(shown) >= {
            "outages_in_progress",
            "outages_coming",
            "disconnections_waiting",
            "disconnections_sent_today",
            "topups_pending",
            "topups_failed_today",
            "requests_overdue",
            "requests_due_soon",
            "compensations_due",
            "meters_not_reporting",
            "readings_today",
        }
        for name, (number, url) in shown.items():
            if url is None:
                continue
            page = client.get(url)
            assert page.status_code == 200, (name, url)
            assert "?e=1" not in page.get("Location", ""), (name, url)
            assert page.context["cl"].result_count == number, (expected.utility.code, name)


def test_a_staff_member_sees_only_their_utility(scenario, client):
    kuwait, egypt = scenario
    client.force_login(staff_of(kuwait.utility))
    html = client.get("/admin/").content.decode()
    assert 'data-utility="kw-mew"' in html
    assert "North Egypt Distribution" not in html and 'data-utility="eg-nedc"' not in html
    shown = shown_figures(html, "kw-mew")
    assert shown["topups_pending"][0] == kuwait.figures["topups_pending"]
    assert shown["meters_not_reporting"][0] == 2
    for name, (number, url) in shown.items():
        if url:
            assert client.get(url).context["cl"].result_count == number, name
    # Asking for the other utility by its id shows nothing of it.
    html = client.get("/admin/", {"utility": egypt.utility.pk}).content.decode()
    assert "North Egypt Distribution" not in html and 'data-utility="eg-nedc"' not in html


def test_a_staff_member_without_a_list_permission_gets_the_number_without_a_link(scenario, client):
    from django.contrib.auth.models import Permission

    kuwait, _ = scenario
    user = staff_of(kuwait.utility)
    user.user_permissions.remove(*Permission.objects.filter(codename="view_topup"))
    client.force_login(user)
    shown = shown_figures(client.get("/admin/").content.decode(), "kw-mew")
    assert shown["topups_pending"] == (kuwait.figures["topups_pending"], None)
    assert shown["outages_in_progress"][1] is not None


def test_the_load_chart_sums_the_local_days(scenario, client):
    kuwait, _ = scenario
    figures = dashboard_figures(utility_ids=[kuwait.utility.pk], now=NOW)[0]
    assert [d.day.isoformat() for d in figures.load][-1] == "2026-11-20"
    today, yesterday = figures.load[-1], figures.load[-2]
    # 3 meters × 4 quarter-hours × 100 Wh today; the quarter-hour before local midnight is
    # yesterday's (stored in the same UTC day row).
    assert (today.wh, today.readings, today.partial) == (1200, 12, True)
    assert (yesterday.wh, yesterday.readings, yesterday.partial) == (150, 3, False)
    assert figures.load[0].wh is None
    client.force_login(staff_of(kuwait.utility))
    html = client.get("/admin/").content.decode()
    assert 'aria-label="Load, last 7 days"' in html
    assert 'aria-label="Top-ups by channel, last 30 days"' in html
    # Paid in the last 30 local days: app 10.000 + 2.500, counter 7.000 (KWD has 3 decimals).
    assert "12.500 KWD" in html and "7.000 KWD" in html and "9.000 KWD" not in html


@pytest.mark.parametrize(
    ("moment", "quarter_hours"),
    [
        # Egypt springs forward at 00:00 on the last Friday of April: a day of 23 hours.
        (datetime(2026, 4, 24, 20, 50, tzinfo=UTC), 92),
        # … and falls back at 24:00 on the last Thursday of October: a day of 25 hours.
        (datetime(2026, 10, 29, 21, 50, tzinfo=UTC), 100),
        (datetime(2026, 11, 20, 21, 50, tzinfo=UTC), 96),
    ],
)
def test_a_daylight_saving_day_expects_its_own_number_of_quarter_hours(db, moment, quarter_hours):
    egypt = UtilityFactory(**EGYPT, name="North Egypt Distribution")
    meters = [
        MeterFactory(utility=egypt, last_reading_at=moment - timedelta(hours=1)) for _ in "ab"
    ]
    figures = dashboard_figures(utility_ids=[egypt.pk], now=moment)[0]
    # 23:50 local on each of these days: all but the last quarter-hour have ended.
    assert figures.quarter_hours_today == quarter_hours
    assert figures.quarter_hours_elapsed == quarter_hours - 1
    assert figures.readings_expected == len(meters) * (quarter_hours - 1)


def _dashboard_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/admin/").status_code == 200
    return len(queries)


def test_the_dashboards_queries_do_not_grow_with_the_meters(
    scenario, client, django_assert_max_num_queries
):
    kuwait, egypt = scenario
    client.force_login(UserFactory(username="root", phone=None, is_staff=True, is_superuser=True))
    before = _dashboard_queries(client)
    for utility in (kuwait.utility, egypt.utility):
        for _ in range(15):
            meter = MeterFactory(utility=utility, last_reading_at=NOW - timedelta(hours=2))
            day_readings(meter, NOW.date(), {0: 10, 1: 20})
    assert _dashboard_queries(client) == before
    with django_assert_max_num_queries(20):
        client.get("/admin/")


def test_one_of_many_utilities_at_a_time(db, pinned, client):
    """Past four utilities the superuser picks one (a page of forty sections would not load)."""
    for n in range(5):
        UtilityFactory(code=f"u{n}", name=f"Utility {n}", timezone="Asia/Kolkata")
    client.force_login(UserFactory(username="root", phone=None, is_staff=True, is_superuser=True))
    html = client.get("/admin/").content.decode()
    assert html.count('class="console-utility') == 1
    assert html.count("?utility=") == 6  # All, and each of the five
    html = client.get("/admin/", {"utility": "all"}).content.decode()
    assert html.count('class="console-utility') == 5


def test_a_staff_member_of_no_utility_is_told_so_and_shown_no_figures(db, client):
    UtilityFactory()
    client.force_login(UserFactory(username="new-hire", phone=None, is_staff=True))
    html = client.get("/admin/").content.decode()
    assert "You are not on the staff of any utility yet" in html
    assert "console-utility" not in html


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL plan")
def test_the_load_aggregate_reaches_meter_days_by_their_key_not_by_a_scan(db):
    """The readings aggregate reads the utility's meters' rows of the chart's days through the
    (meter_id, day) primary key: never a scan of every meter-day ever stored."""
    from meters.selectors import _SLOT_SUMS_SQL

    utility = UtilityFactory()
    meter = MeterFactory(utility=utility)
    day_readings(meter, NOW.date(), {0: 10})
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # what could serve it, not what is cheap
        first, last = NOW.date() - timedelta(days=7), NOW.date()
        cursor.execute(f"EXPLAIN (FORMAT JSON) {_SLOT_SUMS_SQL}", [[utility.pk], first, last])
        plan = cursor.fetchone()[0]

    def nodes(node):
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    scans = [
        n
        for n in nodes(plan[0]["Plan"])
        if n.get("Relation Name", "").startswith("meters_meterday")  # a partition on PostgreSQL
    ]
    assert scans and all(n["Node Type"] != "Seq Scan" for n in scans), scans


def test_the_load_chart_is_kept_minutes_then_read_again(scenario, settings):
    """With the cache on, a second dashboard within CONSOLE_LOAD_CACHE_SECONDS does not read the
    meter-days again (a new reading is not yet in it); after the time it is."""
    from django.core.cache import cache

    from meters.models import Meter

    settings.CONSOLE_LOAD_CACHE_SECONDS = 300
    kuwait, _ = scenario
    ids = [kuwait.utility.pk]
    cache.delete_many(
        [f"console:slots:{NOW.date() - timedelta(days=n)}:{ids[0]}" for n in range(9)]
    )
    first = dashboard_figures(utility_ids=ids, now=NOW)[0].load[-1]
    meter = Meter.objects.filter(utility=kuwait.utility).first()
    day_readings(meter, NOW.astimezone(UTC).date(), {0: 5000})

    with CaptureQueriesContext(connection) as kept:
        again = dashboard_figures(utility_ids=ids, now=NOW)[0].load[-1]
    later = NOW + timedelta(minutes=6)
    with time_machine.travel(later, tick=False):
        cache.delete_many(
            [f"console:slots:{NOW.date() - timedelta(days=n)}:{ids[0]}" for n in range(2)]
        )  # what expiry does: locmem and Redis expire by their own clock, not the pinned one
        fresh = dashboard_figures(utility_ids=ids, now=later)[0].load[-1]

    assert again.wh == first.wh
    assert not any("meters_meterday" in q["sql"] for q in kept.captured_queries)
    assert fresh.wh != first.wh


@pytest.mark.parametrize("chosen", ["²", "٣", "-1", "1e3", "99999999999999999999999", "x\u0000"])
def test_a_utility_chosen_by_a_strange_value_shows_the_default(db, pinned, client, chosen):
    """Whatever ?utility= holds, the page answers: another utility's id, a superscript digit
    (str.isdigit() says yes, int() says no), a number past any id."""
    for n in range(5):
        UtilityFactory(code=f"u{n}", name=f"Utility {n}", timezone="Asia/Kolkata")
    client.force_login(UserFactory(username="root", phone=None, is_staff=True, is_superuser=True))

    response = client.get("/admin/", {"utility": chosen})

    assert response.status_code in (200, 400)
    if response.status_code == 200:
        assert response.content.decode().count('class="console-utility') == 1


def test_the_detected_outages_card_counts_and_links_to_its_lists(db, pinned, client):
    from billing.models import TamperCase
    from outages.models import Outage
    from tests.console.scenario import _meter

    utility = UtilityFactory(code="sa-x", name="Saudi Electricity", timezone="Asia/Riyadh")
    meter = _meter(utility)

    def outage(source, status, confirmed=False):
        return Outage.objects.create(
            utility=utility,
            kind="unplanned",
            source=source,
            status=status,
            reason="Power failure",
            planned_start=NOW - timedelta(hours=1),
            planned_end=NOW + timedelta(hours=3),
            actual_start=NOW - timedelta(hours=1),
            confirmed_at=NOW if confirmed else None,
        )

    outage("meters", "in_progress")
    outage("meters", "in_progress", confirmed=True)
    outage("meters", "restored")  # over: not counted
    outage("staff", "in_progress")  # not detected
    for status in ("open", "dismissed"):
        TamperCase.objects.create(
            utility=utility,
            meter=meter,
            account=meter.account,
            status=status,
            kinds=["cover_open"],
            events=1,
            first_event_at=NOW - timedelta(hours=2),
            last_event_at=NOW - timedelta(hours=2),
        )
    client.force_login(UserFactory(username="root", phone=None, is_staff=True, is_superuser=True))

    html = client.get("/admin/").content.decode()

    number, url = shown_figures(html, "sa-x")["outages_detected"]
    assert number == 2
    assert client.get(url).context["cl"].result_count == 2
    card = html[html.index('data-figure="outages_detected"') :]
    card = card[: card.index("</li>")]
    links = dict(
        (text, unescape(href)) for href, text in re.findall(r'<a href="([^"]+)">([^<]+)</a>', card)
    )
    assert set(links) == {"1 awaiting confirmation", "1 tamper case open"}
    for text, href in links.items():
        assert client.get(href).context["cl"].result_count == 1, text
