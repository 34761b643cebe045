-- pgbench script: the raw-SQL trade transaction (the ceiling for POST /api/casino/trade).
-- bench/run.py fills in the braces; run with -M prepared. One $1 buy at mid 50 of a
-- random player (bench_players 1..N) on a random market (bench_markets: 0 = the hot market,
-- 1..M the spread-out ones) and a random outcome (0 = yes, 1 = no), on the migrated schema:
-- lock the balance, update it, insert the trade (its rollup trigger fires at COMMIT), upsert the position, update one
-- exposure shard, and write the trade.executed event (SPEC §14's outbox, a payload of the real one's size).
\set p random(1, {players})
\set m random({market_lo}, {market_hi})
\set o random(0, 1)
\set shard random(0, {shards_max})
SELECT bp.player_id AS pid, bp.operator_id AS opid, bm.market_id AS mid FROM bench_players bp, bench_markets bm WHERE bp.i = :p AND bm.i = :m \gset
BEGIN;
SELECT balance AS bal FROM wallet_balances WHERE player_id = :pid FOR UPDATE \gset
UPDATE wallet_balances SET balance = balance - {stake}, updated_at = now() WHERE player_id = :pid;
INSERT INTO casino_trades (id, player_id, operator_id, market_id, market_title, side, outcome, shares, price_mid, price_executed, spread_applied, cost, balance_before, balance_after, realized_pnl, wallet_transaction_id, created_at) VALUES (gen_random_uuid(), :pid, :opid, :mid, '', 'buy', CASE WHEN :o = 0 THEN 'yes' ELSE 'no' END, {shares}, {mid}, {price}, {half_spread}, {stake}, :bal, :bal - {stake}, 0, gen_random_uuid(), now());
INSERT INTO casino_positions AS pos (id, player_id, operator_id, market_id, market_title, outcome, shares, avg_price, status, realized_pnl, version, created_at, updated_at) VALUES (gen_random_uuid(), :pid, :opid, :mid, '', CASE WHEN :o = 0 THEN 'yes' ELSE 'no' END, {shares}, {price}, 'open', 0, 0, now(), now()) ON CONFLICT (player_id, market_id, outcome) DO UPDATE SET shares = pos.shares + EXCLUDED.shares, avg_price = round((pos.shares * pos.avg_price + EXCLUDED.shares * EXCLUDED.avg_price) / (pos.shares + EXCLUDED.shares), 4), status = 'open', version = pos.version + 1, updated_at = now();
UPDATE casino_exposure SET yes_shares = yes_shares + CASE WHEN :o = 0 THEN {shares} ELSE 0 END, no_shares = no_shares + CASE WHEN :o = 0 THEN 0 ELSE {shares} END, cash_in = cash_in + {stake}, updated_at = now() WHERE market_id = :mid AND shard = :shard;
INSERT INTO house_events (operator_id, type, data, request_id, created_at) VALUES (:opid, 'trade.executed', jsonb_build_object('id', gen_random_uuid(), 'user_id', :pid::uuid, 'market_id', :mid::text, 'market_title', '', 'side', 'buy', 'outcome', CASE WHEN :o = 0 THEN 'yes' ELSE 'no' END, 'shares', {shares}, 'price_mid', {mid}, 'price_executed', {price}, 'spread_applied', {half_spread}, 'cost', {stake}, 'balance_before', :bal::numeric, 'balance_after', :bal::numeric - {stake}, 'realized_pnl', 0, 'operator_id', :opid::uuid, 's2s_transaction_id', NULL::text, 'created_at', now(), 'playerId', 'bench-player', 'userId', :pid::uuid), '', now());
COMMIT;
