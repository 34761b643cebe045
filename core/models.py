"""The kernel's one table: the first response to each client Idempotency-Key."""

from django.db import models


class IdempotencyRecord(models.Model):
    """First response to a client's Idempotency-Key, per caller and endpoint."""

    scope = models.CharField(max_length=200, help_text="caller + endpoint")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response_body = models.TextField(help_text="The JSON body exactly as first sent.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # The table predates the kernel (it was casino's); the name stays, so raw SQL and data do too.
        db_table = "casino_idempotency"
        constraints = [models.UniqueConstraint(fields=["scope", "key"], name="idempotency_unique")]
