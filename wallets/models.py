"""Player balances held by the house, the append-only wallet ledger, operator wallet settings."""

import uuid
from decimal import Decimal

from django.db import models
from django.db.models import Q
from django.db.models.fields.json import KeyTextTransform

from core.crypto import secret_open, secret_seal


class LedgerType(models.TextChoices):
    TRADE_DEBIT = "trade_debit", "Trade debit"
    TRADE_CREDIT = "trade_credit", "Trade credit"
    PAYOUT = "payout", "Payout"
    REFUND = "refund", "Refund"
    ROLLBACK = "rollback", "Rollback"
    DEPOSIT = "deposit", "Deposit"
    WITHDRAWAL = "withdrawal", "Withdrawal"
    ADJUSTMENT = "adjustment", "Adjustment"
    # A settlement corrected (SPEC §12): what a reversed payout or refund took back, and what a
    # later credit gave back of a player's debt.
    PAYOUT_REVERSAL = "payout_reversal", "Payout reversal"
    REFUND_REVERSAL = "refund_reversal", "Refund reversal"
    DEBT_RECOVERY = "debt_recovery", "Debt recovery"


class PlayerDebt(models.Model):
    """What a player owes the house after a settlement was reversed and the money paid could not
    all be taken back (SPEC §12). Recovered from the player's later credits (sell proceeds,
    payouts, refunds), never from deposits. The player's debt entries sum to ``amount``."""

    player = models.OneToOneField("casino.Player", on_delete=models.PROTECT, primary_key=True, related_name="debt")
    amount = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    currency = models.CharField(max_length=3, default="USD")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "wallet_debts"
        constraints = [models.CheckConstraint(condition=Q(amount__gte=0), name="wallet_debt_nonnegative")]


class DebtEntryKind(models.TextChoices):
    INCURRED = "incurred", "Incurred (a reversal could not take it)"
    RECOVERED = "recovered", "Recovered from a credit"
    RESTORED = "restored", "Restored (a recovery whose credit was refused)"


