"""The rollup's triggers and its rebuild, in SQL: every code path that writes a trade or a ledger row
(the trade executor's one-statement path, the ORM path, S2S outcomes, settlement chunks, reversals,
debt recoveries, staff fixes) updates the report in its own transaction, by construction.

What counts (SPEC §13): trades and players, stakes (buys' cost) and sale proceeds (sells' cost) from
casino_trades; payouts, refunds and what reversals and debt recoveries took back from the wallet
ledger (s2s_transactions), which holds the confirmed movements of both wallet kinds. The ledger's own
trade rows are not counted (the trade is). Day: the UTC date of the row's created_at.

PostgreSQL: on the ledger a statement-level trigger over the transition table, one row per (operator, day,
currency) per statement (a 2,000-row payout chunk is one); on trades (one row per statement) a row-level
trigger. The rollup rows are written on shard pg_backend_pid() % 16, so concurrent trades of one operator
rarely queue on one row lock, and only AT COMMIT (deferred constraint triggers; the ledger's sums wait in
an unlogged staging table, always empty outside a transaction): the rollup's row locks are then the last
locks a transaction takes, so they cannot close a deadlock cycle with the trade's own locks (market,
wallet, exposure shards; measured: taken mid-transaction, the hot-market tests deadlocked), and a
transaction takes several rollup rows in key order. SQLite (make run): row-level triggers doing the same
on shard 0.
"""

from reports.models import SHARDS

TAKEN_BACK = ("payout_reversal", "refund_reversal", "debt_recovery")
_TAKEN_BACK_SQL = ", ".join(f"'{t}'" for t in TAKEN_BACK)

_UPSERT_TAIL = """
ON CONFLICT (operator_id, day, currency, shard) DO UPDATE SET
    trades = reports_daily.trades + EXCLUDED.trades,
    players = reports_daily.players + EXCLUDED.players,
    stakes = reports_daily.stakes + EXCLUDED.stakes,
    sale_proceeds = reports_daily.sale_proceeds + EXCLUDED.sale_proceeds,
    payouts = reports_daily.payouts + EXCLUDED.payouts,
    refunds = reports_daily.refunds + EXCLUDED.refunds,
    reversals = reports_daily.reversals + EXCLUDED.reversals
"""

