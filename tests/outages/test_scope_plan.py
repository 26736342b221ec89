"""An outage's scope is found through the meter table's indexes, not by reading every meter of the
utility: the grid's few rows are resolved first, then the meters by lists of ids."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from outages.selectors import outage_scope_meters
from tests.meters.factories import MeterFactory
from tests.outages.factories import OutageFactory, TransformerFactory, saudi

pytestmark = pytest.mark.django_db


def plan_of(queryset) -> str:
    sql, params = queryset.values_list("pk", flat=True).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
        cursor.execute("SET enable_seqscan = on")
    return json.dumps(plan)


def test_a_feeders_outage_finds_its_meters_by_the_transformer_index():
    utility = saudi()
    ours = TransformerFactory(feeder__area__utility=utility)
    elsewhere = TransformerFactory(feeder__area=ours.feeder.area)  # another feeder, same area
    inside = [MeterFactory(utility=utility, transformer=ours) for _ in range(3)]
    outside = MeterFactory(utility=utility, transformer=elsewhere)
    single = MeterFactory(utility=utility, transformer=elsewhere)
    removed = MeterFactory(utility=utility, transformer=ours, status="removed")
    outage = OutageFactory(utility=utility)
    outage.feeders.add(ours.feeder)
    narrow = OutageFactory(utility=utility, transformers=[ours])
    narrow.meters.add(single)

    assert set(outage_scope_meters(outage=outage)) == set(inside)
    assert set(outage_scope_meters(outage=narrow)) == {*inside, single}
    assert outside not in outage_scope_meters(outage=narrow)
    area = OutageFactory(utility=utility)
    area.areas.add(ours.feeder.area)
    assert set(outage_scope_meters(outage=area)) == {*inside, outside, single}
    assert removed not in outage_scope_meters(outage=area)
    if connection.vendor != "postgresql":
        pytest.skip("query plans are PostgreSQL's")
    plan = plan_of(outage_scope_meters(outage=narrow))
    # The scope is plain conditions on the meter's own columns, which its indexes serve (at 1M
    # meters the planner takes the transformer index: 10-20 ms for a feeder of 5,000); the
    # former OR of subqueries ran a subplan against every meter of the utility.
    assert "transformer_id = " in plan, plan
    assert "SubPlan" not in plan, plan
