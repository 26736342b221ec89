"""`field__anyof=[…]`: one of a long list of integers, sent as one parameter.

`__in` sends each value as a parameter of its own, and Django prepares each through the field
first: for the 2,000 accounts of a charging pass that is most of a query's cost, before the
database sees it. Here the list is one array (`= ANY(%s::bigint[])`) on PostgreSQL and one JSON
text read by `json_each` on SQLite, whatever its length (no limit on a statement's parameters).
"""

from __future__ import annotations

import json

from django.db import models


class AnyOf(models.Lookup):
    lookup_name = "anyof"

    def get_prep_lookup(self):
        # Once, when the filter is made: a list of ints (an iterator read once; None, which
        # matches nothing, left out as `__in` leaves it).
        return [int(v) for v in self.rhs if v is not None]

    def get_db_prep_lookup(self, value, connection):
        if connection.vendor == "postgresql":
            return "%s", [value]
        return "%s", [json.dumps(value)]

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        if connection.vendor == "postgresql":
            return f"{lhs} = ANY({rhs}::bigint[])", [*lhs_params, *rhs_params]
        # Both parts are the compiler's own SQL (a column and a placeholder).
        return f"{lhs} IN (SELECT value FROM json_each({rhs}))", [*lhs_params, *rhs_params]  # noqa: S608


# Integer columns only (big, small and auto keys are integer fields too), and the relations that
# point at them: a relation's lookups are its own (ForeignObject stops the search at itself).
models.IntegerField.register_lookup(AnyOf)
models.ForeignObject.register_lookup(AnyOf)