# A trade is always one row of its own INSERT (the three ways of the executor), so its trigger is row-level:
# measured at about half the PostgreSQL CPU of a statement-level trigger over a one-row transition table
# (bench/RESULTS.md, "Daily report"). The player of a day is counted where its (operator, day, player)
# row is first inserted: exact under concurrency (a second inserter waits for the first to commit, then
# inserts nothing).
PG_FORWARD = f"""
CREATE OR REPLACE FUNCTION reports_rollup_trade() RETURNS trigger AS $$
DECLARE
    trade_day date := (NEW.created_at AT TIME ZONE 'UTC')::date;
    trade_currency varchar;
    new_player integer;
BEGIN
    SELECT currency INTO trade_currency FROM casino_players WHERE id = NEW.player_id;
    INSERT INTO reports_daily_players (operator_id, day, player_id, currency)
    VALUES (NEW.operator_id, trade_day, NEW.player_id, trade_currency)
    ON CONFLICT (operator_id, day, player_id) DO NOTHING;
    GET DIAGNOSTICS new_player = ROW_COUNT;
    INSERT INTO reports_daily (operator_id, day, currency, shard, trades, players, stakes, sale_proceeds, payouts, refunds, reversals)
    VALUES (NEW.operator_id, trade_day, trade_currency, pg_backend_pid() % {SHARDS}, 1, new_player,
            CASE WHEN NEW.side = 'buy' THEN NEW.cost ELSE 0 END, CASE WHEN NEW.side = 'sell' THEN NEW.cost ELSE 0 END, 0, 0, 0)
    {_UPSERT_TAIL};
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE UNLOGGED TABLE reports_daily_pending (
    txid bigint NOT NULL DEFAULT txid_current(),
    operator_id uuid NOT NULL,
    day date NOT NULL,
    currency varchar(3) NOT NULL,
    payouts numeric(20, 2) NOT NULL,
    refunds numeric(20, 2) NOT NULL,
    reversals numeric(20, 2) NOT NULL
);
CREATE INDEX reports_daily_pending_txid ON reports_daily_pending (txid);

CREATE OR REPLACE FUNCTION reports_rollup_ledger() RETURNS trigger AS $$
BEGIN
    INSERT INTO reports_daily_pending (operator_id, day, currency, payouts, refunds, reversals)
    SELECT operator_id, (created_at AT TIME ZONE 'UTC')::date, currency,
           coalesce(sum(amount) FILTER (WHERE type = 'payout'), 0),
           coalesce(sum(amount) FILTER (WHERE type = 'refund'), 0),
           coalesce(-sum(amount) FILTER (WHERE type IN ({_TAKEN_BACK_SQL})), 0)
    FROM reports_new_ledger
    WHERE type IN ('payout', 'refund', {_TAKEN_BACK_SQL})
    GROUP BY 1, 2, 3;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- At commit, the first pending row of the transaction moves them all, in key order; the others find none.
CREATE OR REPLACE FUNCTION reports_rollup_pending() RETURNS trigger AS $$
BEGIN
    WITH moved AS (
        DELETE FROM reports_daily_pending WHERE txid = txid_current()
        RETURNING operator_id, day, currency, payouts, refunds, reversals
    )
    INSERT INTO reports_daily (operator_id, day, currency, shard, trades, players, stakes, sale_proceeds, payouts, refunds, reversals)
    SELECT operator_id, day, currency, pg_backend_pid() % {SHARDS}, 0, 0, 0, 0, sum(payouts), sum(refunds), sum(reversals)
    FROM moved GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    {_UPSERT_TAIL};
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER reports_rollup_trades AFTER INSERT ON casino_trades DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION reports_rollup_trade();
CREATE TRIGGER reports_rollup_ledger AFTER INSERT ON s2s_transactions
    REFERENCING NEW TABLE AS reports_new_ledger FOR EACH STATEMENT EXECUTE FUNCTION reports_rollup_ledger();
CREATE CONSTRAINT TRIGGER reports_rollup_pending AFTER INSERT ON reports_daily_pending DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION reports_rollup_pending();
"""

PG_BACKWARD = """
DROP TRIGGER IF EXISTS reports_rollup_trades ON casino_trades;
DROP TRIGGER IF EXISTS reports_rollup_ledger ON s2s_transactions;
DROP TABLE IF EXISTS reports_daily_pending;
DROP FUNCTION IF EXISTS reports_rollup_trade();
DROP FUNCTION IF EXISTS reports_rollup_ledger();
DROP FUNCTION IF EXISTS reports_rollup_pending();
"""

# SQLite is one writer at a time: count the player before inserting its day row.
SQLITE_FORWARD = [
    """
CREATE TRIGGER reports_rollup_trades AFTER INSERT ON casino_trades
BEGIN
    INSERT OR IGNORE INTO reports_daily (operator_id, day, currency, shard, trades, players, stakes, sale_proceeds, payouts, refunds,
                                         reversals)
    VALUES (NEW.operator_id, date(NEW.created_at), (SELECT currency FROM casino_players WHERE id = NEW.player_id), 0, 0, 0, 0, 0, 0, 0, 0);
    UPDATE reports_daily SET
        trades = trades + 1,
        players = players + NOT EXISTS (
            SELECT 1 FROM reports_daily_players d
            WHERE d.operator_id = NEW.operator_id AND d.day = date(NEW.created_at) AND d.player_id = NEW.player_id),
        stakes = stakes + CASE WHEN NEW.side = 'buy' THEN NEW.cost ELSE 0 END,
        sale_proceeds = sale_proceeds + CASE WHEN NEW.side = 'sell' THEN NEW.cost ELSE 0 END
    WHERE operator_id = NEW.operator_id AND day = date(NEW.created_at) AND shard = 0
      AND currency = (SELECT currency FROM casino_players WHERE id = NEW.player_id);
    INSERT OR IGNORE INTO reports_daily_players (operator_id, day, player_id, currency)
    VALUES (NEW.operator_id, date(NEW.created_at), NEW.player_id, (SELECT currency FROM casino_players WHERE id = NEW.player_id));
END
""",
    f"""
CREATE TRIGGER reports_rollup_ledger AFTER INSERT ON s2s_transactions
WHEN NEW.type IN ('payout', 'refund', {_TAKEN_BACK_SQL})
BEGIN
    INSERT OR IGNORE INTO reports_daily (operator_id, day, currency, shard, trades, players, stakes, sale_proceeds, payouts, refunds,
                                         reversals)
    VALUES (NEW.operator_id, date(NEW.created_at), NEW.currency, 0, 0, 0, 0, 0, 0, 0, 0);
    UPDATE reports_daily SET
        payouts = payouts + CASE WHEN NEW.type = 'payout' THEN NEW.amount ELSE 0 END,
        refunds = refunds + CASE WHEN NEW.type = 'refund' THEN NEW.amount ELSE 0 END,
        reversals = reversals + CASE WHEN NEW.type IN ({_TAKEN_BACK_SQL}) THEN -NEW.amount ELSE 0 END
    WHERE operator_id = NEW.operator_id AND day = date(NEW.created_at) AND currency = NEW.currency AND shard = 0;
END
""",
]

