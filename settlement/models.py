"""Settlement records (one live per market), payouts (one per settled position), and reversals
(SPEC §12: a settlement taken back, one reversal item per payout that had been paid)."""

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

MONEY = {"max_digits": 16, "decimal_places": 2}


class SettlementAction(models.TextChoices):
    RESOLVE = "resolve", "Resolve"
    VOID = "void", "Void"


class SettlementStatus(models.TextChoices):
    SETTLING = "settling", "Settling (payouts in progress)"
    COMPLETED = "completed", "Completed"
    REVERSING = "reversing", "Reversing (taking back what was paid)"
    REVERSED = "reversed", "Reversed"


LIVE_SETTLEMENT = ("settling", "completed", "reversing")


class Settlement(models.Model):
    """The decision on a market and the running totals of paying it out.

    One live per market (unique while not reversed): resolving twice, or two staff resolving at
    once, finds the same record; after a reversal (SPEC §12) the market may be settled again, and
    its settlements are its history. The totals are fixed when the decision is taken (from the
    positions then open); paid/failed counts move as payouts go through.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    market = models.ForeignKey("casino.Market", on_delete=models.PROTECT, related_name="settlements")
    action = models.CharField(max_length=8, choices=SettlementAction.choices)
    outcome = models.CharField(max_length=3, null=True, blank=True)  # noqa: DJ001 - NULL for voids
    reason = models.CharField(max_length=500, blank=True, default="")
    status = models.CharField(max_length=10, choices=SettlementStatus.choices, default=SettlementStatus.SETTLING)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    requested_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    total_positions = models.PositiveIntegerField(default=0)
    total_winners = models.PositiveIntegerField(default=0)
    total_payout = models.DecimalField(**MONEY, default=Decimal("0"))
    total_cost_basis = models.DecimalField(**MONEY, default=Decimal("0"))
    casino_profit = models.DecimalField(**MONEY, default=Decimal("0"))
    paid_count = models.PositiveIntegerField(default=0)
    paid_amount = models.DecimalField(**MONEY, default=Decimal("0"))
    failed_count = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "settlements"
        constraints = [
            models.CheckConstraint(condition=Q(action="void") | Q(outcome__in=["yes", "no"]), name="settlement_resolve_has_outcome"),
            models.UniqueConstraint(fields=["market"], condition=Q(status__in=LIVE_SETTLEMENT), name="settlement_one_live_per_market"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.market_id} ({self.status})"

    @property
    def progress(self) -> str:
        due = self.total_winners if self.action == SettlementAction.RESOLVE else self.total_positions
        return f"{self.paid_count}/{due}"


class PayoutStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sent to the operator, waiting for a definite answer"
    PAID = "paid", "Paid"
    NOTHING_DUE = "nothing_due", "Nothing due (losing position; settlements now close those without a payout row)"
    FAILED = "failed", "Failed (refused by the operator; retry from the admin)"
    CANCELLED = "cancelled", "Cancelled (the settlement was reversed before it was paid)"
    REVERSED = "reversed", "Reversed (taken back: see its reversal item)"


class Payout(models.Model):
    """What one settled position receives, paid by the wallet transaction ``transaction_id``
    (the ledger row's id, and the transaction_id sent to an S2S operator)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    transaction_id = models.UUIDField(default=uuid.uuid4, unique=True, help_text="A new one only after the operator refused the last.")
    # A decision inserts one row per open position (100,000 for a popular market) and every payout
    # changes status at least once, writing every index again: no index is kept that another covers
    # (settlement and status lead payout_claim_order) or that no query needs (operator).
    settlement = models.ForeignKey(Settlement, on_delete=models.PROTECT, related_name="payouts", db_index=False)
    # One per position and settlement (the unique constraint, which leads with the position, is its
    # index): a position settled, reversed and settled again has two.
    position = models.ForeignKey("casino.Position", on_delete=models.PROTECT, related_name="payouts", db_index=False)
    # Copies of the position's (which holds both by foreign key), written with it in the chunk that
    # creates the payout: no constraint of their own, whose checks at commit (one query per row) were a
    # tenth of a chunk's time. Django still protects them on delete. No index either: a payout is found
    # by its settlement, position or transaction, and every index is one more write per payout.
    player = models.ForeignKey("casino.Player", on_delete=models.PROTECT, related_name="payouts", db_index=False, db_constraint=False)
    operator = models.ForeignKey("casino.Operator", on_delete=models.PROTECT, related_name="payouts", db_index=False, db_constraint=False)
    outcome = models.CharField(max_length=3)
    shares = models.DecimalField(max_digits=20, decimal_places=6)
    cost_basis = models.DecimalField(**MONEY)
    amount = models.DecimalField(**MONEY, help_text="$1 a winning share (resolve) or the cost basis (void), rounded down.")
    status = models.CharField(max_length=12, choices=PayoutStatus.choices, default=PayoutStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "settlement_payouts"
        # A chunk is claimed in id order among one settlement's payouts in one status: the index
        # hands them over in that order, so LIMIT stops after the chunk instead of sorting them all.
        indexes = [models.Index(fields=["settlement", "status", "id"], name="payout_claim_order")]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="payout_amount_nonnegative"),
            models.UniqueConstraint(fields=["position", "settlement"], name="payout_once_per_position"),
        ]


