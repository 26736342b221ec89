"""`field__anyof`: one of a list of ids sent as one parameter, the same rows as `__in` on both
databases, for a plain field, a relation and the primary key, whatever the list's length."""

from __future__ import annotations

import pytest
from django.core.exceptions import FieldError
from django.db import connection

from accounts.models import ConsumerAccount
from billing.models import LedgerEntry
from tests.accounts.factories import ConsumerAccountFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def accounts():
    return [ConsumerAccountFactory() for _ in range(4)]


def test_it_finds_what_in_finds_on_a_key_and_a_relation(accounts):
    wanted = [accounts[0].pk, accounts[2].pk, 10**12]  # one id that is nobody's
    by_any = set(ConsumerAccount.objects.filter(pk__anyof=wanted).values_list("pk", flat=True))
    by_in = set(ConsumerAccount.objects.filter(pk__in=wanted).values_list("pk", flat=True))
    assert by_any == by_in == {accounts[0].pk, accounts[2].pk}
    for account in accounts:
        LedgerEntry.objects.create(
            account=account,
            kind=LedgerEntry.Kind.TOPUP,
            amount=1,
            balance_after=1,
            currency="KWD",
            key=f"k{account.pk}",
            description="top-up",
        )
    entries = LedgerEntry.objects.filter(account__anyof=wanted)
    assert sorted(entries.values_list("account_id", flat=True)) == sorted(wanted[:2])
    assert not ConsumerAccount.objects.filter(pk__anyof=[]).exists()
    assert set(ConsumerAccount.objects.exclude(pk__anyof=wanted).values_list("pk", flat=True)) == {
        accounts[1].pk,
        accounts[3].pk,
    }


def test_a_list_of_any_length_is_one_parameter(accounts):
    """40,000 ids: past SQLite's limit on a statement's parameters, had each been one."""
    ids = [account.pk for account in accounts] + list(range(10**9, 10**9 + 40_000))
    sent = []

    def spy(execute, sql, params, many, context):
        sent.append(params)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        found = set(ConsumerAccount.objects.filter(pk__anyof=ids).values_list("pk", flat=True))
    assert found == {account.pk for account in accounts}
    assert [len(params) for params in sent] == [1]


def test_an_iterator_is_read_once_none_matches_nothing_and_text_columns_have_no_anyof(accounts):
    query = ConsumerAccount.objects.filter(pk__anyof=iter([accounts[1].pk, None]))
    assert list(query.values_list("pk", flat=True)) == [accounts[1].pk]
    assert list(query.values_list("pk", flat=True)) == [accounts[1].pk]  # compiled again
    with pytest.raises(FieldError):
        ConsumerAccount.objects.filter(consumer_id__anyof=["x"])
