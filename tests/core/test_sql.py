from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from accounts.models import AccountLink, Utility
from billing.ledger import ledger_post
from billing.models import Balance
from core import sql
from tests.accounts.factories import AccountLinkFactory

pytestmark = pytest.mark.django_db


def test_columns_come_back_as_the_orm_gives_them():
    link = AccountLinkFactory(visible_from=datetime(2026, 3, 1, 9, 30, tzinfo=UTC))
    ledger_post(
        account=link.account, kind="topup", amount=Decimal("1.250"), key="k", description="x"
    )
    rows = sql.select(
        """
        SELECT b.amount, l.visible_from, MIN(l.visible_from), u.weekend_days
        FROM billing_balance b
        JOIN accounts_accountlink l ON l.account_id = b.account_id
        JOIN accounts_consumeraccount a ON a.id = b.account_id
        JOIN accounts_utility u ON u.id = a.utility_id
        WHERE b.account_id = %s AND l.created_at < %s
        GROUP BY b.account_id, l.id, u.id
        """,
        [link.account_id, datetime(2100, 1, 1, tzinfo=UTC)],
        [
            Balance._meta.get_field("amount"),
            AccountLink._meta.get_field("visible_from"),
            AccountLink._meta.get_field("visible_from"),
            Utility._meta.get_field("weekend_days"),
        ],
    )
    assert rows == [
        [
            Decimal("1.250"),
            datetime(2026, 3, 1, 9, 30, tzinfo=UTC),
            datetime(2026, 3, 1, 9, 30, tzinfo=UTC),
            [4, 5],
        ]
    ]
    assert isinstance(rows[0][0], Decimal)


def test_an_instance_defers_what_was_not_read(django_assert_num_queries):
    utility = AccountLinkFactory().account.utility
    names = ["id", "timezone", "currency"]
    rows = sql.select(
        "SELECT id, timezone, currency FROM accounts_utility WHERE id = %s",
        [utility.pk],
        sql.columns(Utility, names),
    )
    loaded = sql.instance(Utility, names, rows[0])
    with django_assert_num_queries(0):
        assert (loaded.pk, loaded.zone, loaded.currency) == (utility.pk, utility.zone, "KWD")
    with django_assert_num_queries(1):  # never a silent default
        assert loaded.name == utility.name
