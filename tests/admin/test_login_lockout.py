"""Admin sign-in is throttled (django-axes, config/settings.py "Admin sign-in"): five wrong
passwords for one username from one address lock that pair out for the cool-off, even with the
right password; others sign in as before, and the API's tokens are untouched."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.db.models import F

from tests.accounts.factories import UtilityFactory
from tests.outages.factories import staff_member

PASSWORD = "correct horse battery staple"  # tests.outages.factories.staff_member's
LOGIN = "/admin/login/?next=/admin/"


def sign_in(client, username: str, password: str, address: str = "10.0.0.1"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def signed_in(client) -> bool:
    return client.get("/admin/").status_code == 200


@pytest.fixture(autouse=True)
def quick_hashes(settings):
    # Each sign-in checks a password: the production hasher is slow on purpose, these need not be.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff(db):
    return staff_member(UtilityFactory(), role="cashier", username="cashier-1")


def test_fifty_wrong_passwords_lock_the_right_one_out(client, staff, settings):
    answers = [sign_in(client, "cashier-1", f"guess-{n}").status_code for n in range(50)]
    right = sign_in(client, "cashier-1", PASSWORD)

    # Four wrong ones are the login form again; the fifth locks, and every try after it.
    assert answers[:4] == [200] * 4 and set(answers[4:]) == {429}
    assert right.status_code == 429
    assert "Too many failed sign-ins" in right.content.decode()
    assert f"{settings.AXES_COOLOFF_TIME.seconds // 60} minutes" in right.content.decode()
    assert not signed_in(client)


def test_after_the_cool_off_the_right_password_signs_in(client, staff):
    for n in range(6):
        sign_in(client, "cashier-1", f"guess-{n}")
    assert sign_in(client, "cashier-1", PASSWORD).status_code == 429

    # Sixteen minutes pass.
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=16))

    assert sign_in(client, "cashier-1", PASSWORD).status_code == 302
    assert signed_in(client)


def test_an_administrator_unlocks_a_user_at_once(client, staff):
    for n in range(5):
        sign_in(client, "cashier-1", f"guess-{n}")
    assert sign_in(client, "cashier-1", PASSWORD).status_code == 429

    call_command("axes_reset_username", "cashier-1")

    assert sign_in(client, "cashier-1", PASSWORD).status_code == 302


def test_a_lockout_locks_neither_another_user_nor_another_address(client, staff):
    other = staff_member(staff.staff_memberships.get().utility, role="support", username="other")
    for n in range(10):
        sign_in(client, "cashier-1", f"guess-{n}")

    assert sign_in(client, other.username, PASSWORD).status_code == 302
    client.logout()
    assert sign_in(client, "cashier-1", PASSWORD, address="10.0.0.2").status_code == 302


def test_a_success_before_the_limit_starts_the_count_again(client, staff):
    for n in range(4):
        sign_in(client, "cashier-1", f"guess-{n}")
    assert sign_in(client, "cashier-1", PASSWORD).status_code == 302
    client.logout()
    for n in range(4):
        sign_in(client, "cashier-1", f"again-{n}")

    assert sign_in(client, "cashier-1", PASSWORD).status_code == 302


def test_the_api_signs_in_with_tokens_whatever_the_admin_lockout(client, staff, db):
    from rest_framework.test import APIClient

    from accounts.services import tokens_issue

    for n in range(6):
        sign_in(client, "cashier-1", f"guess-{n}")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens_issue(user=staff).access}")

    assert api.get("/api/v1/me/").status_code == 200
