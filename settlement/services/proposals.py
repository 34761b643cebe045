"""Resolution proposals (SPEC §11): what the market-data feed saw the source decide, confirmed or
rejected by staff, or confirmed automatically after a delay while the evidence still holds.

    proposal_record        the feed's evidence; one open proposal per market, a changed decision replaces it
    proposal_confirm       settles exactly as POST resolve (market_settle), once
    proposal_reject        staff say no (with a reason); the feed may propose again on new evidence
    proposals_due          open proposals old enough for auto-confirm
    proposal_withdraw      the evidence no longer holds
"""

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from casino.models import Market, MarketStatus
from core.errors import HouseError
from settlement.models import ProposalStatus, ResolutionProposal, Settlement, SettlementAction
from settlement.services.decide import market_settle

log = logging.getLogger("house.settlement.proposals")


def proposal_record(*, market_id: str, action: str, outcome: str | None, evidence: dict, seen_at: datetime) -> ResolutionProposal | None:
    """Record the source's decision for a market not settled yet; None when there is nothing to
    propose (the market is settled or settling, or staff rejected this very decision before)."""
    outcome = outcome if action == SettlementAction.RESOLVE else None
    with transaction.atomic():
        market = Market.objects.select_for_update().filter(pk=market_id).first()
        if market is None or market.status != MarketStatus.OPEN or Settlement.objects.filter(market=market).exists():
            return None
        current = ResolutionProposal.objects.filter(market=market, status=ProposalStatus.PROPOSED).first()
        if current is not None:
            if current.action == action and current.outcome == outcome:
                return current
            _close(current, ProposalStatus.WITHDRAWN, actor="feed", reason="the source now says otherwise")
        if ResolutionProposal.objects.filter(market=market, action=action, outcome=outcome, status=ProposalStatus.REJECTED).exists():
            return None  # staff already said no to this decision; they resolve by hand if they change their mind
        try:
            with transaction.atomic():
                proposal = ResolutionProposal.objects.create(
                    market=market, action=action, outcome=outcome, evidence=evidence, seen_at=seen_at
                )
        except IntegrityError:  # another feed pass recorded it first
            return ResolutionProposal.objects.filter(market=market, status=ProposalStatus.PROPOSED).first()
    log.info("resolution proposal %s: %s %s %s", proposal.pk, action, outcome or "", market_id)
    return proposal


def proposal_confirm(*, proposal_id, actor: str, requested_by=None) -> Settlement:
    """Settle the market as proposed (market_settle: the same decision, the same answer as POST
    resolve). Confirming a confirmed proposal answers its settlement again."""
    with transaction.atomic():
        proposal = _locked(proposal_id)
        if proposal.status == ProposalStatus.CONFIRMED:
            return proposal.settlement
        if proposal.status != ProposalStatus.PROPOSED:
            raise HouseError("Resolution proposal is not open", code="proposal_not_open", extra={"status": proposal.status})
        settlement = market_settle(
            market_id=proposal.market_id,
            action=proposal.action,
            outcome=proposal.outcome,
            reason=f"Resolution proposal {proposal.pk} confirmed by {actor}",
            requested_by=requested_by,
        )
        proposal.settlement = settlement
        _close(proposal, ProposalStatus.CONFIRMED, actor=actor)
    return settlement


def proposal_reject(*, proposal_id, actor: str, reason: str) -> ResolutionProposal:
    with transaction.atomic():
        proposal = _locked(proposal_id)
        if proposal.status == ProposalStatus.REJECTED:
            return proposal
        if proposal.status != ProposalStatus.PROPOSED:
            raise HouseError("Resolution proposal is not open", code="proposal_not_open", extra={"status": proposal.status})
        _close(proposal, ProposalStatus.REJECTED, actor=actor, reason=reason)
    return proposal


def proposal_withdraw(*, proposal_id, reason: str) -> None:
    with transaction.atomic():
        proposal = _locked(proposal_id)
        if proposal.status == ProposalStatus.PROPOSED:
            _close(proposal, ProposalStatus.WITHDRAWN, actor="feed", reason=reason)


def proposals_due(*, delay_seconds: int, now: datetime | None = None) -> list[ResolutionProposal]:
    """Open proposals seen at least ``delay_seconds`` ago (auto-confirm re-checks their evidence first)."""
    cutoff = (now or timezone.now()) - timedelta(seconds=delay_seconds)
    return list(ResolutionProposal.objects.filter(status=ProposalStatus.PROPOSED, seen_at__lte=cutoff).order_by("seen_at"))


def _locked(proposal_id) -> ResolutionProposal:
    proposal = ResolutionProposal.objects.select_for_update().filter(pk=proposal_id).first()
    if proposal is None:
        raise HouseError("Resolution proposal not found", code="proposal_not_found", status=404)
    return proposal


def _close(proposal: ResolutionProposal, status: str, *, actor: str, reason: str = "") -> None:
    proposal.status, proposal.decided_at, proposal.decided_by, proposal.reason = status, timezone.now(), actor[:150], reason[:500]
    proposal.save(update_fields=["status", "decided_at", "decided_by", "reason", "settlement"])
