"""The planner's grid tree: area → feeder → transformer of the staff member's utilities only, each
node with the accounts and meters it supplies (one grouped query), ticked nodes posting the
outage's grid fields, and grid elements labelled with their utility."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from meters.models import Meter
from outages import selectors
from outages.models import Outage
from tests.accounts.factories import UtilityFactory
from tests.meters.factories import MeterFactory
from tests.outages.factories import (
    FeederFactory,
    TransformerFactory,
    consumer_on,
    saudi,
    staff_member,
)

pytestmark = pytest.mark.django_db
ADD = "/admin/outages/outage/add/"


@pytest.fixture
def grids():
    """Two utilities with the same names in their grids, as the demo data has them."""
    riyadh, kuwait = saudi(), UtilityFactory(name="Kuwait MEW")
    built = {}
    for utility in (riyadh, kuwait):
        feeder = FeederFactory(
            area__utility=utility, area__name="Central district", name="Feeder 1", code="F01"
        )
        first = TransformerFactory(feeder=feeder, name="Transformer 1", code="T0001")
        second = TransformerFactory(feeder=feeder, name="Transformer 2", code="T0002")
        built[utility.code] = {"utility": utility, "feeder": feeder, "t1": first, "t2": second}
    riyadh_grid = built[riyadh.code]
    meter, _ = consumer_on(riyadh_grid["t1"])
    # One account with two meters under the first transformer; a removed meter is not supplied.
    MeterFactory(utility=riyadh, transformer=riyadh_grid["t1"], account=meter.account)
    MeterFactory(utility=riyadh, transformer=riyadh_grid["t2"])
    MeterFactory(utility=riyadh, transformer=riyadh_grid["t2"], status=Meter.Status.REMOVED)
    consumer_on(built[kuwait.code]["t1"])
    return riyadh_grid, built[kuwait.code]


def _nodes(grid):
    [area] = grid.areas
    [feeder] = area.children
    return area, feeder, {t.code: t for t in feeder.children}


def test_the_tree_counts_accounts_and_meters_at_each_node(grids):
    riyadh, _ = grids

    [grid] = selectors.grid_tree(utility_ids=[riyadh["utility"].pk])

    area, feeder, transformers = _nodes(grid)
    assert (transformers["T0001"].accounts, transformers["T0001"].meters) == (1, 2)
    assert (transformers["T0002"].accounts, transformers["T0002"].meters) == (1, 1)
    assert (feeder.accounts, feeder.meters) == (2, 3)
    assert (area.accounts, area.meters) == (2, 3)
    assert (grid.name, grid.accounts, grid.meters) == (riyadh["utility"].name, 2, 3)


def test_another_utilitys_grid_never_appears(grids, client):
    riyadh, kuwait = grids
    client.force_login(staff_member(riyadh["utility"], "planner"))

    page = client.get(ADD).content.decode()

    assert f'name="feeders" value="{riyadh["feeder"].pk}"' in page
    assert f'name="feeders" value="{kuwait["feeder"].pk}"' not in page
    assert f'name="transformers" value="{kuwait["t1"].pk}"' not in page
    assert "Kuwait MEW" not in page
    assert "2 accounts · 3 meters" in page  # the feeder (and its area)
    assert "1 account · 2 meters" in page  # the first transformer


def test_a_superuser_sees_each_utilitys_grid_under_its_name(grids, client):
    riyadh, kuwait = grids
    client.force_login(staff_member(riyadh["utility"], "planner", is_superuser=True))

    page = client.get(ADD).content.decode()

    for grid in (riyadh, kuwait):
        assert f'data-utility="{grid["utility"].pk}" open><summary><strong>' in page
        assert f'name="feeders" value="{grid["feeder"].pk}"' in page
    assert page.count("Kuwait MEW</strong>") == 1


def test_the_tree_costs_five_queries_however_large_the_grid(grids, django_assert_num_queries):
    riyadh, _ = grids
    for _ in range(20):
        feeder = FeederFactory(area=riyadh["feeder"].area)
        consumer_on(TransformerFactory(feeder=feeder))

    # The utilities, the areas, the feeders, the transformers and one grouped count.
    with django_assert_num_queries(5):
        [grid] = selectors.grid_tree(utility_ids=[riyadh["utility"].pk])

    assert len(grid.areas[0].children) == 21


def test_ticking_a_feeder_plans_the_outage_on_all_its_transformers(grids, client):
    riyadh, _ = grids
    client.force_login(staff_member(riyadh["utility"], "planner"))

    response = client.post(ADD, _form(riyadh["utility"], feeders=[riyadh["feeder"].pk]))

    assert response.status_code == 302
    outage = Outage.objects.get()
    assert list(outage.feeders.all()) == [riyadh["feeder"]]
    assert selectors.outage_scope_meters(outage=outage).count() == 3
    page = client.get(f"/admin/outages/outage/{outage.pk}/change/").content.decode()
    # The tree comes back with the feeder ticked, its branch open and its transformers covered.
    ticked = f'name="feeders" value="{riyadh["feeder"].pk}" data-accounts="2" data-meters="3"'
    assert f'{ticked} data-own="1" checked>' in page
    covered = f'name="transformers" value="{riyadh["t1"].pk}" data-accounts="1" data-meters="2"'
    assert f'{covered} data-own="" checked disabled class="grid-covered">' in page
    assert "Ticked: 2 accounts · 3 meters" in page


def test_a_foreign_feeder_posted_anyway_is_refused(grids, client):
    riyadh, kuwait = grids
    client.force_login(staff_member(riyadh["utility"], "planner"))

    response = client.post(ADD, _form(riyadh["utility"], feeders=[kuwait["feeder"].pk]))

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not Outage.objects.exists()


def test_grid_elements_are_labelled_with_their_utility(grids, client):
    riyadh, kuwait = grids
    client.force_login(staff_member(riyadh["utility"], "planner", is_superuser=True))

    # A superuser may pick any utility's grid: a mismatch names each element unmistakably.
    response = client.post(ADD, _form(riyadh["utility"], transformers=[kuwait["t1"].pk]))

    form = response.context["adminform"].form
    labels = [label for _, label in form.fields["transformers"].choices]
    assert "Transformer 1 (T0001) · Feeder 1 (F01) · Kuwait MEW" in labels
    assert f"Transformer 1 (T0001) · Feeder 1 (F01) · {riyadh['utility'].name}" in labels
    assert len(labels) == len(set(labels))
    feeder_labels = [label for _, label in form.fields["feeders"].choices]
    assert "Feeder 1 (F01) · Central district · Kuwait MEW" in feeder_labels
    assert (
        f"These belong to another utility than {riyadh['utility'].name}: "
        "Transformer 1 (T0001) · Feeder 1 (F01) · Kuwait MEW." in response.content.decode()
    )
    assert not Outage.objects.exists()


def test_a_published_outage_shows_its_grid_qualified_and_read_only(grids, client):
    riyadh, _ = grids
    client.force_login(staff_member(riyadh["utility"], "planner"))
    client.post(ADD, _form(riyadh["utility"], transformers=[riyadh["t2"].pk]))
    outage = Outage.objects.get()
    outage.status = Outage.Status.PUBLISHED
    outage.save(update_fields=["status"])

    page = client.get(f"/admin/outages/outage/{outage.pk}/change/").content.decode()

    assert f"Transformer 2 (T0002) · Feeder 1 (F01) · {riyadh['utility'].name}" in page
    assert 'id="grid-tree"' not in page
    assert 'id="consumer-place-ar"' in page and "Central district" in page


def _form(utility, **grid):
    return {
        "utility": utility.pk,
        "kind": "planned",
        "reason": "Feeder maintenance",
        "planned_start_0": "2026-12-10",
        "planned_start_1": "09:00",
        "planned_end_0": "2026-12-10",
        "planned_end_1": "13:00",
        "events-TOTAL_FORMS": 0,
        "events-INITIAL_FORMS": 0,
        **grid,
    }


def _plan_nodes(plan):
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL plan")
def test_the_counts_are_read_from_their_covering_index(grids):
    riyadh, _ = grids
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a test table is small: ask what it can
    counts = selectors.grid_counts_query(utility_ids=[riyadh["utility"].pk])

    [plan] = json.loads(counts.explain(format="json"))
    nodes = list(_plan_nodes(plan["Plan"]))

    # On a small test table the planner may prefer another index of the meters (utility) to the
    # covering one; what must hold is that the meters are reached through an index, never scanned.
    assert any("Index" in n["Node Type"] for n in nodes), nodes
    assert not any(n["Node Type"] == "Seq Scan" for n in nodes), nodes


def test_single_meters_are_found_by_serial_in_the_staff_members_utility_only(grids, client):
    riyadh, kuwait = grids
    mine = riyadh["t2"].meters.exclude(status=Meter.Status.REMOVED).get()
    foreign = kuwait["t1"].meters.get()
    client.force_login(staff_member(riyadh["utility"], "planner"))
    search = {"app_label": "outages", "model_name": "outage", "field_name": "meters"}

    found = client.get("/admin/autocomplete/", {**search, "term": mine.serial}).json()
    hidden = client.get("/admin/autocomplete/", {**search, "term": foreign.serial}).json()

    assert [row["text"] for row in found["results"]] == [mine.serial]
    assert hidden["results"] == []
