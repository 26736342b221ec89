"""Restoration and repeated outages measured from each consumer's own meter evidence (issue 17,
DOMAIN.md §3 Saudi table): the meter's own failure and restoration where it reported them, owed
nothing where it had supply, the outage's times where it reported nothing. Late evidence of a
restored outage is re-measured with a correction, never a second payment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from billing.models import LedgerEntry
from meters.models import MeterEvent, SupplyPeriod
from notifications.models import Notification
from outages import standards
from outages.models import Compensation, Standard
from tests.outages.factories import consumer_on, saudi, transformer_of
from tests.outages.factories_evidence import (
    actual_readings,
    meter_event,
    outage_lived,
    period_link,
)

pytestmark = pytest.mark.django_db

# Thursday 2026-12-03 09:00 in Riyadh (UTC+3).
NINE = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _restoration(account):
    return Compensation.objects.filter(account=account, standard=Standard.RESTORATION).first()


def _ledger(account):
    return list(
        LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.COMPENSATION)
        .order_by("id")
        .values_list("amount", flat=True)
    )


def _pay(compensation):
    with time_machine.travel(compensation.exemption_deadline, tick=False):
        standards.compensations_pay_due(now=compensation.exemption_deadline)


@pytest.fixture
def street():
    """Three neighbours under one transformer."""
    transformer = transformer_of(saudi())
    late, late_people = consumer_on(transformer)
    supplied, _ = consumer_on(transformer)
    silent, _ = consumer_on(transformer)
    return {
        "transformer": transformer,
        "late": late,
        "person": late_people[0],
        "supplied": supplied,
        "silent": silent,
    }


def test_a_meter_back_after_7_hours_is_paid_250_and_a_supplied_neighbour_nothing(street, make_api):
    late, supplied, silent = street["late"], street["supplied"], street["silent"]

    # Staff restore at 14:00 (5 h); the late meter's own supply came back only at 16:00.
    outage = outage_lived(
        street["transformer"],
        start=NINE,
        duration=5 * HOUR,
        periods={late: (NINE, NINE + 7 * HOUR)},
        before_restore=lambda outage: actual_readings(supplied, start=NINE, end=NINE + 5 * HOUR),
    )

    compensation = _restoration(late.account)
    assert compensation.amount == Decimal("250.00")  # 200 + 1 started hour × 50
    assert compensation.details["evidence"] == "meter"
    assert compensation.details["off_at"] == "2026-12-03T09:00:00+03:00"
    assert compensation.details["on_at"] == "2026-12-03T16:00:00+03:00"
    assert compensation.failure_at == NINE + 6 * HOUR
    assert "Supply off 7 h 00 min from 2026-12-03 09:00 +03 (as your meter reported)" in (
        compensation.reason
    )
    # The neighbour whose meter kept reading energy, and the silent one measured on the
    # outage's 5 h, are owed nothing.
    assert not Compensation.objects.filter(account=supplied.account).exists()
    assert not Compensation.objects.filter(account=silent.account).exists()
    assert outage.compensations.count() == 1

    _pay(compensation)
    assert _ledger(late.account) == [Decimal("250")]
    [alert] = Notification.objects.filter(user=street["person"], category="compensation_credited")
    assert "250" in alert.body and "2026-12-03 09:00 +03" in alert.body
    [row] = make_api(street["person"]).get("/api/v1/compensations/").json()
    assert (row["standard"], row["amount"], row["status"]) == ("restoration", "250.00", "credited")
    assert "as your meter reported" in row["reason"]


def test_a_silent_meter_is_measured_on_the_outage_and_a_short_period_owes_nothing(street):
    late, supplied, silent = street["late"], street["supplied"], street["silent"]
    # A last gasp alone is no sign of supply: the meter stays measured on the outage's times.
    silent_gasp = lambda outage: meter_event(silent, kind="power_off", at=NINE)  # noqa: E731

    outage_lived(
        street["transformer"],
        start=NINE,
        duration=timedelta(hours=6, minutes=30),
        periods={late: (NINE, NINE + HOUR)},  # its own supply was back at 10:00
        before_restore=lambda outage: (
            silent_gasp(outage),
            meter_event(supplied, kind="overload", at=NINE + 3 * HOUR),
        ),
    )

    compensation = _restoration(silent.account)
    assert compensation.amount == Decimal("250.00")
    assert (compensation.details["evidence"], compensation.details["duration_minutes"]) == (
        "outage",
        390,
    )
    assert "your meter reported nothing" in compensation.reason
    assert _restoration(late.account) is None
    assert _restoration(supplied.account) is None


def test_a_reading_of_the_quarter_before_the_outage_is_no_sign_of_supply(street):
    silent = street["silent"]
    # Energy in 08:45–09:00 and in 16:00–16:15, just outside the outage: not inside it.
    outage_lived(
        street["transformer"],
        start=NINE,
        duration=7 * HOUR,
        before_restore=lambda outage: (
            actual_readings(silent, start=NINE - timedelta(minutes=15), end=NINE),
            actual_readings(
                silent, start=NINE + 7 * HOUR, end=NINE + 7 * HOUR + timedelta(minutes=15)
            ),
        ),
    )

    assert _restoration(silent.account).details["evidence"] == "outage"


def test_evidence_of_each_kind_for_one_outage(street):
    late, supplied, silent = street["late"], street["supplied"], street["silent"]
    outage = outage_lived(
        street["transformer"],
        start=NINE,
        duration=2 * HOUR,
        periods={late: (NINE - timedelta(minutes=5), None)},  # still open: ends with the outage
        before_restore=lambda outage: actual_readings(
            supplied, start=NINE + HOUR, end=NINE + 2 * HOUR
        ),
    )

    evidence = standards.outage_evidence(outage=outage)

    assert evidence == {
        late.pk: standards.Evidence("meter", NINE - timedelta(minutes=5), NINE + 2 * HOUR),
        supplied.pk: standards.Evidence("supplied"),
        silent.pk: standards.Evidence("outage", NINE, NINE + 2 * HOUR),
    }


# --- Repeated outages ---------------------------------------------------------------------------


def _repeated(account):
    return {
        c.outage_id: (c.amount, c.details["rank"])
        for c in Compensation.objects.filter(account=account, standard=Standard.REPEATED)
    }


def test_the_third_long_outage_of_the_year_is_counted_from_meter_evidence():
    transformer = transformer_of(saudi())
    meter, _ = consumer_on(transformer)
    neighbour, _ = consumer_on(transformer)

    def month(n):
        return datetime(2027, n, 4, 6, 0, tzinfo=UTC)  # 09:00 in Riyadh

    # Staff 3 h, but this meter was off 1 h: not long for it (long for the neighbour).
    outage_lived(
        transformer, start=month(1), duration=3 * HOUR, periods={meter: (month(1), month(1) + HOUR)}
    )
    # Staff 1 h, but this meter was off 3 h: long for it.
    second = outage_lived(
        transformer, start=month(2), duration=HOUR, periods={meter: (month(2), month(2) + 3 * HOUR)}
    )
    # Staff 2 h, but this meter kept reading energy: not an outage for it.
    outage_lived(
        transformer,
        start=month(3),
        duration=2 * HOUR,
        before_restore=lambda o: actual_readings(meter, start=month(3), end=month(3) + 2 * HOUR),
    )
    # Staff 2 h, the meter reported nothing: the outage's times, long.
    fourth = outage_lived(transformer, start=month(4), duration=2 * HOUR)
    assert _repeated(meter.account) == {}
    # Staff 2 h; the meter off 2 h 30: its third long outage of 2027.
    fifth = outage_lived(
        transformer,
        start=month(5),
        duration=2 * HOUR,
        periods={meter: (month(5), month(5) + timedelta(hours=2, minutes=30))},
    )

    assert _repeated(meter.account) == {fifth.pk: (Decimal("400.00"), 3)}
    row = Compensation.objects.get(account=meter.account, standard=Standard.REPEATED)
    assert (row.details["evidence"], row.details["duration_minutes"]) == ("meter", 150)
    # The neighbour reported nothing: the outage's times, 1st (3 h), 3rd (2 h), 4th, 5th long.
    assert {
        c.outage_id: c.amount
        for c in Compensation.objects.filter(account=neighbour.account, standard=Standard.REPEATED)
    } == {
        fourth.pk: Decimal("400.00"),
        fifth.pk: Decimal("50.00"),
    }
    assert second.pk not in _repeated(neighbour.account)


# --- Re-measuring when late events move a period --------------------------------------------------


def test_a_late_event_after_payment_is_corrected_by_the_difference_once(street):
    late = street["late"]
    outage = outage_lived(
        street["transformer"],
        start=NINE,
        duration=5 * HOUR,
        periods={late: (NINE, NINE + 7 * HOUR)},
    )
    compensation = _restoration(late.account)
    _pay(compensation)
    assert _ledger(late.account) == [Decimal("250")]

    # A late power-restored event: the meter was back only at 17:30 (8 h 30: 200 + 3 × 50).
    SupplyPeriod.objects.filter(meter=late).update(on_at=NINE + timedelta(hours=8, minutes=30))
    changed = standards.standards_remeasure_outage(outage=outage)

    compensation.refresh_from_db()
    assert changed == [compensation]
    assert (compensation.amount, compensation.status) == (Decimal("350.00"), "credited")
    assert _ledger(late.account) == [Decimal("250"), Decimal("100")]
    assert compensation.details["on_at"] == "2026-12-03T17:30:00+03:00"
    assert [(s["from"], s["to"]) for s in compensation.details["corrections"]] == [
        ("250.00", "350.00")
    ]
    # Again, and the outage evaluated again: nothing moves.
    assert standards.standards_remeasure_outage(outage=outage) == []
    assert standards.standards_evaluate_outage(outage=outage) == []
    assert _ledger(late.account) == [Decimal("250"), Decimal("100")]
    assert Compensation.objects.filter(account=late.account).count() == 1

    # A late event shortens it below the standard (back at 14:00): what was paid is taken back.
    SupplyPeriod.objects.filter(meter=late).update(on_at=NINE + 5 * HOUR)
    standards.standards_remeasure_outage(outage=outage)
    standards.standards_remeasure_outage(outage=outage)

    compensation.refresh_from_db()
    assert compensation.amount == Decimal("0.00")
    assert "Not owed" in compensation.reason
    assert _ledger(late.account) == [Decimal("250"), Decimal("100"), Decimal("-350")]
    keys = list(LedgerEntry.objects.filter(account=late.account).values_list("key", flat=True))
    assert len(set(keys)) == 3


def test_a_pending_compensation_measured_to_zero_is_not_paid(street):
    late = street["late"]
    outage = outage_lived(
        street["transformer"],
        start=NINE,
        duration=5 * HOUR,
        periods={late: (NINE, NINE + 7 * HOUR)},
    )
    SupplyPeriod.objects.filter(meter=late).update(on_at=NINE + 2 * HOUR)

    standards.standards_remeasure_outage(outage=outage)
    compensation = _restoration(late.account)
    _pay(compensation)

    compensation.refresh_from_db()
    assert (compensation.amount, compensation.status) == (Decimal("0.00"), "pending")
    assert _ledger(late.account) == []
    assert not Notification.objects.filter(category="compensation_credited").exists()


def test_late_evidence_of_a_silent_meter_creates_what_is_now_owed(street):
    silent = street["silent"]
    outage = outage_lived(street["transformer"], start=NINE, duration=5 * HOUR)
    assert _restoration(silent.account) is None

    # The detector links the meter's own period once its late events arrive: off until 16:30.
    period_link(outage, {silent: (NINE, NINE + timedelta(hours=7, minutes=30))})
    [created] = standards.standards_remeasure_outage(outage=outage)

    assert (created.account, created.amount) == (silent.account, Decimal("300.00"))
    assert standards.standards_remeasure_outage(outage=outage) == []


def test_late_evidence_that_makes_an_outage_long_moves_the_years_ranks():
    transformer = transformer_of(saudi())
    meter, _ = consumer_on(transformer)
    starts = [datetime(2027, n, 4, 6, 0, tzinfo=UTC) for n in (1, 2, 3)]
    first = outage_lived(
        transformer, start=starts[0], duration=HOUR, periods={meter: (starts[0], starts[0] + HOUR)}
    )
    outage_lived(transformer, start=starts[1], duration=2 * HOUR)
    third = outage_lived(transformer, start=starts[2], duration=2 * HOUR)
    assert _repeated(meter.account) == {}

    # The first one's meter was really back only after 2 h 15: it is long, and the third is third.
    SupplyPeriod.objects.filter(meter=meter, off_at=starts[0]).update(
        on_at=starts[0] + timedelta(hours=2, minutes=15)
    )
    standards.standards_remeasure_outage(outage=first)

    assert _repeated(meter.account) == {third.pk: (Decimal("400.00"), 3)}
    assert standards.standards_remeasure_outage(outage=first) == []
    # And back: the first is short again, the third is second; nothing is owed for it.
    SupplyPeriod.objects.filter(meter=meter, off_at=starts[0]).update(on_at=starts[0] + HOUR)
    standards.standards_remeasure_outage(outage=first)
    assert _repeated(meter.account) == {third.pk: (Decimal("0.00"), 2)}


def test_meter_events_are_stored_as_given():
    """The factory's events are what the ingest would store (a guard on the test's own data)."""
    transformer = transformer_of(saudi())
    meter, _ = consumer_on(transformer)
    event = meter_event(meter, kind="overload", at=NINE)
    assert MeterEvent.objects.get().pk == event.pk
