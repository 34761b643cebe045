"""The raw-SQL trade of bench/trade.pgbench.sql (the ceiling) as psycopg text, for the Python
yardsticks that send the ceiling's own SQL: bench/floor_app.py (http-floor) and
bench/profile_trade.py (its reference point).

``statements(meta)`` -> (the read, the locking group, the writing group): the three round trips
of the product's trade. pgbench's ``:name`` variables become ``%(name)s`` parameters: ``token``
(the session token's hash) and ``market`` (its id) for the read, which pgbench draws from its
helper tables; ``o`` (0 yes, 1 no), ``shard``, ``cshard``, ``gshard``; and from the read's row
``pid``, ``opid``, ``mid``, ``cat``.
"""

import re
from pathlib import Path

SCRIPT = Path(__file__).with_name("trade.pgbench.sql")
_CONSTANTS = ("stake", "shares", "price", "mid", "half_spread", "market_cap", "category_cap", "global_cap")


def statements(meta: dict) -> tuple[str, tuple[str, str, str], tuple[str, str]]:
    text = SCRIPT.read_text().format(**{k: meta[k] for k in _CONSTANTS}, players=0, market_lo=0, market_hi=0, shards_max=0)
    skipped = ("--", "\\set", "\\startpipeline", "\\endpipeline")  # comments, pgbench's variables and pipeline marks
    body = "\n".join(line for line in text.splitlines() if line and not line.startswith(skipped))
    # A statement ends with ";" or with pgbench's \gset (which stores its row in variables).
    found = [s.strip() for s in re.split(r"(?:;|\s\\gset)(?:\n|$)", body) if s.strip()]
    found = [re.sub(r"(?<![:\w]):(?!:)(\w+)", r"%(\1)s", s) for s in found]  # :name -> %(name)s, not the :: of a cast
    read, begin, lock, positions, write, commit = found
    # The player by the request's token, the market by its id (pgbench draws both from its helper tables).
    player_from = "FROM bench_players bp JOIN casino_player_sessions s ON s.token_hash = bp.token_hash"
    market_from = "FROM bench_markets bm JOIN casino_markets m ON m.id = bm.market_id"
    if player_from not in read or market_from not in read:
        raise RuntimeError("bench/trade.pgbench.sql's read changed: update bench/ceiling_sql.py")
    read = read.replace(player_from, "FROM casino_player_sessions s").replace("bp.i = %(p)s", "s.token_hash = %(token)s")
    read = read.replace(market_from, "FROM casino_markets m").replace("bm.i = %(m)s", "m.id = %(market)s")
    return read, (begin, lock, positions), (write, commit)
