"""The grid the outage planner chooses from: area → feeder → transformer, with counts."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count, QuerySet

from accounts.models import Utility
from meters.models import Feeder, GridArea, Meter, Transformer


@dataclass
class GridNode:
    """An area, feeder or transformer with the consumer accounts and meters it supplies now."""

    kind: str  # "area", "feeder" or "transformer"
    pk: int
    name: str
    code: str
    place: str = ""  # the consumer's words for it, when the utility gave them
    accounts: int = 0
    meters: int = 0
    parent_id: int | None = None
    children: list[GridNode] = field(default_factory=list)


@dataclass
class UtilityGrid:
    pk: int
    name: str
    areas: list[GridNode]

    @property
    def accounts(self) -> int:
        return sum(area.accounts for area in self.areas)

    @property
    def meters(self) -> int:
        return sum(area.meters for area in self.areas)


def grid_counts_query(*, utility_ids: list[int] | None) -> QuerySet:
    """Accounts and meters supplied by each transformer (removed meters left out), grouped in
    the database: an index-only scan of `meter_grid_counts` on PostgreSQL."""
    meters = Meter.objects.filter(transformer__isnull=False).exclude(status=Meter.Status.REMOVED)
    if utility_ids is not None:
        meters = meters.filter(utility_id__in=utility_ids)
    return (
        meters.values("transformer_id")
        .annotate(accounts=Count("account_id", distinct=True), meters=Count("pk"))
        .order_by()
    )


def grid_counts(*, utility_ids: list[int] | None) -> dict[int, tuple[int, int]]:
    """{transformer id: (accounts, meters)} in one grouped query."""
    return {
        row["transformer_id"]: (row["accounts"], row["meters"])
        for row in grid_counts_query(utility_ids=utility_ids)
    }


def grid_tree(*, utility_ids: list[int] | None) -> list[UtilityGrid]:
    """The grid of the given utilities (None: all) as area → feeder → transformer, each node
    with the accounts and meters under it. Four queries whatever the size: the utilities, the
    three levels, and the counts (grid_counts). A feeder's and an area's account counts add up
    their transformers': an account with meters under two transformers counts in both."""
    utilities = Utility.objects.order_by("name")
    areas = GridArea.objects.order_by("name", "code")
    feeders = Feeder.objects.order_by("code", "pk")
    transformers = Transformer.objects.order_by("code", "pk")
    if utility_ids is not None:
        utilities = utilities.filter(pk__in=utility_ids)
        areas = areas.filter(utility_id__in=utility_ids)
        feeders = feeders.filter(area__utility_id__in=utility_ids)
        transformers = transformers.filter(feeder__area__utility_id__in=utility_ids)
    counts = grid_counts(utility_ids=utility_ids)
    feeder_nodes: dict[int, GridNode] = {}
    for row in feeders.values("pk", "area_id", "name", "code", "locality", "streets"):
        place = ": ".join(part for part in (row["locality"], row["streets"]) if part)
        feeder_nodes[row["pk"]] = GridNode(
            "feeder", row["pk"], row["name"], row["code"], place, parent_id=row["area_id"]
        )
    for row in transformers.values("pk", "feeder_id", "name", "code", "locality", "streets"):
        accounts, meters = counts.get(row["pk"], (0, 0))
        place = ": ".join(part for part in (row["locality"], row["streets"]) if part)
        feeder = feeder_nodes[row["feeder_id"]]
        feeder.children.append(
            GridNode("transformer", row["pk"], row["name"], row["code"], place, accounts, meters)
        )
        feeder.accounts += accounts
        feeder.meters += meters
    by_utility: dict[int, list[GridNode]] = {}
    area_nodes: dict[int, GridNode] = {}
    for row in areas.values("pk", "utility_id", "name", "code"):
        area_nodes[row["pk"]] = node = GridNode("area", row["pk"], row["name"], row["code"])
        by_utility.setdefault(row["utility_id"], []).append(node)
    for feeder in feeder_nodes.values():
        area = area_nodes[feeder.parent_id]
        area.children.append(feeder)
        area.accounts += feeder.accounts
        area.meters += feeder.meters
    return [
        UtilityGrid(pk, name, by_utility.get(pk, []))
        for pk, name in utilities.values_list("pk", "name")
    ]
