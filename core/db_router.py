"""The database router: reads go where the code says (core.db.reads()); writes never go to the replica."""

from core.db import PRIMARY, REPLICA


class ReplicaRouter:
    def db_for_read(self, model, **hints):
        return None  # the primary unless a selector chose core.db.reads() with .using()

    def db_for_write(self, model, **hints):
        # An object read from the replica and saved is written to the primary.
        instance = hints.get("instance")
        if instance is not None and instance._state.db == REPLICA:
            return PRIMARY
        return None

    def allow_relation(self, obj1, obj2, **hints):
        # The replica holds the primary's rows: objects from either may be related.
        if {obj1._state.db, obj2._state.db} <= {PRIMARY, REPLICA}:
            return True
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return False if db == REPLICA else None
