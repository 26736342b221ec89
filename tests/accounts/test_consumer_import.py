from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from accounts.models import ConsumerAccount
from tests.accounts.factories import ConsumerAccountFactory, UserFactory, UtilityFactory

GOOD = (
    "consumer_id,registered_mobile,name,premises_address,status\n"
    '10020030,+96550001231,Fahad Al-Mutairi,"Salmiya, Block 10, Apt 3",active\n'
    '10020031,50001232,Fahad Al-Mutairi,"Salmiya, Block 10, Apt 4",\n'
)


@pytest.fixture
def utility(db):
    return UtilityFactory()


@pytest.fixture
def csv_file(tmp_path):
    def write(text: str):
        path = tmp_path / "consumers.csv"
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def run_import(csv_file):
    def run(utility, text: str):
        out, err = io.StringIO(), io.StringIO()
        call_command("import_consumers", utility.code, str(csv_file(text)), stdout=out, stderr=err)
        return out.getvalue(), err.getvalue()

    return run


def test_it_imports_and_normalises_numbers(utility, run_import):
    out, _ = run_import(utility, GOOD)

    assert "2 created" in out
    accounts = {a.consumer_id: a for a in ConsumerAccount.objects.all()}
    assert accounts["10020031"].registered_mobile == "+96550001232"  # national form read as Kuwaiti
    assert accounts["10020031"].status == "active"
    assert accounts["10020030"].premises_address == "Salmiya, Block 10, Apt 3"


def test_importing_again_updates_changed_rows_only(utility, run_import):
    run_import(utility, GOOD)
    out, _ = run_import(utility, GOOD.replace("Apt 4", "Apt 40"))
    assert "0 created, 1 updated, 1 unchanged" in out
    assert ConsumerAccount.objects.get(consumer_id="10020031").premises_address.endswith("Apt 40")


def test_one_bad_row_imports_nothing_and_reports_every_problem(utility, run_import):
    existing = ConsumerAccountFactory(utility=utility, consumer_id="10020030", name="Old name")
    bad = GOOD + (
        "10020032,12345,Someone,,active\n"
        ",+96550001239,No ID,,\n"
        "10020033,+96550001238,Closed one,,gone\n"
        "10020030,+96550001231,Twice,,\n"
    )
    with pytest.raises(CommandError, match="4 problems"):
        run_import(utility, bad)
    assert ConsumerAccount.objects.count() == 1
    existing.refresh_from_db()
    assert existing.name == "Old name"


def test_the_report_names_line_and_field(utility):
    from accounts import services

    rows, errors = services.consumer_accounts_read_csv(
        data=(GOOD + "10020032,12345,Someone,,active\n").encode()
    )
    report = services.consumer_accounts_import(utility=utility, rows=rows)
    assert errors == []
    assert [(e.line, e.consumer_id, e.field) for e in report.errors] == [
        (4, "10020032", "registered_mobile")
    ]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"id,mobile\n1,2\n", "Missing columns"),
        (b"consumer_id,registered_mobile,name,colour\n", "Unknown columns"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (
            b"consumer_id,registered_mobile,name\n1,+96550001231,A,extra\n",
            "More values than columns",
        ),
    ],
)
def test_malformed_files_are_refused(utility, data, problem):
    from accounts import services

    rows, errors = services.consumer_accounts_read_csv(data=data)
    assert rows == []
    assert problem in errors[0].message


def test_an_unknown_utility_is_refused(db, csv_file):
    with pytest.raises(CommandError, match="No utility"):
        call_command("import_consumers", "xx-none", str(csv_file(GOOD)))


class TestAdminImport:
    @pytest.fixture
    def staff_client(self, client, db):
        client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
        return client

    def test_a_good_file_imports(self, staff_client, utility):
        upload = io.BytesIO(GOOD.encode())
        upload.name = "consumers.csv"
        response = staff_client.post(
            "/admin/accounts/consumeraccount/import/",
            {"utility": utility.pk, "file": upload},
            follow=True,
        )
        assert response.status_code == 200
        assert b"2 created" in response.content
        assert ConsumerAccount.objects.count() == 2

    def test_a_bad_file_shows_its_problems_and_imports_nothing(self, staff_client, utility):
        upload = io.BytesIO((GOOD + "10020032,12345,Someone,,active\n").encode())
        upload.name = "consumers.csv"
        response = staff_client.post(
            "/admin/accounts/consumeraccount/import/", {"utility": utility.pk, "file": upload}
        )
        assert response.status_code == 200
        assert b"import-errors" in response.content and b"10020032" in response.content
        assert ConsumerAccount.objects.count() == 0

    def test_the_changelist_offers_the_import(self, staff_client, utility):
        ConsumerAccountFactory(utility=utility)
        page = staff_client.get("/admin/accounts/consumeraccount/")
        assert page.status_code == 200 and b"Import CSV" in page.content

    def test_consumers_cannot_reach_the_admin(self, client, db):
        client.force_login(UserFactory())
        response = client.get("/admin/accounts/consumeraccount/import/")
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
