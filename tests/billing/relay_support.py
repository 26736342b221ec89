"""What the relay tests share: an account run out of credit with its disconnection ordered, and
the relay beat run at a pinned moment."""

from __future__ import annotations

from decimal import Decimal

import time_machine

from billing import relay, tasks
from billing.ledger import ledger_post


def disconnect_ordered(meter, at, *, owed="-5.00"):
    """The account runs out of credit at `at` and a disconnection is ordered."""
    with time_machine.travel(at, tick=False):
        ledger_post(
            account=meter.account,
            kind="energy_charge",
            amount=Decimal(owed),
            key=f"energy:{meter.pk}:{at.isoformat()}",
            description="energy",
        )
        [command] = relay.disconnect_evaluate(account=meter.account)
    return command


def relay_beat_at(at, capture):
    """The relay beat at `at`, with the sends it queues and the reconnects they order."""
    with time_machine.travel(at, tick=False), capture(execute=True):
        return tasks.relay_due()
