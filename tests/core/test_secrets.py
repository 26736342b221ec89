"""No shared secrets: the key in the repository signs nothing, a server on a real database refuses to
start without a key of its own, and the embedded default makes one key, once, and keeps it."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from django.conf import settings
from django.utils import timezone

from billing.gateway import GATEWAYS
from billing.models import Balance, LedgerEntry, TopUp
from tests.accounts.factories import AccountLinkFactory

ROOT = Path(__file__).resolve().parents[2]
# The key config/settings.py held before: the outside probe signed tokens and webhooks with it.
REPOSITORY_KEY = "dev-only-insecure-key-set-SECRET_KEY-in-production"
PRINT_SECRETS = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'key': s.SECRET_KEY, 'jwt': s.SIMPLE_JWT['SIGNING_KEY'], "
    "'webhook': s.PAYMENT_WEBHOOK_SECRET, 'gateway': s.PAYMENT_GATEWAY_API_KEY, "
    "'otp': s.OTP_HASH_KEY}))"
)


def settings_process(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(SECRET_NAMES)}
    clean.pop("DATABASE_URL", None)
    clean.pop("DEBUG", None)
    return subprocess.run(
        [sys.executable, "-c", PRINT_SECRETS],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


SECRET_NAMES = (
    "SECRET_KEY",
    "JWT_SIGNING_KEY",
    "PAYMENT_WEBHOOK_SECRET",
    "PAYMENT_GATEWAY_API_KEY",
    "OTP_HASH_KEY",
)


def test_a_server_on_a_real_database_refuses_to_start_without_a_key(tmp_path):
    result = settings_process(
        {"VAR_DIR": str(tmp_path), "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none"}
    )

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "SECRET_KEY is not set" in result.stderr
    assert not (tmp_path / "secret-key").exists()


def test_the_embedded_default_creates_one_private_key_and_keeps_it(tmp_path):
    first = settings_process({"VAR_DIR": str(tmp_path)})
    second = settings_process({"VAR_DIR": str(tmp_path)})

    assert first.returncode == 0, first.stderr
    secrets_first = json.loads(first.stdout.strip().splitlines()[-1])
    assert secrets_first == json.loads(second.stdout.strip().splitlines()[-1])
    key_file = tmp_path / "secret-key"
    assert key_file.read_text().strip() == secrets_first["key"]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(secrets_first["key"]) >= 50 and REPOSITORY_KEY not in secrets_first.values()
    # Each use has a key of its own: knowing one (a webhook secret shared with a gateway) gives
    # no other, and none is the key with a public suffix.
    assert len(set(secrets_first.values())) == len(secrets_first)
    assert not any(
        value.startswith(secrets_first["key"])
        for name, value in secrets_first.items()
        if name != "key"
    )

    other = settings_process({"VAR_DIR": str(tmp_path / "elsewhere")})
    assert json.loads(other.stdout.strip().splitlines()[-1])["key"] != secrets_first["key"]


def test_a_set_key_wins_and_a_key_file_serves_a_real_database(tmp_path):
    given = settings_process({"VAR_DIR": str(tmp_path), "SECRET_KEY": "k" * 60})
    assert json.loads(given.stdout.strip().splitlines()[-1])["key"] == "k" * 60
    assert not (tmp_path / "secret-key").exists()

    key_file = tmp_path / "keys" / "server-key"
    on_postgres = settings_process(
        {
            "VAR_DIR": str(tmp_path),
            "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none",
            "SECRET_KEY_FILE": str(key_file),
        }
    )
    assert on_postgres.returncode == 0, on_postgres.stderr
    assert json.loads(on_postgres.stdout.strip().splitlines()[-1])["key"] == key_file.read_text()


@pytest.mark.django_db
def test_a_token_signed_with_the_repository_key_reads_nothing(client):
    link = AccountLinkFactory()
    now = timezone.now()
    forged = jwt.encode(
        {
            "token_type": "access",
            "exp": int((now + timedelta(minutes=5)).timestamp()),
            "iat": int(now.timestamp()),
            "jti": "forged",
            "user_id": str(link.user_id),
        },
        REPOSITORY_KEY,
        algorithm="HS256",
    )

    response = client.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer {forged}")

    assert response.status_code == 401
    assert settings.SIMPLE_JWT["SIGNING_KEY"] not in (REPOSITORY_KEY, settings.SECRET_KEY)


@pytest.mark.django_db
def test_a_webhook_signed_with_the_repository_derived_secret_credits_nothing(client, make_api):
    link = AccountLinkFactory()
    started = make_api(link.user).post(
        f"/api/v1/accounts/{link.account_id}/topups/",
        {"amount": "3.000", "channel": "app"},
        HTTP_IDEMPOTENCY_KEY="forged-webhook",
    )
    assert started.status_code == 201, started.json()
    topup = TopUp.objects.get(pk=started.json()["topup"]["id"])
    body = GATEWAYS["simulated"].event_body(
        reference=topup.gateway_reference,
        amount=topup.amount,
        currency=topup.currency,
        succeeded=True,
    )
    timestamp = int(time.time())
    digest = hmac.new(
        f"{REPOSITORY_KEY}-webhooks".encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()

    response = client.post(
        "/api/v1/payments/webhooks/simulated/",
        data=body,
        content_type="application/json",
        HTTP_SIM_SIGNATURE=f"t={timestamp},v1={digest}",
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_signature"
    topup.refresh_from_db()
    assert topup.status == "pending"
    assert not LedgerEntry.objects.filter(account=topup.account).exists()
    assert not Balance.objects.filter(account=topup.account, amount__gt=0).exists()
