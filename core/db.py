"""Which database alias a read goes to: the operator API's reads and reports use the read replica
when one is configured (DATABASE_REPLICA_URL), the primary otherwise."""

from django.conf import settings

PRIMARY = "default"
REPLICA = "replica"


def reads() -> str:
    """The alias for reads that may lag the primary by the replica's replay delay (never for a read
    that a write then depends on)."""
    return REPLICA if getattr(settings, "DATABASE_REPLICA_READS", False) and REPLICA in settings.DATABASES else PRIMARY


def filter_given(queryset, **lookups):
    """``queryset`` filtered on each lookup whose value was given (None: that filter is not asked for)."""
    given = {lookup: value for lookup, value in lookups.items() if value is not None}
    return queryset.filter(**given) if given else queryset
