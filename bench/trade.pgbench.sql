-- pgbench script: the raw-SQL trade transaction (the ceiling for POST /api/casino/trade).
-- bench/run.py fills in the braces; run with -M prepared. One $1 buy at mid 50 of a
-- random player (bench_players 1..N) on a random market (bench_markets: 0 = the hot market,
-- 1..M the spread-out ones) and a random outcome (0 = yes, 1 = no), on the migrated schema.
-- The same database work as the product's trade, in as few round trips as the product's
-- (casino/services/credentials.py, casino/services/markets.py,
-- casino/services/trade_executor/house_wallet_sql.py), without the Python in between:
--   1. the session look-up by token hash (player, operator, risk profile, operator limits) with
--      the market, its reference price and its book (the product: two statements, one message);
--   2. BEGIN, the market row shared and the wallet row locked, the player's positions on the
--      market (the product: one message);
--   3. one statement for every write: the balance, the ledger row, the trade, the position
--      (upserted), one exposure shard of the market (within its quota, answering the change of
--      worst case), one shard of the market's category and one global shard taking that change,
--      the player's wagering total and the trade.executed event (SPEC §14's outbox, a payload of
--      the real one's size); then COMMIT (the product: the same statement and COMMIT, one message).
-- The trades' rollup trigger fires at COMMIT in both.
\set p random(1, {players})
\set m random({market_lo}, {market_hi})
\set o random(0, 1)
\set shard random(0, {shards_max})
\set cshard random(0, {shards_max})
\set gshard random(0, {shards_max})
SELECT pl.pid, pl.opid, mk.mid, mk.cat FROM (SELECT p.id AS pid, p.operator_id AS opid, p.status, p.tier, p.total_wagered, o.wallet_mode, o.currency, rp.sharp_score, ol.trading_enabled FROM bench_players bp JOIN casino_player_sessions s ON s.token_hash = bp.token_hash JOIN casino_players p ON p.id = s.player_id JOIN casino_operators o ON o.id = p.operator_id AND o.is_active LEFT JOIN risk_player_profiles rp ON rp.player_id = p.id LEFT JOIN risk_operator_limits ol ON ol.operator_id = o.id WHERE bp.i = :p AND s.expires_at > now()) pl CROSS JOIN (SELECT m.id AS mid, m.category AS cat, m.status, m.disabled, m.liquidity, r.mid_price, r.updated_at, b.yes_shares, b.no_shares, b.cash_in FROM bench_markets bm JOIN casino_markets m ON m.id = bm.market_id LEFT JOIN casino_reference_prices r ON r.market_id = m.id AND r.outcome = CASE WHEN :o = 0 THEN 'yes' ELSE 'no' END CROSS JOIN LATERAL (SELECT coalesce(sum(e.yes_shares), 0) AS yes_shares, coalesce(sum(e.no_shares), 0) AS no_shares, coalesce(sum(e.cash_in), 0) AS cash_in FROM casino_exposure e WHERE e.market_id = m.id) b WHERE bm.i = :m) mk \gset
\startpipeline
BEGIN;
SELECT m.status, w.balance FROM casino_markets m, wallet_balances w WHERE m.id = :mid AND w.player_id = :pid FOR SHARE OF m FOR UPDATE OF w;
SELECT id, outcome, shares, avg_price, status, realized_pnl, version, market_title FROM casino_positions WHERE player_id = :pid AND market_id = :mid;
\endpipeline
\startpipeline
WITH wal AS (UPDATE wallet_balances SET balance = balance - {stake}, updated_at = now() WHERE player_id = :pid RETURNING balance + {stake} AS before, balance AS after),
led AS (INSERT INTO s2s_transactions (id, player_id, operator_id, type, amount, balance_after, currency, description, trade_id, round_id, reference_id, actor, created_at) VALUES (gen_random_uuid(), :pid, :opid, 'trade_debit', -{stake}, (SELECT after FROM wal), 'USD', 'Buy {shares} YES @ {price}', gen_random_uuid(), gen_random_uuid()::text, NULL, 'player', now()) RETURNING 1),
tra AS (INSERT INTO casino_trades (id, player_id, operator_id, market_id, market_title, side, outcome, shares, price_mid, price_executed, spread_applied, cost, balance_before, balance_after, realized_pnl, wallet_transaction_id, created_at) VALUES (gen_random_uuid(), :pid, :opid, :mid, '', 'buy', CASE WHEN :o = 0 THEN 'yes' ELSE 'no' END, {shares}, {mid}, {price}, {half_spread}, {stake}, (SELECT before FROM wal), (SELECT after FROM wal), 0, gen_random_uuid(), now()) RETURNING 1),
pos AS (INSERT INTO casino_positions AS pos (id, player_id, operator_id, market_id, market_title, outcome, shares, avg_price, status, realized_pnl, version, created_at, updated_at) VALUES (gen_random_uuid(), :pid, :opid, :mid, '', CASE WHEN :o = 0 THEN 'yes' ELSE 'no' END, {shares}, {price}, 'open', 0, 0, now(), now()) ON CONFLICT (player_id, market_id, outcome) DO UPDATE SET shares = pos.shares + EXCLUDED.shares, avg_price = round((pos.shares * pos.avg_price + EXCLUDED.shares * EXCLUDED.avg_price) / (pos.shares + EXCLUDED.shares), 4), status = 'open', version = pos.version + 1, updated_at = now() RETURNING 1),
exp AS (UPDATE casino_exposure SET yes_shares = yes_shares + CASE WHEN :o = 0 THEN {shares} ELSE 0 END, no_shares = no_shares + CASE WHEN :o = 0 THEN 0 ELSE {shares} END, cash_in = cash_in + {stake} WHERE market_id = :mid AND shard = :shard AND cap = {market_cap} AND category = :cat AND (GREATEST(yes_shares + CASE WHEN :o = 0 THEN {shares} ELSE 0 END, no_shares + CASE WHEN :o = 0 THEN 0 ELSE {shares} END) - (cash_in + {stake}) <= quota OR GREATEST(yes_shares + CASE WHEN :o = 0 THEN {shares} ELSE 0 END, no_shares + CASE WHEN :o = 0 THEN 0 ELSE {shares} END) - (cash_in + {stake}) <= GREATEST(yes_shares, no_shares) - cash_in) RETURNING GREATEST(yes_shares, no_shares) - cash_in - (GREATEST(yes_shares - CASE WHEN :o = 0 THEN {shares} ELSE 0 END, no_shares - CASE WHEN :o = 0 THEN 0 ELSE {shares} END) - (cash_in - {stake})) AS growth),
cat AS (UPDATE casino_category_exposure SET bound = bound + (SELECT growth FROM exp) WHERE category = :cat AND shard = :cshard AND cap = {category_cap} AND (bound + (SELECT growth FROM exp) <= quota OR (SELECT growth FROM exp) <= 0) AND EXISTS (SELECT 1 FROM exp) RETURNING 1),
glo AS (UPDATE casino_global_exposure SET bound = bound + (SELECT growth FROM exp) WHERE shard = :gshard AND cap = {global_cap} AND (bound + (SELECT growth FROM exp) <= quota OR (SELECT growth FROM exp) <= 0) AND EXISTS (SELECT 1 FROM cat) RETURNING 1),
wag AS (UPDATE casino_players SET total_wagered = total_wagered + {stake} WHERE id = :pid RETURNING 1),
evt AS (INSERT INTO house_events (operator_id, type, data, request_id, created_at) VALUES (:opid, 'trade.executed', jsonb_build_object('id', gen_random_uuid(), 'user_id', :pid::uuid, 'market_id', :mid::text, 'market_title', '', 'side', 'buy', 'outcome', CASE WHEN :o = 0 THEN 'yes' ELSE 'no' END, 'shares', {shares}, 'price_mid', {mid}, 'price_executed', {price}, 'spread_applied', {half_spread}, 'cost', {stake}, 'balance_before', (SELECT before FROM wal), 'balance_after', (SELECT after FROM wal), 'realized_pnl', 0, 'operator_id', :opid::uuid, 's2s_transaction_id', NULL::text, 'created_at', now(), 'playerId', 'bench-player', 'userId', :pid::uuid), '', now()) RETURNING 1)
SELECT (SELECT count(*) FROM pos) AS npos, (SELECT count(*) FROM glo) AS nglo, (SELECT count(*) FROM wal) + (SELECT count(*) FROM led) + (SELECT count(*) FROM tra) + (SELECT count(*) FROM wag) + (SELECT count(*) FROM evt) AS nrest;
COMMIT;
\endpipeline
