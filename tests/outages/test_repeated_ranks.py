"""Long outages are ranked by when they started, whatever order they were restored in
(DOMAIN.md §3: no more than 2 outages of 2 hours or more per calendar year, 400 SAR for the
third and 50 more for each after it); a rank that moves is corrected by a difference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from billing.models import LedgerEntry
from outages import services, standards
from outages.models import Compensation, Standard
from tests.outages.factories import (
    OutageFactory,
    consumer_on,
    outage_publish_delivered,
    outage_run,
    saudi,
    transformer_of,
)

pytestmark = pytest.mark.django_db

TWO_HOURS = timedelta(hours=2)
# Wednesday 1 April 2027 in Riyadh: a feeder goes off at 09:00 for 5 h; one of its transformers
# has its own outage from 10:00 to 12:00, inside the feeder's.
FEEDER_OFF = datetime(2027, 4, 1, 6, 0, tzinfo=UTC)
TRANSFORMER_OFF = FEEDER_OFF + timedelta(hours=1)


def _grid(*, earlier: int):
    transformer = transformer_of(saudi())
    meter, _ = consumer_on(transformer)
    for month in range(1, earlier + 1):
        outage_run(transformer, start=datetime(2027, month, 5, 6, tzinfo=UTC), duration=TWO_HOURS)
    return {"transformer": transformer, "account": meter.account}


@pytest.fixture
def grid():
    """Two long outages earlier in the year: the next one is the third."""
    return _grid(earlier=2)


def _overlapping(grid):
    """Both published three days ahead and begun: the feeder's first, then the transformer's."""
    transformer = grid["transformer"]
    feeder_outage = OutageFactory(
        utility=transformer.feeder.area.utility,
        planned_start=FEEDER_OFF,
        planned_end=FEEDER_OFF + timedelta(hours=5),
    )
    feeder_outage.feeders.set([transformer.feeder])
    transformer_outage = OutageFactory(
        utility=transformer.feeder.area.utility,
        planned_start=TRANSFORMER_OFF,
        planned_end=TRANSFORMER_OFF + TWO_HOURS,
        transformers=[transformer],
    )
    for outage in (feeder_outage, transformer_outage):
        outage_publish_delivered(outage, now=outage.planned_start - timedelta(days=3))
        services.outage_start(
            outage_id=outage.pk, at=outage.planned_start, now=outage.planned_start
        )
    return feeder_outage, transformer_outage


def _restore(outage, *, at, now=None):
    with time_machine.travel(now or at, tick=False):
        services.outage_restore(outage_id=outage.pk, at=at, now=now or at)


def _repeated(account):
    return {
        c.outage_id: (c.amount, c.details["rank"], c.status)
        for c in Compensation.objects.filter(account=account, standard=Standard.REPEATED)
    }


def _ledger(account):
    return list(
        LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.COMPENSATION)
        .order_by("id")
        .values_list("amount", flat=True)
    )


def test_a_paid_third_moved_to_fourth_is_corrected_by_the_difference(grid):
    account = grid["account"]
    feeder_outage, transformer_outage = _overlapping(grid)
    _restore(transformer_outage, at=TRANSFORMER_OFF + TWO_HOURS)
    [paid] = Compensation.objects.filter(standard=Standard.REPEATED)
    assert (paid.outage, paid.amount) == (transformer_outage, Decimal("400.00"))
    with time_machine.travel(paid.exemption_deadline, tick=False):
        standards.compensations_pay_due(now=paid.exemption_deadline)
    assert _ledger(account) == [Decimal("400.000")]

    # The feeder's restoration at 14:00 is recorded only weeks later: it began first, so it is
    # the third (400) and the transformer's the fourth (50): 350 is owed back, not 400 paid again,
    # and taken back only when the feeder's 400 is credited: the consumer is never short between.
    recorded = paid.exemption_deadline + timedelta(hours=1)
    _restore(feeder_outage, at=FEEDER_OFF + timedelta(hours=5), now=recorded)

    assert _repeated(account) == {
        feeder_outage.pk: (Decimal("400.00"), 3, "pending"),
        transformer_outage.pk: (Decimal("50.00"), 4, "credited"),
    }
    assert _ledger(account) == [Decimal("400.000")]
    paid.refresh_from_db()
    assert "long outage number 4" in paid.reason

    feeder_comp = Compensation.objects.get(outage=feeder_outage, standard=Standard.REPEATED)
    standards.compensations_pay_due(now=feeder_comp.exemption_deadline)
    assert sorted(_ledger(account)) == [Decimal("-350.000"), Decimal("400.000"), Decimal("400.000")]
    assert sum(_ledger(account)) == Decimal("450")  # 400 + 50, not 800
    correction = LedgerEntry.objects.get(amount=Decimal("-350"))
    assert correction.key == f"compensation:{paid.pk}:rank:4"
    paid.refresh_from_db()
    assert paid.details["corrections"][0]["ledger_entry"] == correction.pk
    standards.compensations_pay_due(now=feeder_comp.exemption_deadline + timedelta(days=1))
    assert sum(_ledger(account)) == Decimal("450")  # settled once


def test_a_pending_third_moved_to_fourth_is_simply_owed_less(grid):
    account = grid["account"]
    feeder_outage, transformer_outage = _overlapping(grid)

    _restore(transformer_outage, at=TRANSFORMER_OFF + TWO_HOURS)
    _restore(feeder_outage, at=FEEDER_OFF + timedelta(hours=5))

    assert _repeated(account) == {
        feeder_outage.pk: (Decimal("400.00"), 3, "pending"),
        transformer_outage.pk: (Decimal("50.00"), 4, "pending"),
    }
    deadline = max(c.exemption_deadline for c in Compensation.objects.all())
    standards.compensations_pay_due(now=deadline)
    assert sorted(_ledger(account)) == [Decimal("50.000"), Decimal("400.000")]


def test_a_later_start_moved_to_third_by_an_earlier_one_restored_after_it_is_owed():
    """With one long outage before, the transformer's is second when restored (nothing owed) and
    becomes third once the feeder's, which began before it, is restored."""
    grid = _grid(earlier=1)
    account = grid["account"]
    feeder_outage, transformer_outage = _overlapping(grid)

    _restore(transformer_outage, at=TRANSFORMER_OFF + TWO_HOURS)
    assert _repeated(account) == {}
    _restore(feeder_outage, at=FEEDER_OFF + timedelta(hours=5))

    assert _repeated(account) == {transformer_outage.pk: (Decimal("400.00"), 3, "pending")}


