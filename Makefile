.PHONY: run test lint audit fuzz bench bench-risk bench-settlement bench-reversal bench-feed bench-reports bench-webhooks bench-operator-reads soak

# Set up and run the product on the embedded default (SQLite, eager Celery, local cache).
run:
	scripts/run

# Set up and run the whole test suite on real PostgreSQL and Redis (started and removed here).
test:
	scripts/test

# ruff, and the import layering of docs/architecture.md (also checked by tests/test_architecture.py).
lint:
	scripts/bootstrap requirements-dev.txt && .venv/bin/ruff check . && .venv/bin/lint-imports --no-cache pyproject.toml

# The pinned requirements against the known vulnerabilities (also part of make test): offline against the advisory
# snapshot security/advisories.json, and online with pip-audit (skipped with a note when unreachable).
audit:
	scripts/bootstrap requirements-dev.txt && .venv/bin/python -m pytest -rs -q tests/test_dependency_audit.py

# Schema fuzzing (SPEC §15): >= 5,000 schemathesis cases over every operation, with real credentials, against
# gunicorn + PostgreSQL + Redis; writes its figures to bench/RESULTS.md (bench/fuzz.py; a short run is in make test).
fuzz:
	scripts/bootstrap requirements-dev.txt && scripts/with-services .venv/bin/python bench/fuzz.py --write

# HTTP trade benchmark against gunicorn + PostgreSQL, and the pgbench raw-SQL ceiling.
bench:
	scripts/bootstrap requirements-dev.txt && PG_DURABLE=1 scripts/with-services .venv/bin/python bench/run.py

# What the five risk walls add to a trade: the executor timed with walls on and off.
bench-risk:
	scripts/bootstrap requirements-dev.txt && PG_DURABLE=1 scripts/with-services .venv/bin/python bench/risk_walls.py --write

# Settlement of a market with 100,000 positions: decision and payouts, internal and S2S wallets, resolve and void
# (bench/settlement.py; --positions 10000 for a quick run).
bench-settlement:
	scripts/bootstrap requirements-dev.txt && PG_DURABLE=1 scripts/with-services .venv/bin/python bench/settlement.py --write

# Reversing those settlements (SPEC §12): the decision and taking the money back, per wallet kind.
bench-reversal:
	scripts/bootstrap requirements-dev.txt && PG_DURABLE=1 scripts/with-services .venv/bin/python bench/reversal.py --write

# The market feed against the reference market-data server: stream latency and CPU, the REST refresh and catalogue of 5,000
# markets, make bench's trades with the feed running (bench/feed.py).
bench-feed:
	scripts/bootstrap requirements-dev.txt && PG_DURABLE=1 scripts/with-services .venv/bin/python bench/feed.py --write

# The daily report (SPEC §13) with 1,000,000 trades over 366 days, and what its rollup's triggers add to a trade
# (bench/reports.py; --trades 100000 for a quick run).
bench-reports:
	scripts/bootstrap requirements-dev.txt && PG_DURABLE=1 scripts/with-services .venv/bin/python bench/reports.py --write

# Webhooks (SPEC §14): the outbox's CPU per trade (same-run A/B, events on and off) and deliveries per second to the
# reference receiver on loopback (bench/webhooks.py).
bench-webhooks:
	scripts/bootstrap requirements-dev.txt && PG_DURABLE=1 scripts/with-services .venv/bin/python bench/webhooks.py --write

# The operator's read lists with 1,000,000 trades: pages of 1,000 trades and transactions, p50/p99 (bench/operator_reads.py).
bench-operator-reads:
	scripts/bootstrap requirements-dev.txt && PG_DURABLE=1 scripts/with-services .venv/bin/python bench/operator_reads.py --write

# Soak (SPEC §15, not part of CI): gunicorn, Celery workers and beat, the reference wallet server injecting faults,
# players trading on an internal and an S2S operator, a settlement, its reversal and a void, and a chaos loop
# SIGKILLing workers; then recovery and the money invariants (bench/soak.py; SOAK_MINUTES=1 for a quick run).
SOAK_MINUTES ?= 10
SOAK_ARGS ?=
soak:
	scripts/bootstrap requirements-dev.txt && PG_DURABLE=1 scripts/with-services .venv/bin/python bench/soak.py --minutes $(SOAK_MINUTES) --progress --write $(SOAK_ARGS)
