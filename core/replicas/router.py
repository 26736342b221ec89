"""The database router: DATABASE_ROUTERS names it (as core.replicas.ReplicaRouter)."""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, connections

from core.replicas.lag import replica_choose
from core.replicas.scope import read_scope


class ReplicaRouter:
    """DATABASE_ROUTERS entry: replica reads only in an eligible scope; migrations on default."""

    def db_for_read(self, model, **hints) -> str:
        scope = read_scope.get()
        if scope is None or not scope.eligible:
            return DEFAULT_DB_ALIAS
        if connections[DEFAULT_DB_ALIAS].in_atomic_block:
            # A transaction on the primary reads what it writes, and what it locked.
            return DEFAULT_DB_ALIAS
        if scope.replica is None:
            scope.replica = replica_choose() or ""
        return scope.replica or DEFAULT_DB_ALIAS

    def db_for_write(self, model, **hints) -> str:
        # Also asked when an unsaved instance is given a related object, and by get_or_create
        # before it reads: not a sign of a write. Writes are seen where they run (writes_seen).
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints) -> bool:
        return True  # every alias holds the same rows, some of them a little later

    def allow_migrate(self, db, app_label, model_name=None, **hints) -> bool:
        return db == DEFAULT_DB_ALIAS
