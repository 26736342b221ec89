"""Every admin page and list action, for every staff role of one utility, against a row of its own
utility and one of another, does exactly what docs/admin-roles.md says. The pages are read from
the admin site itself: a new admin page or action missing from the table fails here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse

from billing.models import Conversion, TopUp
from meters.models import Meter
from servicerequests.models import ServiceRequest
from tests.admin.objects import MARK, Rows
from tests.outages.factories import staff_member

DOC = Path(settings.BASE_DIR) / "docs" / "admin-roles.md"
ROLES = ["planner", "approver", "cashier", "support"]  # the table's columns, in order
# What a cell may say. A refused page answers 403 (or 404 for a file), or sends the staff member
# away (302) to the admin's index or the list, as Django's admin and our older custom pages do.
CELLS = {"edit", "view", "yes", "—"}
OBJECT_PARAMS = {"object_id", "pk", "id"}  # "id": the user admin's password page


def doc_table() -> dict[str, dict[str, str]]:
    """The table's rows: {page or action: {role: cell}}."""
    rows = {}
    for line in DOC.read_text().splitlines():
        key = re.match(r"\|\s*`([^`]+)`\s*\|", line)
        if key:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows[key.group(1)] = dict(zip(ROLES, cells[-len(ROLES) :], strict=True))
    return rows


@dataclass(frozen=True)
class Page:
    name: str  # the URL's name, the table's key
    model: type
    params: frozenset[str]

    @property
    def kind(self) -> str:
        return self.name.rsplit("_", 1)[1]


def admin_pages() -> list[Page]:
    pages = []
    for model, model_admin in admin.site._registry.items():
        for pattern in model_admin.get_urls():
            if pattern.name is None:  # Django's old "<id>/" address, a redirect to the change page
                continue
            params = frozenset(pattern.pattern.converters)
            pages.append(Page(name=pattern.name, model=model, params=params))
    return pages


def action_key(model, name: str) -> str:
    return f"{model._meta.app_label}_{model._meta.model_name} action {name}"


def admin_actions() -> dict[str, tuple[type, str]]:
    """Every list action but delete_selected (which follows the delete page's row)."""
    found = {}
    for model, model_admin in admin.site._registry.items():
        for func in model_admin.actions or []:
            name = func if isinstance(func, str) else func.__name__
            found[action_key(model, name)] = (model, name)
    return found


def test_the_table_holds_every_admin_page_and_action_and_nothing_else():
    table = doc_table()
    keys = {page.name for page in admin_pages()} | set(admin_actions())
    assert sorted(keys - set(table)) == [], "admin pages missing from docs/admin-roles.md"
    assert sorted(set(table) - keys) == [], "rows of docs/admin-roles.md no admin page has"
    assert {cell for row in table.values() for cell in row.values()} <= CELLS


def test_every_list_action_of_ours_names_the_permission_it_needs():
    ours = {"core", "accounts", "meters", "billing", "outages", "servicerequests", "notifications"}
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label not in ours:
            continue
        for func, name, _ in model_admin._get_base_actions():
            assert getattr(func, "allowed_permissions", None), f"{model.__name__}: {name}"


@pytest.fixture
def rows(db):
    own, other = Rows(code="own", mark=""), Rows(code=MARK, mark=MARK)
    own.every_admin_row(), other.every_admin_row()
    return own, other


def _url(page: Page, row) -> str:
    kwargs = {}
    for param in page.params:
        if param in OBJECT_PARAMS:
            kwargs[param] = row.pk
        elif param == "attachment_id":
            kwargs[param] = row.attachment_pk
        else:
            raise AssertionError(f"{page.name}: what is <{param}>?")
    return reverse(f"admin:{page.name}", kwargs=kwargs)


def _shown(response) -> str:
    return "" if response.streaming else response.content.decode().lower()


def walk(client, user, own: Rows, other: Rows) -> tuple[dict[str, str], list[str]]:
    """What `user` can do on every admin page (a cell of the table each) and what went wrong:
    another utility's row reached, or its data shown."""
    client.force_login(user)
    found, leaks = {}, []
    for page in admin_pages():
        mine = own.of(page.model)
        theirs = other.of(page.model)
        if "attachment_id" in page.params:
            mine.attachment_pk = own.attachment(mine).pk
            theirs.attachment_pk = other.attachment(theirs).pk
        url = _url(page, mine)
        response = client.get(url)
        if response.status_code == 200:
            context = response.context_data if hasattr(response, "context_data") else None
            editable = bool(context and context.get("has_change_permission"))
            found[page.name] = ("edit" if editable else "view") if page.kind == "change" else "yes"
        elif response.status_code in (403, 404) or (
            response.status_code == 302 and response["Location"] != url
        ):
            found[page.name] = "—"
        else:
            found[page.name] = f"answered {response.status_code}"
        if MARK in _shown(response):
            leaks.append(f"{url} shows another utility's data")
        if page.params & OBJECT_PARAMS:
            foreign = client.get(_url(page, theirs))
            if foreign.status_code == 200:
                leaks.append(f"{_url(page, theirs)} opened another utility's row")
    request = RequestFactory().get("/admin/")
    request.user = user
    for key, (model, name) in admin_actions().items():
        # An action runs from its list: one offered where the list is refused is never run.
        listed = found[f"{model._meta.app_label}_{model._meta.model_name}_changelist"] == "yes"
        offered = admin.site._registry[model].get_actions(request)
        found[key] = "yes" if listed and name in offered else "—"
    return found, leaks


@pytest.mark.parametrize("role", ROLES)
def test_each_role_does_exactly_what_the_table_says(role, rows, client):
    own, other = rows
    user = staff_member(own.utility, role=role)

    found, leaks = walk(client, user, own, other)

    expected = {key: cells[role] for key, cells in doc_table().items()}
    differences = {
        key: f"table says {expected.get(key)}, admin gives {found.get(key)}"
        for key in expected.keys() | found.keys()
        if expected.get(key) != found.get(key)
    }
    assert differences == {}
    assert leaks == []


@pytest.mark.parametrize("role", ROLES)
def test_only_cashiers_take_cash_and_only_approvers_convert_meters(role, rows, client):
    own, _ = rows
    account = own.meter.account
    conversion = own.of(Conversion)
    client.force_login(staff_member(own.utility, role=role))

    cash = client.post(
        reverse("admin:billing_topup_counter"), {"account": account.pk, "amount": "1.500"}
    )
    convert = client.post(
        reverse("admin:billing_conversion_convert", args=[conversion.pk]),
        {"new_meter_serial": "PREPAID-NEW-1"},
    )

    took_cash = TopUp.objects.filter(channel="counter", account=account).exists()
    converted = Meter.objects.filter(serial="PREPAID-NEW-1").exists()
    conversion.refresh_from_db()
    if role == "cashier":
        assert cash.status_code == 200 and b"Receipt" in cash.content and took_cash
    else:
        assert cash.status_code == 403 and not took_cash
    if role == "approver":
        assert convert.status_code == 302 and converted and conversion.status == "done"
    else:
        assert convert.status_code == 403 and not converted and conversion.status == "flagged"


def test_a_step_of_another_utilitys_request_is_never_taken(rows, client):
    own, other = rows
    theirs = other.of(ServiceRequest)
    client.force_login(staff_member(own.utility, role="support"))

    response = client.post(
        reverse("admin:servicerequests_servicerequest_reply", args=[theirs.pk]),
        {"text": "Not yours to answer."},
    )

    assert response.status_code == 302
    assert not theirs.events.filter(kind="reply").exists()