class ReversalStatus(models.TextChoices):
    REVERSING = "reversing", "Reversing (taking back what was paid)"
    COMPLETED = "completed", "Completed"


class Reversal(models.Model):
    """A settlement taken back (SPEC §12): every payout it paid is reversed by its own wallet
    transaction (a ReversalItem), unpaid payouts are cancelled, the positions are open again and
    the market is closed, awaiting a new decision. Totals: what was due back, what was taken,
    what could not be taken (player debts)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    settlement = models.OneToOneField(Settlement, on_delete=models.PROTECT, related_name="reversal")
    reason = models.CharField(max_length=500)
    status = models.CharField(max_length=10, choices=ReversalStatus.choices, default=ReversalStatus.REVERSING)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    requested_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    total_positions = models.PositiveIntegerField(default=0, help_text="Positions opened again.")
    total_items = models.PositiveIntegerField(default=0, help_text="Payouts paid (or in flight) to take back.")
    total_cancelled = models.PositiveIntegerField(default=0, help_text="Payouts cancelled before they were paid.")
    total_due = models.DecimalField(**MONEY, default=Decimal("0"))
    total_reversed = models.DecimalField(**MONEY, default=Decimal("0"))
    total_uncollected = models.DecimalField(**MONEY, default=Decimal("0"))

    class Meta:
        db_table = "settlement_reversals"

    def __str__(self) -> str:
        return f"reversal of {self.settlement} ({self.status})"


class ReversalItemStatus(models.TextChoices):
    WAITING = "waiting", "Waiting for the payout's own answer (its credit was in flight)"
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sent to the operator, waiting for a definite answer"
    DONE = "done", "Done (taken, and any rest recorded as the player's debt)"
    CANCELLED = "cancelled", "Nothing to take back (the payout's credit was refused)"


class ReversalItem(models.Model):
    """Taking one payout back, by the wallet transaction ``transaction_id`` (a ledger row
    ``payout_reversal``/``refund_reversal`` whose reference is the payout's transaction; for S2S a
    debit with ``reference_transaction_id``). What was not taken is the player's debt."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    reversal = models.ForeignKey(Reversal, on_delete=models.PROTECT, related_name="items", db_index=False)
    payout = models.OneToOneField(Payout, on_delete=models.PROTECT, related_name="reversal_item")
    player = models.ForeignKey("casino.Player", on_delete=models.PROTECT, related_name="reversal_items")
    transaction_id = models.UUIDField(default=uuid.uuid4, unique=True)
    amount_due = models.DecimalField(**MONEY)
    amount_taken = models.DecimalField(**MONEY, default=Decimal("0"))
    amount_uncollected = models.DecimalField(**MONEY, default=Decimal("0"))
    status = models.CharField(max_length=10, choices=ReversalItemStatus.choices, default=ReversalItemStatus.PENDING)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "settlement_reversal_items"
        indexes = [models.Index(fields=["reversal", "status", "id"], name="reversal_item_claim_order")]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount_due__gte=0, amount_taken__gte=0, amount_uncollected__gte=0), name="reversal_item_amounts"
            ),
        ]


class ProposalStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed (waiting for staff)"
    CONFIRMED = "confirmed", "Confirmed (settled)"
    REJECTED = "rejected", "Rejected by staff"
    WITHDRAWN = "withdrawn", "Withdrawn (the evidence no longer holds)"


class ResolutionProposal(models.Model):
    """What the market-data feed saw the source decide (SPEC §11): phase one of a resolution.

    Staff confirm it (which settles exactly as POST resolve) or reject it; with
    ``auto_settle_after_seconds`` set, a proposal whose evidence still holds after that delay is
    confirmed automatically. At most one proposal per market is open at a time.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    market = models.ForeignKey("casino.Market", on_delete=models.PROTECT, related_name="resolution_proposals")
    action = models.CharField(max_length=8, choices=SettlementAction.choices)
    outcome = models.CharField(max_length=3, null=True, blank=True)  # noqa: DJ001 - NULL for voids
    evidence = models.JSONField(default=dict, help_text="What the source said: status, outcome prices, the resolved event.")
    status = models.CharField(max_length=10, choices=ProposalStatus.choices, default=ProposalStatus.PROPOSED)
    seen_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.CharField(max_length=150, blank=True, default="")
    reason = models.CharField(max_length=500, blank=True, default="")
    settlement = models.ForeignKey(Settlement, on_delete=models.PROTECT, null=True, blank=True, related_name="proposals")

    class Meta:
        db_table = "settlement_resolution_proposals"
        indexes = [models.Index(fields=["status", "-seen_at"], name="proposal_status_recent")]
        constraints = [
            models.CheckConstraint(condition=Q(action="void") | Q(outcome__in=["yes", "no"]), name="proposal_resolve_has_outcome"),
            models.UniqueConstraint(fields=["market"], condition=Q(status="proposed"), name="proposal_one_open_per_market"),
        ]

    def __str__(self) -> str:
        decision = f"resolve {self.outcome.upper()}" if self.action == SettlementAction.RESOLVE else "void"
        return f"{decision} {self.market_id} ({self.status})"


# ----- issue 14 (SPEC §16): loss notifications to S2S wallets -----


class LossNoticeStatus(models.TextChoices):
    PENDING = "pending", "Pending (to send, or waiting for a definite answer)"
    SENT = "sent", "Sent (the operator answered OK)"
    REFUSED = "refused", "Refused by the operator (nothing to retry: a 0.00 credit moves nothing)"
    CANCELLED = "cancelled", "Cancelled (the settlement was reversed before it was sent)"


class LossNotice(models.Model):
    """A losing position at an S2S operator reported to its wallet at settlement (SPEC §16): a ``credit``
    of amount 0.00, type ``loss``, round id = the settlement (as the winners' payouts), so the operator
    can close the round. Created in the chunk's transaction that closes the position (one per position
    and settlement), sent after it commits under ``transaction_id`` (the idempotency id, re-sent until
    the operator answers definitely). Not a money movement: no ledger row, no WalletOperation."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    transaction_id = models.UUIDField(default=uuid.uuid4, unique=True)
    settlement = models.ForeignKey(Settlement, on_delete=models.PROTECT, related_name="loss_notices", db_index=False)
    position = models.ForeignKey("casino.Position", on_delete=models.PROTECT, related_name="loss_notices", db_index=False)
    player = models.ForeignKey("casino.Player", on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False)
    operator = models.ForeignKey("casino.Operator", on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False)
    outcome = models.CharField(max_length=3)
    shares = models.DecimalField(max_digits=20, decimal_places=6)
    status = models.CharField(max_length=10, choices=LossNoticeStatus.choices, default=LossNoticeStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # Held by a sender until then (a lease: a killed sender's hold lapses), or backing off until then.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    operator_status = models.CharField(max_length=32, blank=True, default="")
    last_error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "settlement_loss_notices"
        # The sender takes pending notices in id order; the partial index holds only those.
        indexes = [models.Index(fields=["next_attempt_at", "id"], name="loss_notice_due", condition=Q(status="pending"))]
        constraints = [models.UniqueConstraint(fields=["position", "settlement"], name="loss_notice_once_per_position")]

    def __str__(self) -> str:
        return f"loss notice {self.transaction_id} ({self.status})"
