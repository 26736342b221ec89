"""The grid tree of the outage form: area → feeder → transformer of the staff member's utilities,
each node with the consumer accounts and meters it supplies, and a checkbox that posts the same
`areas`, `feeders` and `transformers` fields the form validates.

Plain HTML (details/summary and checkboxes) that works without script; grid-tree.js adds a filter
box, the running total of what is ticked, and shows a ticked node's children as covered. Built in
Python rather than a template: a utility with a few hundred feeders has thousands of nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from html import escape

from django import forms
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from outages.selectors import GridNode, UtilityGrid

FIELD_OF_KIND = {"area": "areas", "feeder": "feeders", "transformer": "transformers"}


def count_text(accounts: int, meters: int) -> str:
    return "{} · {}".format(
        ngettext("%(n)d account", "%(n)d accounts", accounts) % {"n": accounts},
        ngettext("%(n)d meter", "%(n)d meters", meters) % {"n": meters},
    )


class GridTreeWidget(forms.Widget):
    """Renders the tree; its value is {"areas": [pk…], "feeders": […], "transformers": […]}, the
    ticked nodes (posted as those three fields)."""

    tree: Callable[[], list[UtilityGrid]] | None = None

    class Media:
        css = {"all": ["outages/grid-tree.css"]}
        js = ["outages/grid-tree.js"]

    def value_from_datadict(self, data, files, name):
        return {
            field: data.getlist(field) if hasattr(data, "getlist") else data.get(field) or []
            for field in FIELD_OF_KIND.values()
        }

    def value_omitted_from_data(self, data, files, name):
        return False

    def render(self, name, value, attrs=None, renderer=None) -> SafeString:
        grids = self.tree() if self.tree is not None else []
        value = value or {}
        ticked = {
            field: {str(pk) for pk in value.get(field) or []} for field in FIELD_OF_KIND.values()
        }
        several = len(grids) > 1
        parts = [
            format_html(
                '<div class="grid-tree" id="grid-tree">'
                '<div class="grid-tree-bar">'
                '<input type="search" class="grid-tree-filter" id="grid-tree-filter" '
                'placeholder="{}" aria-label="{}" autocomplete="off">'
                '<span class="grid-tree-total" id="grid-tree-total" aria-live="polite">{}</span>'
                "</div>",
                _("Filter by area, feeder, transformer, locality or code"),
                _("Filter the grid"),
                self._total_text(grids, ticked),
            )
        ]
        if not any(grid.areas for grid in grids):
            parts.append(format_html('<p class="help">{}</p>', _("No grid is recorded yet.")))
        for grid in grids:
            areas = mark_safe(  # noqa: S308 - every value in it escaped by _nodes
                self._nodes(grid.areas, ticked, covered=False, open_alone=len(grid.areas) == 1)
            )
            if several:
                parts.append(
                    format_html(
                        '<details class="grid-utility" data-utility="{}" open>'
                        '<summary><strong>{}</strong> <span class="grid-count">{}</span></summary>'
                        '<ul class="grid-level">{}</ul></details>',
                        grid.pk,
                        grid.name,
                        count_text(grid.accounts, grid.meters),
                        areas,
                    )
                )
            else:
                parts.append(
                    format_html('<ul class="grid-level" data-utility="{}">{}</ul>', grid.pk, areas)
                )
        parts.append("</div>")
        return mark_safe("".join(parts))  # noqa: S308 - every part built with format_html

    def _total_text(self, grids: list[UtilityGrid], ticked: dict[str, set[str]]) -> str:
        top = list(_ticked_top([area for grid in grids for area in grid.areas], ticked))
        if not top:
            return _("Nothing ticked yet.")
        accounts = sum(node.accounts for node in top)
        meters = sum(node.meters for node in top)
        return _("Ticked: %(counts)s") % {"counts": count_text(accounts, meters)}

    def _nodes(
        self, nodes: list[GridNode], ticked: dict[str, set[str]], *, covered: bool, open_alone=False
    ) -> str:
        """The nodes' HTML. Plain f-strings with every value escaped (html.escape): format_html
        costs a second per few thousand nodes, this a tenth of it."""
        items = []
        for node in nodes:
            field = FIELD_OF_KIND[node.kind]
            own = str(node.pk) in ticked[field]
            label = escape(f"{node.name} ({node.code})" if node.name else node.code)
            place = f' <span class="grid-place">{escape(node.place)}</span>' if node.place else ""
            state = (" checked" if own or covered else "") + (
                # A ticked area or feeder already covers everything under it.
                ' disabled class="grid-covered"' if covered else ""
            )
            box = (
                f'<label class="grid-node"><input type="checkbox" name="{field}" value="{node.pk}" '
                f'data-accounts="{node.accounts}" data-meters="{node.meters}" '
                f'data-own="{"1" if own else ""}"{state}> {label}</label>{place} '
                f'<span class="grid-count">{escape(count_text(node.accounts, node.meters))}</span>'
            )
            search = escape(" ".join(p for p in (node.name, node.code, node.place) if p).lower())
            anchor = f'id="grid-{node.kind}-{node.pk}" data-search="{search}"'
            if not node.children:
                items.append(f'<li class="grid-leaf" {anchor}>{box}</li>')
                continue
            inside = self._nodes(node.children, ticked, covered=covered or own)
            is_open = " open" if open_alone or _holds_ticked(node, ticked) else ""
            items.append(
                f'<li {anchor}><details class="grid-{node.kind}"{is_open}><summary>{box}</summary>'
                f'<ul class="grid-level">{inside}</ul></details></li>'
            )
        return "".join(items)


def _walk(nodes: Iterable[GridNode]) -> Iterable[GridNode]:
    for node in nodes:
        yield node
        yield from _walk(node.children)


def _ticked_top(nodes: list[GridNode], ticked: dict[str, set[str]]) -> Iterable[GridNode]:
    """The ticked nodes not under a ticked one: what the outage covers, each meter once."""
    for node in nodes:
        if str(node.pk) in ticked[FIELD_OF_KIND[node.kind]]:
            yield node
        else:
            yield from _ticked_top(node.children, ticked)


def _holds_ticked(node: GridNode, ticked: dict[str, set[str]]) -> bool:
    return any(str(child.pk) in ticked[FIELD_OF_KIND[child.kind]] for child in _walk(node.children))
