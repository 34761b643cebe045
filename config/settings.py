"""Settings, 12-factor: everything that differs between machines comes from the environment.

Unset DATABASE_URL / REDIS_URL give the embedded default (SQLite file, local-memory cache,
Celery eager), so the product runs on a fresh machine with nothing else installed.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or ("dev-only-insecure-key" if DEBUG or not os.environ.get("DATABASE_URL") else None)
if not SECRET_KEY:
    raise RuntimeError("DJANGO_SECRET_KEY must be set when DATABASE_URL is set")
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    # Swagger UI and ReDoc served by the product (collectstatic), so /api/docs/ works offline.
    "drf_spectacular_sidecar",
    # Admin login throttling (SPEC §15): failed logins counted per username and IP, locked out past a limit.
    "axes",
    "core",
    "casino",
    "wallets",
    "risk",
    "settlement",
    "marketdata",
    "reports",
    "webhooks",
]

MIDDLEWARE = [
    "core.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.middleware.ContentSecurityPolicyMiddleware",
    # Last, as django-axes requires: it answers a locked-out login with its lockout response.
    "axes.middleware.AxesMiddleware",
]
# django-axes first: a locked-out username/IP is refused before the password is even checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]

ROOT_URLCONF = "config.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = "config.wsgi.application"
# One-time secrets (new API keys) are shown through messages: keep them server-side, not in a cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# --- Database -------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"].setdefault("OPTIONS", {})
        # A health check is one more round trip (SELECT 1) on every request. Off by default: a
        # connection that broke while idle fails its request with a 503 (nothing written) and is
        # then discarded by Django; DB_CONN_HEALTH_CHECKS=1 checks before each request instead.
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = env_bool("DB_CONN_HEALTH_CHECKS", False)
        # Server-side binding (prepared statements) measured slower for the trade path here
        # (bench/RESULTS.md): client-side binding stays, DB_SERVER_SIDE_BINDING=1 turns it on.
        DATABASES["default"]["OPTIONS"]["server_side_binding"] = env_bool("DB_SERVER_SIDE_BINDING", False)
        # Behind a transaction-pooling proxy (PgBouncer pool_mode=transaction) consecutive
        # transactions of one connection may run on different server sessions: nothing may
        # outlive a transaction, so no server-side cursors (Django's WITH HOLD cursors for
        # .iterator() outside a transaction) and, by default, no prepared statements.
        DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = env_bool("DB_TRANSACTION_POOLING", False)
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("SQLITE_PATH", str(BASE_DIR / "var" / "house.sqlite3")),
            # IMMEDIATE: a writer takes the lock at BEGIN, so two writers never deadlock
            # upgrading a read lock; the timeout makes concurrent requests queue.
            # WAL: the market feed writes while the API reads (make run runs both on this file).
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"},
        }
    }
# Operator reads and reports (SPEC §13) from a streaming read replica when one is configured: the
# selectors ask core.db.reads() for the alias; the router sends anything read there back to the
# primary to be written, and never migrates the replica. Under test the alias mirrors the primary.
DATABASE_REPLICA_URL = os.environ.get("DATABASE_REPLICA_URL", "")
DATABASE_REPLICA_READS = bool(DATABASE_REPLICA_URL)
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = dj_database_url.parse(DATABASE_REPLICA_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
    if DATABASES["replica"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["replica"]["DISABLE_SERVER_SIDE_CURSORS"] = env_bool("DB_TRANSACTION_POOLING", False)
DATABASE_ROUTERS = ["core.db_router.ReplicaRouter"]
# The trade request's statements prepared once per connection (core/prepared.py);
# off by default behind a transaction-pooling proxy (DB_TRANSACTION_POOLING=1).
DB_PREPARED_STATEMENTS = env_bool("DB_PREPARED_STATEMENTS", not env_bool("DB_TRANSACTION_POOLING", False))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, rate limits, Celery -------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "house"),
        }
    }
    CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
    CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "house"}}
    CELERY_BROKER_URL = "memory://"
    CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# The worker logs through LOGGING below (JSON lines with the request id of the task's origin).
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# One queue per app, so each can have its own workers (docs/architecture.md, scaling out); a
# single worker consumes them all: celery -A config worker -Q celery,wallets,settlement,risk,marketdata,webhooks
CELERY_TASK_ROUTES = {
    "wallets.tasks.*": {"queue": "wallets"},
    "settlement.tasks.*": {"queue": "settlement"},
    "risk.tasks.*": {"queue": "risk"},
    "marketdata.tasks.*": {"queue": "marketdata"},
    "webhooks.tasks.*": {"queue": "webhooks"},
}
CELERY_BEAT_SCHEDULE = {
    "wallet-recover-stalled": {"task": "wallets.tasks.wallet_recover_stalled", "schedule": 30.0},
    "wallet-reconcile": {"task": "wallets.tasks.wallet_reconcile", "schedule": 60.0},
    "risk-sharp-scores": {"task": "risk.tasks.sharp_scores_recompute_task", "schedule": 300.0, "kwargs": {"incremental": True}},
    # Issue 14: a full recompute daily (trades leaving the 30-day window), tier promotions daily.
    "risk-sharp-scores-full": {"task": "risk.tasks.sharp_scores_recompute_task", "schedule": 86400.0},
    "risk-tier-promotions": {"task": "risk.tasks.tier_promotions_apply_task", "schedule": 86400.0},
    "risk-operator-open-exposure-rebuild": {"task": "risk.tasks.operator_open_exposure_rebuild", "schedule": 300.0},
    # The circuit breakers' 24 h loss windows from the database, and the platform halt check (SPEC §16).
    # The rebuild aggregates 24 h of trades and settlement ledger rows (indexed ranges): every 10 minutes; the
    # windows roll by themselves in between, and the cheap check reads the platform window every minute.
    "risk-breaker-windows-rebuild": {"task": "risk.tasks.breaker_windows_rebuild_task", "schedule": 600.0},
    "risk-breaker-platform-check": {"task": "risk.tasks.breaker_platform_check_task", "schedule": 60.0},
    "settlements-resume": {"task": "settlement.tasks.settlements_resume", "schedule": 60.0},
    # Loss notifications to S2S wallets (SPEC §16) due for a retry, or left by a stopped worker.
    "settlement-loss-notices": {"task": "settlement.tasks.loss_notices_send_task", "schedule": 30.0},
    "marketdata-auto-confirm": {"task": "marketdata.tasks.resolutions_auto_confirm", "schedule": 60.0},
    "marketdata-price-history": {"task": "marketdata.tasks.price_history_retention", "schedule": 3600.0},
    # Undispatched events and due retries (the on-commit kick makes delivery prompt; this catches the rest).
    "webhooks-pump": {"task": "webhooks.tasks.webhooks_pump", "schedule": 5.0, "kwargs": {"scheduled": True}},
    "webhooks-retention": {"task": "webhooks.tasks.webhooks_retention", "schedule": 3600.0},
}

RATELIMIT_ENABLE = env_bool("RATELIMIT_ENABLE", True)
RATELIMIT_USE_CACHE = "default"
# Rate limits are per user and enforced by core.api.throttling; django-ratelimit's own
# middleware is not used (its 403 would not be the reference document's 429).
# security.W021 (HSTS preload off): submitting the domain to the browsers' preload list is a commitment for
# the domain and all its subdomains that is slow to undo, the deployer's call (DJANGO_SECURE_HSTS_PRELOAD=1).
SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001", "security.W021"]

# --- REST framework ---------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["core.api.auth.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_PARSER_CLASSES": ["core.api.rendering.DecimalJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["core.api.rendering.DecimalJSONRenderer"],
    "EXCEPTION_HANDLER": "core.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Predictu-style house: Casino API",
    "DESCRIPTION": "Player trading, balances, positions and operator/staff endpoints of the house.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Two choice sets share the field name "action": name them instead of a hash suffix.
    "ENUM_NAME_OVERRIDES": {
        "SettlementActionEnum": ["resolve", "void"],
        "BalanceActionEnum": ["deposit", "withdraw"],
        "PlayerStatusEnum": ["active", "blocked"],
    },
    # The docs pages load their JavaScript, CSS and favicon from the product's static files, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "core.api.openapi.document_credential_errors"],
}

# --- Security (SPEC §15; docs/security.md) -----------------------------------------------------
# HTTPS: on when the site sits behind a TLS-terminating proxy that says so (DJANGO_SECURE_PROXY_SSL_HEADER,
# e.g. "X-Forwarded-Proto": a request is secure when that header says https), or when DJANGO_HTTPS=1.
# Then http is redirected to https, cookies are Secure and HSTS is sent. Off, the product answers plain
# http (make run, the tests on loopback); `manage.py check --deploy` says so until it is configured.
_proxy_ssl_header = os.environ.get("DJANGO_SECURE_PROXY_SSL_HEADER", "").strip()
if _proxy_ssl_header:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https")
HTTPS = env_bool("DJANGO_HTTPS", bool(_proxy_ssl_header))
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", HTTPS)
# /healthz, /readyz and /metrics are probed over plain http from inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 365 * 24 * 3600 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Staff sessions of the admin end after 8 hours (Django's default is two weeks).
SESSION_COOKIE_AGE = env_int("DJANGO_SESSION_COOKIE_AGE", 8 * 3600)
# core.middleware.ContentSecurityPolicyMiddleware sends it on every response: the admin, the
# dashboard, Swagger UI and ReDoc load everything from this host (ReDoc runs a worker from a
# blob: URL; Swagger UI and the admin use inline styles and data: images). DJANGO_CSP="" turns it off.
CONTENT_SECURITY_POLICY = os.environ.get(
    "DJANGO_CSP",
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    "connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
)
# Admin login throttling (django-axes): AXES_FAILURE_LIMIT failed logins for a username from one IP
# lock that pair out for AXES_COOLOFF_MINUTES; the attempts are counted in the database (shared by
# every gunicorn worker and host). The admin's login form answers a lockout with 429.
AXES_ENABLED = env_bool("AXES_ENABLED", True)
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HANDLER = os.environ.get("AXES_HANDLER", "axes.handlers.database.AxesDatabaseHandler")
# The client's address: REMOTE_ADDR, or behind DJANGO_TRUSTED_PROXIES proxies the address the outermost
# of them saw (X-Forwarded-For counted from the right: what a client writes there itself is not trusted).
TRUSTED_PROXIES = env_int("DJANGO_TRUSTED_PROXIES", 0)
AXES_CLIENT_IP_CALLABLE = "core.middleware.client_ip"
# Failures and lockouts are logged as warnings (username and IP, never the password); no banner at start-up.
AXES_VERBOSE = False

# --- House defaults (the database configuration rows start from these) ---------------------
HOUSE_SESSION_TTL_SECONDS = env_int("HOUSE_SESSION_TTL_SECONDS", 24 * 3600)
HOUSE_EXPOSURE_SHARDS = env_int("HOUSE_EXPOSURE_SHARDS", 16)
# S2S wallet: retries back off exponentially from BASE to MAX seconds; an operation still
# without a definite answer after MANUAL_AFTER seconds is flagged for manual handling; a
# pending operation untouched for STALL seconds is taken over by recovery.
HOUSE_WALLET_RETRY_BASE_SECONDS = env_int("HOUSE_WALLET_RETRY_BASE_SECONDS", 2)
HOUSE_WALLET_RETRY_MAX_SECONDS = env_int("HOUSE_WALLET_RETRY_MAX_SECONDS", 300)
HOUSE_WALLET_MANUAL_AFTER_SECONDS = env_int("HOUSE_WALLET_MANUAL_AFTER_SECONDS", 6 * 3600)
HOUSE_WALLET_STALL_SECONDS = env_int("HOUSE_WALLET_STALL_SECONDS", 60)
# A worker sending many S2S movements at once holds them (no other worker sends them) for as long as
# all its calls could take at the operator's timeout, plus this margin; then they may be sent again.
HOUSE_WALLET_HOLD_MARGIN_SECONDS = env_int("HOUSE_WALLET_HOLD_MARGIN_SECONDS", 30)
# Reference price ticks and chart points are kept this many days (sharp scoring's markout
# horizons are at most a week).
HOUSE_PRICE_HISTORY_DAYS = env_int("HOUSE_PRICE_HISTORY_DAYS", 30)

# --- Events and webhooks (SPEC §14) ---------------------------------------------------------
# The outbox is written with every change; off only for the benchmark's A/B (bench/webhooks.py).
HOUSE_EVENTS_ENABLED = env_bool("HOUSE_EVENTS_ENABLED", True)
# Webhook signing secrets are sealed at rest with this key (core/crypto.py); unset: derived from
# DJANGO_SECRET_KEY. HOUSE_SECRETS_KEY_PREVIOUS still opens what the previous key sealed.
HOUSE_SECRETS_KEY = os.environ.get("HOUSE_SECRETS_KEY", "")
HOUSE_SECRETS_KEY_PREVIOUS = os.environ.get("HOUSE_SECRETS_KEY_PREVIOUS", "")
# Development and tests only: http:// and loopback/private targets allowed.
WEBHOOK_ALLOW_INSECURE_URLS = env_bool("WEBHOOK_ALLOW_INSECURE_URLS", False)
WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("WEBHOOK_TIMEOUT_SECONDS", "5"))
WEBHOOK_CONCURRENCY = env_int("WEBHOOK_CONCURRENCY", 32)
# Events are kept (and replayable through GET operator/events) this many days.
WEBHOOK_EVENT_RETENTION_DAYS = env_int("WEBHOOK_EVENT_RETENTION_DAYS", 30)

# --- Market data (SPEC §11) -----------------------------------------------------------------
# The feed's leadership lock needs a real PostgreSQL session: behind PgBouncer in transaction
# mode, point this at PostgreSQL itself (default: DATABASE_URL).
MARKET_FEED_LOCK_DATABASE_URL = os.environ.get("MARKET_FEED_LOCK_DATABASE_URL", "")

# --- Market data sources (SPEC §11): Polymarket's public APIs, or the reference market-data server
POLYMARKET_GAMMA_URL = os.environ.get("POLYMARKET_GAMMA_URL", "https://gamma-api.polymarket.com")
POLYMARKET_CLOB_URL = os.environ.get("POLYMARKET_CLOB_URL", "https://clob.polymarket.com")
POLYMARKET_WS_URL = os.environ.get("POLYMARKET_WS_URL", "wss://ws-subscriptions-clob.polymarket.com/ws/market")

# --- i18n, static -----------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = os.environ.get("STATIC_ROOT", str(BASE_DIR / "var" / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Logging: one JSON line per event with the request id, structlog's and everybody else's ---------
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "core.logging_setup.JSONFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "websockets": {"level": "WARNING"},
    },
}
