"""The SMS sender against a local fake gateway speaking HTTP."""

from __future__ import annotations

import pytest

from notifications.sms import PermanentSmsError, TransientSmsError, sms_send
from notifications.tasks import send_sms


def test_it_posts_the_message_with_the_token(sms_gateway):
    message_id = sms_send(to="+96550001234", body="hello")

    assert message_id == "msg-1"
    assert sms_gateway.messages == [{"to": "+96550001234", "from": "SmartMeter", "text": "hello"}]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_busy_or_broken_gateways_are_transient(sms_gateway, status):
    sms_gateway.fail_next(status, headers={"Retry-After": "7"})
    with pytest.raises(TransientSmsError) as caught:
        sms_send(to="+96550001234", body="hello")
    assert caught.value.retry_after == 7


def test_a_refusal_is_permanent(sms_gateway, settings):
    settings.SMS_HTTP_TOKEN = "wrong"
    with pytest.raises(PermanentSmsError):
        sms_send(to="+96550001234", body="hello")


def test_an_unreachable_gateway_is_transient(settings):
    settings.SMS_BACKEND = "http"
    settings.SMS_HTTP_URL = "http://127.0.0.1:9/messages"
    with pytest.raises(TransientSmsError):
        sms_send(to="+96550001234", body="hello")


def test_the_task_retries_transient_errors_and_delivers_once(sms_gateway):
    # Eager retries re-apply inline; let them run instead of raising the first Retry.
    send_sms.app.conf.task_eager_propagates = False  # the celery_eager fixture sets it back
    sms_gateway.fail_next(503, times=2, headers={"Retry-After": "0"})

    send_sms.apply(args=("+96550001234", "hello"))

    assert sms_gateway.requests == 3
    assert len(sms_gateway.messages) == 1


def test_the_task_gives_up_on_permanent_errors(sms_gateway, caplog):
    sms_gateway.fail_next(400)

    send_sms.apply(args=("+96550001234", "hello"))

    assert sms_gateway.requests == 1 and sms_gateway.messages == []
    assert "refused" in caplog.text
    assert "+96550001234" not in caplog.text