def test_evaluating_again_changes_nothing_and_posts_nothing(grid):
    account = grid["account"]
    feeder_outage, transformer_outage = _overlapping(grid)
    _restore(transformer_outage, at=TRANSFORMER_OFF + TWO_HOURS)
    [paid] = Compensation.objects.filter(standard=Standard.REPEATED)
    standards.compensations_pay_due(now=paid.exemption_deadline)
    _restore(
        feeder_outage,
        at=FEEDER_OFF + timedelta(hours=5),
        now=paid.exemption_deadline + timedelta(hours=1),
    )
    before = (_repeated(account), _ledger(account), Compensation.objects.count())

    for outage in (feeder_outage, transformer_outage, feeder_outage):
        outage.refresh_from_db()
        assert standards.standards_evaluate_outage(outage=outage) == []

    assert (_repeated(account), _ledger(account), Compensation.objects.count()) == before
    paid.refresh_from_db()
    assert len(paid.details["corrections"]) == 1


def test_a_neighbour_only_in_the_feeder_outage_is_ranked_on_their_own_year(grid):
    transformer = grid["transformer"]
    neighbour_transformer = transformer_of(transformer.feeder.area.utility)
    neighbour_transformer.feeder = transformer.feeder
    neighbour_transformer.save()
    neighbour, _ = consumer_on(neighbour_transformer)
    feeder_outage, transformer_outage = _overlapping(grid)

    _restore(transformer_outage, at=TRANSFORMER_OFF + TWO_HOURS)
    _restore(feeder_outage, at=FEEDER_OFF + timedelta(hours=5))

    assert _repeated(neighbour.account) == {}  # their first long outage of the year
    assert set(_repeated(grid["account"])) == {feeder_outage.pk, transformer_outage.pk}
