"""billing.headend against a local stand-in of a head-end's command API (tests/fakes/headend.py,
which the other relay tests use too): how each answer is classed, and how long a send may take."""

from __future__ import annotations

from datetime import timedelta

import pytest

from billing import headend


def send():
    headend.relay_send(command="disconnect", meter_serial="SAM0000001", reference="ref-1")


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_busy_head_end_is_a_transient_error(head_end, status):
    head_end.fail_next(status)
    with pytest.raises(headend.TransientHeadEndError, match=str(status)):
        send()
    assert head_end.received == []


def test_a_refusal_is_a_permanent_error(head_end):
    head_end.fail_next(400)
    with pytest.raises(headend.PermanentHeadEndError, match="400"):
        send()


def test_an_accepted_command_reaches_the_head_end_with_the_token(head_end):
    send()
    [message] = head_end.received
    assert (message["command"], message["meter"], message["reference"]) == (
        "disconnect",
        "SAM0000001",
        "ref-1",
    )


def test_a_wrong_token_is_refused(head_end, settings):
    settings.HEADEND_TOKEN = "stolen"
    with pytest.raises(headend.PermanentHeadEndError, match="401"):
        send()


def test_a_send_may_take_the_connect_and_the_read_timeouts(settings):
    settings.HEADEND_TIMEOUT_SECONDS = 10
    assert headend.relay_send_bound() == timedelta(seconds=20)
