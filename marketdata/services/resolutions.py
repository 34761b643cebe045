"""Resolution evidence from the source, turned into proposals (phase one), and the optional
auto-confirm of proposals whose evidence still holds after the configured delay (phase two).

The websocket's ``market_resolved`` only says "look now": the decision is always read from
Gamma (closed and ``umaResolutionStatus`` resolved, outcome prices 1/0, 0/1 or 0.5/0.5).
"""

import logging
from dataclasses import dataclass
from datetime import datetime

from casino.services.markets import casino_settings
from marketdata.services import rules
from settlement.models import ProposalStatus, ResolutionProposal
from settlement.services.proposals import proposal_confirm, proposal_record, proposal_withdraw, proposals_due

log = logging.getLogger("house.marketdata")


@dataclass
class ResolutionResult:
    proposed: int = 0
    confirmed: int = 0
    withdrawn: int = 0


def evidence(source, *, via: str) -> dict:
    return {
        "via": via,
        "closed": source.closed,
        "umaResolutionStatus": source.resolution_status,
        "outcomePrices": [str(p) for p in source.outcome_prices] if source.outcome_prices else None,
        "question": source.question,
    }


def resolutions_apply(*, sources: list, at: datetime, via: str = "gamma") -> ResolutionResult:
    """Propose for every source market that is finally resolved; withdraw open proposals whose
    market the source no longer shows as resolved that way."""
    result = ResolutionResult()
    open_proposals = {p.market_id: p for p in ResolutionProposal.objects.filter(status=ProposalStatus.PROPOSED)}
    for source in sources:
        decision = _decision(source)
        current = open_proposals.get(source.condition_id)
        if decision is None:
            if current is not None:
                proposal_withdraw(proposal_id=current.pk, reason=f"source status now {source.resolution_status or 'unresolved'}")
                result.withdrawn += 1
            continue
        before = current.pk if current is not None else None
        proposal = proposal_record(
            market_id=source.condition_id,
            action=decision.action,
            outcome=decision.outcome,
            evidence=evidence(source, via=via),
            seen_at=at,
        )
        if proposal is not None and proposal.pk != before:
            result.proposed += 1
    return result


def auto_confirm_candidates(*, at: datetime) -> list[ResolutionProposal]:
    """Open proposals past ``auto_settle_after_seconds`` (none when it is unset: staff confirm)."""
    delay = casino_settings().auto_settle_after_seconds
    if delay is None:
        return []
    return proposals_due(delay_seconds=delay, now=at)


def auto_confirm(*, proposals: list[ResolutionProposal], sources: dict, at: datetime) -> ResolutionResult:
    """Confirm each due proposal whose market the source (looked up just now) still shows
    resolved the same way; withdraw the others."""
    result = ResolutionResult()
    for proposal in proposals:
        source = sources.get(proposal.market_id)
        decision = _decision(source) if source is not None else None
        if decision is not None and (decision.action, decision.outcome) == (proposal.action, proposal.outcome):
            proposal_confirm(proposal_id=proposal.pk, actor="auto-confirm")
            result.confirmed += 1
            log.info("resolution proposal %s confirmed automatically", proposal.pk)
        else:
            proposal_withdraw(proposal_id=proposal.pk, reason="evidence no longer holds at auto-confirm")
            result.withdrawn += 1
    return result


def _decision(source) -> rules.Resolution | None:
    return rules.resolution_from_source(
        closed=source.closed, resolution_status=source.resolution_status, outcome_prices=source.outcome_prices
    )