class DebtEntry(models.Model):
    """One change of a player's debt (append-only): + incurred or restored, - recovered."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    player = models.ForeignKey("casino.Player", on_delete=models.PROTECT, related_name="debt_entries")
    kind = models.CharField(max_length=10, choices=DebtEntryKind.choices)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    reference_id = models.UUIDField(help_text="The reversal item or the credit it came from.")
    description = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "wallet_debt_entries"
        indexes = [models.Index(fields=["player", "-created_at"], name="debt_entry_player_recent")]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="debt_entry_amount_nonzero"),
            models.CheckConstraint(
                condition=Q(kind__in=["incurred", "restored"], amount__gt=0) | Q(kind="recovered", amount__lt=0),
                name="debt_entry_sign_matches_kind",
            ),
            # One recovery per credit, one incurrence per reversal item: re-runs cannot count twice.
            models.UniqueConstraint(fields=["kind", "reference_id"], name="debt_entry_once_per_reference"),
        ]


class PlayerWallet(models.Model):
    """Balance of a player of an internal-wallet operator. Only wallets.services write it."""

    player = models.OneToOneField("casino.Player", on_delete=models.PROTECT, primary_key=True, related_name="wallet")
    balance = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "wallet_balances"
        constraints = [models.CheckConstraint(condition=Q(balance__gte=0), name="wallet_balance_nonnegative")]


class LedgerEntry(models.Model):
    """One balance change. Append-only (PostgreSQL refuses UPDATE and DELETE by trigger).

    ``id`` is the wallet transaction id: the idempotency id of the money movement, also the
    ``transaction_id`` sent to an S2S operator. Amounts are signed (debits negative), so a
    player's ledger sums to their balance.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: ledger_player_recent starts with player.
    player = models.ForeignKey("casino.Player", on_delete=models.PROTECT, related_name="ledger", db_index=False)
    # No index of its own: ledger_operator_recent starts with operator.
    operator = models.ForeignKey("casino.Operator", on_delete=models.PROTECT, related_name="ledger", db_index=False)
    type = models.CharField(max_length=16, choices=LedgerType.choices)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    balance_after = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3, default="USD")
    description = models.CharField(max_length=500, blank=True, default="")
    trade_id = models.UUIDField(null=True, blank=True)
    round_id = models.CharField(max_length=64, blank=True, default="", help_text="Trade or settlement the movement belongs to.")
    reference_id = models.UUIDField(null=True, blank=True, help_text="Ledger entry this one reverses (rollbacks).")
    actor = models.CharField(max_length=150, blank=True, default="", help_text="Who asked for it: player, staff:<username>, system.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "s2s_transactions"
        verbose_name = "ledger entry"
        verbose_name_plural = "ledger"
        indexes = [
            # With the id: a page of one player's rows (newest first, keyset) is one index range, no sort.
            models.Index(fields=["player", "-created_at", "-id"], name="ledger_player_recent"),
            # The operator's transaction list (SPEC §13), newest first in keyset pages.
            models.Index(fields=["operator", "-created_at", "-id"], name="ledger_operator_recent"),
            # Only trade rows have a trade id: payouts, refunds, reversals and recoveries (100,000 rows for a
            # popular market's settlement) write no entry here.
            models.Index(fields=["trade_id"], name="ledger_trade", condition=Q(trade_id__isnull=False)),
            # The house's own movements by time: the breakers' rebuild reads the last 24 h of them (SPEC §16).
            models.Index(
                fields=["created_at"],
                name="ledger_house_moves_recent",
                condition=Q(type__in=["payout", "refund", "payout_reversal", "refund_reversal", "debt_recovery"]),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="ledger_amount_nonzero"),
            models.CheckConstraint(
                condition=(
                    Q(type__in=["trade_debit", "withdrawal", "payout_reversal", "refund_reversal", "debt_recovery"], amount__lt=0)
                    | Q(type__in=["trade_credit", "payout", "refund", "deposit"], amount__gt=0)
                    | Q(type__in=["rollback", "adjustment"])
                ),
                name="ledger_amount_sign_matches_type",
            ),
        ]


class OperatorWallet(models.Model):
    """S2S wallet server settings of an operator (used when its wallet mode is s2s)."""

    operator = models.OneToOneField("casino.Operator", on_delete=models.CASCADE, primary_key=True, related_name="wallet_config")
    base_url = models.URLField(blank=True, default="")
    # The HMAC secret must be usable, so it is kept, sealed at rest (core.crypto, HOUSE_SECRETS_KEY), and
    # never displayed after creation/rotation. ``secret`` reads and writes it in the clear.
    secret_sealed = models.TextField(editable=False)
    timeout_seconds = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal("5"))
    enabled = models.BooleanField(default=True)
    # Circuit breaker: this many unknown outcomes within the window open it for the cool-down.
    breaker_failures = models.PositiveSmallIntegerField(default=5)
    breaker_window_seconds = models.PositiveIntegerField(default=30)
    breaker_cooldown_seconds = models.PositiveIntegerField(default=30)
    # Many movements at once (a settlement's payouts): at most this many calls in flight to this
    # operator's wallet server. A real one serves several at a time; more than it can take only
    # makes each call slower.
    max_concurrent_calls = models.PositiveSmallIntegerField(
        default=8, help_text="Calls in flight at once when paying many players (settlement payouts); 1 to 50."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "wallet_operator_config"

    @property
    def secret(self) -> str:
        """The signing secret in the clear (raises core.crypto.SecretUnreadable under a wrong key)."""
        return secret_open(self.secret_sealed)

    @secret.setter
    def secret(self, plain: str) -> None:
        self.secret_sealed = secret_seal(plain)


class OperationKind(models.TextChoices):
    DEBIT = "debit", "Debit"
    CREDIT = "credit", "Credit"
    ROLLBACK = "rollback", "Rollback"


class OperationStatus(models.TextChoices):
    PENDING = "pending", "Pending (intent recorded, no answer yet)"
    OK = "ok", "OK (applied at the operator, in the ledger)"
    REFUSED = "refused", "Refused (definitely not applied)"
    UNKNOWN = "unknown", "Unknown outcome (being settled)"
    ROLLED_BACK = "rolled_back", "Rolled back"
    MANUAL = "manual", "Manual handling required"
    RESOLVED = "resolved", "Resolved by staff"


FINAL_STATUSES = (OperationStatus.OK, OperationStatus.REFUSED, OperationStatus.ROLLED_BACK, OperationStatus.RESOLVED)


class WalletOperation(models.Model):
    """One money movement at an S2S operator's wallet, from intent to a definite outcome.

    The row is committed *before* the wallet call (status pending), so a process that dies
    mid-call leaves a trace that recovery finishes or compensates. ``id`` is the
    ``transaction_id`` sent to the operator: every retry of the movement reuses it. The
    immutable ledger (LedgerEntry) gets a row only once the operator confirmed the movement.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of their own: wallet_op_operator_recent and wallet_op_player_recent start with them.
    operator = models.ForeignKey("casino.Operator", on_delete=models.PROTECT, related_name="wallet_operations", db_index=False)
    player = models.ForeignKey("casino.Player", on_delete=models.PROTECT, related_name="wallet_operations", db_index=False)
    kind = models.CharField(max_length=8, choices=OperationKind.choices)
    type = models.CharField(max_length=16, choices=LedgerType.choices)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3, default="USD")
    round_id = models.CharField(max_length=64, blank=True, default="", help_text="Trade or settlement id.")
    description = models.CharField(max_length=500, blank=True, default="")
    reference = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="rollbacks", help_text="Rollback: the debit it undoes."
    )
    status = models.CharField(max_length=12, choices=OperationStatus.choices, default=OperationStatus.PENDING, db_index=True)
    # What the caller needs to finish its own work once the outcome is known (e.g. the trade to record).
    payload = models.JSONField(default=dict, blank=True)
    # True once the movement's local side is done (trade recorded) or undone (reservations released).
    settled_locally = models.BooleanField(default=False)
    operator_transaction_id = models.CharField(max_length=128, blank=True, default="")
    operator_status = models.CharField(max_length=32, blank=True, default="", help_text="Last status answered by the operator.")
    balance_after = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    resolution_note = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "wallet_operations"
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="wallet_op_due"),
            # The S2S operator's reconciliation list (SPEC §13), newest first in keyset pages, all or one player's.
            models.Index(fields=["operator", "-created_at", "-id"], name="wallet_op_operator_recent"),
            models.Index(fields=["player", "-created_at", "-id"], name="wallet_op_player_recent"),
            # S2S trades whose local side is not settled yet, by market: a settlement pays the positions of the
            # sales among them once they are done, and a reversal counts what they hold on the book.
            models.Index(
                KeyTextTransform("market_id", "payload"),
                name="wallet_op_trade_in_flight",
                condition=Q(settled_locally=False, type__in=["trade_debit", "trade_credit"]),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="wallet_op_amount_positive"),
            models.CheckConstraint(condition=~Q(kind="rollback") | Q(reference__isnull=False), name="wallet_op_rollback_has_reference"),
            models.UniqueConstraint(fields=["reference"], condition=Q(kind="rollback"), name="wallet_op_one_rollback_per_debit"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} {self.status} ({self.id})"