SQLITE_BACKWARD = ["DROP TRIGGER IF EXISTS reports_rollup_trades", "DROP TRIGGER IF EXISTS reports_rollup_ledger"]

# The whole rollup from the source rows (one shard, 0), for rows written before the triggers existed
# and for `manage.py reports_rebuild`. Portable SQL: PostgreSQL and SQLite.
_DAY = {"postgresql": "(%s AT TIME ZONE 'UTC')::date", "sqlite": "date(%s)"}


def rebuild_statements(vendor: str) -> list[str]:
    day = _DAY[vendor]
    return [
        "DELETE FROM reports_daily",
        "DELETE FROM reports_daily_players",
        f"""
INSERT INTO reports_daily_players (operator_id, day, player_id, currency)
SELECT DISTINCT t.operator_id, {day % "t.created_at"}, t.player_id, p.currency
FROM casino_trades t JOIN casino_players p ON p.id = t.player_id
""",
        f"""
INSERT INTO reports_daily (operator_id, day, currency, shard, trades, players, stakes, sale_proceeds, payouts, refunds, reversals)
SELECT operator_id, day, currency, 0, sum(trades), sum(players), sum(stakes), sum(sale_proceeds), sum(payouts), sum(refunds),
       sum(reversals)
FROM (
    SELECT t.operator_id, {day % "t.created_at"} AS day, p.currency, count(*) AS trades, 0 AS players,
           coalesce(sum(CASE WHEN t.side = 'buy' THEN t.cost END), 0) AS stakes,
           coalesce(sum(CASE WHEN t.side = 'sell' THEN t.cost END), 0) AS sale_proceeds, 0 AS payouts, 0 AS refunds, 0 AS reversals
    FROM casino_trades t JOIN casino_players p ON p.id = t.player_id
    GROUP BY 1, 2, 3
    UNION ALL
    SELECT operator_id, day, currency, 0, count(*), 0, 0, 0, 0, 0 FROM reports_daily_players GROUP BY 1, 2, 3
    UNION ALL
    SELECT operator_id, {day % "created_at"}, currency, 0, 0, 0, 0,
           coalesce(sum(CASE WHEN type = 'payout' THEN amount END), 0),
           coalesce(sum(CASE WHEN type = 'refund' THEN amount END), 0),
           coalesce(-sum(CASE WHEN type IN ({_TAKEN_BACK_SQL}) THEN amount END), 0)
    FROM s2s_transactions WHERE type IN ('payout', 'refund', {_TAKEN_BACK_SQL})
    GROUP BY 1, 2, 3
) AS parts
GROUP BY 1, 2, 3
""",
    ]


def triggers_install(schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_FORWARD, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement, params=None)


def triggers_remove(schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_BACKWARD, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_BACKWARD:
            schema_editor.execute(statement, params=None)


def rollup_rebuild(cursor, vendor: str) -> None:
    """Recompute the rollup from the source rows (inside the caller's transaction)."""
    for statement in rebuild_statements(vendor):
        cursor.execute(statement)
