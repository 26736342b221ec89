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
    prepare_rhs = False

    def get_db_prep_lookup(self, value, connection):
        values = [int(v) for v in value]
        if connection.vendor == "postgresql":
            return "%s", [values]
        return "%s", [json.dumps(values)]

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        if connection.vendor == "postgresql":
            return f"{lhs} = ANY({rhs}::bigint[])", [*lhs_params, *rhs_params]
        # Both parts are the compiler's own SQL (a column and a placeholder).
        return f"{lhs} IN (SELECT value FROM json_each({rhs}))", [*lhs_params, *rhs_params]  # noqa: S608


# A relation's lookups are its own (ForeignObject stops the search for them at itself).
models.Field.register_lookup(AnyOf)
models.ForeignObject.register_lookup(AnyOf)
