"""Security (SPEC §15, docs/security.md): `check --deploy` clean under production settings, the security
headers, the S2S wallet secret sealed at rest (and its migration, and re-sealing under a new key), the admin
login throttled by django-axes."""

import json
import os
import secrets
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import F
from django.test import RequestFactory

from casino.services.credentials import operator_create
from core.crypto import SecretUnreadable, secret_open, secret_seal
from core.errors import HouseError
from core.middleware import client_ip
from wallets.adapters import wallet_adapter_for
from wallets.adapters.s2s import OK, UNKNOWN, WalletReply, reply_bound_to_request
from wallets.models import OperatorWallet
from wallets.services.operator_wallet import operator_wallet_rotate_secret
from webhooks.models import WebhookEndpoint

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"
WALLET_URL = "https://wallet.example.com/s2s"


def production_env(**extra: str) -> dict[str, str]:
    """What a production host sets (README, production shape): no DEBUG, a real secret key, PostgreSQL,
    behind a TLS-terminating proxy. check --deploy does not connect to the database."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": "postgres://house:secret@db.internal:5432/house",
        "REDIS_URL": "redis://redis.internal:6379/0",
        "DJANGO_ALLOWED_HOSTS": "house.example.com",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "https://house.example.com",
        "DJANGO_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
        "HOUSE_SECRETS_KEY": secrets.token_urlsafe(40),
        **extra,
    }


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- check --deploy and the headers ------------------------------------------------------------------


def test_check_deploy_is_clean_under_production_settings():
    result = check_deploy(production_env())
    # The one silenced check (security.W021, HSTS preload) is justified in config/settings.py and decisions.md.
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (1 silenced)." in result.stdout


def test_check_deploy_says_what_is_missing_when_https_is_not_configured():
    env = production_env()
    del env["DJANGO_SECURE_PROXY_SSL_HEADER"]
    result = check_deploy(env)
    assert result.returncode == 1
    # No redirect to https, no HSTS, cookies not Secure: the deployer is told.
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr


@pytest.mark.django_db
def test_every_response_carries_the_security_headers(client):
    for path in ("/healthz", "/api/casino/catalog", "/admin/login/", "/api/docs/"):
        response = client.get(path)
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"
        assert response["Cross-Origin-Opener-Policy"] == "same-origin"
        assert response["Content-Security-Policy"].startswith("default-src 'self'; script-src 'self';")
        assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


@pytest.mark.django_db
def test_behind_a_tls_proxy_http_is_redirected_and_https_gets_hsts(client, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    response = client.get("/api/casino/catalog")
    assert response.status_code == 301 and response["Location"] == "https://testserver/api/casino/catalog"
    response = client.get("/api/casino/catalog", headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    # Probes from inside the network stay on plain http.
    assert client.get("/healthz").status_code == 200


def test_the_client_address_behind_trusted_proxies_is_what_the_outermost_proxy_saw(settings):
    request = RequestFactory().get("/admin/login/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7")
    settings.TRUSTED_PROXIES = 0
    assert client_ip(request) == "10.0.0.2"
    settings.TRUSTED_PROXIES = 1
    assert client_ip(request) == "203.0.113.7"  # "6.6.6.6" is whatever the client wrote itself


# -- the S2S wallet secret sealed at rest ------------------------------------------------------------


def _stored(operator_id) -> str:
    """The column as stored (the model's ``secret`` is the property that opens it)."""
    return OperatorWallet.objects.filter(operator_id=operator_id).values_list("secret_sealed", flat=True).get()


@pytest.mark.django_db
def test_the_wallet_signing_secret_is_sealed_at_rest_and_opens_for_signing():
    issued = operator_create(name="Sealed Casino", wallet_mode="s2s", wallet_url=WALLET_URL)
    stored = _stored(issued.operator.pk)
    assert stored.startswith("f1:") and issued.wallet_secret not in stored
    assert secret_open(stored) == issued.wallet_secret
    assert OperatorWallet.objects.get(operator=issued.operator).secret == issued.wallet_secret
    assert wallet_adapter_for(issued.operator).target.secret == issued.wallet_secret

    rotated = operator_wallet_rotate_secret(operator=issued.operator)
    assert rotated != issued.wallet_secret and rotated not in _stored(issued.operator.pk)
    assert OperatorWallet.objects.get(operator=issued.operator).secret == rotated


@pytest.mark.django_db
def test_a_wallet_secret_no_configured_key_opens_refuses_trades_with_503(settings):
    settings.HOUSE_SECRETS_KEY = "the-key-of-a-previous-deployment-0123456789"
    issued = operator_create(name="Lost Key Casino", wallet_mode="s2s", wallet_url=WALLET_URL)
    settings.HOUSE_SECRETS_KEY = "a-new-key-set-without-the-previous-one-0123456789"
    with pytest.raises(HouseError) as refused:
        wallet_adapter_for(issued.operator)
    assert (refused.value.status, refused.value.code, refused.value.message) == (
        503,
        "wallet_secret_unreadable",
        "Operator wallet unavailable",
    )


@pytest.mark.django_db
def test_reseal_secrets_moves_every_secret_to_the_new_key(settings):
    old_key, new_key = "old-house-secrets-key-0123456789abcdef", "new-house-secrets-key-0123456789abcdef"
    settings.HOUSE_SECRETS_KEY = old_key
    issued = operator_create(name="Rotating Casino", wallet_mode="s2s", wallet_url=WALLET_URL)
    endpoint = WebhookEndpoint.objects.create(
        operator=issued.operator, url="https://hooks.example.com/h", events=["*"], secret_sealed=secret_seal("whsec_current")
    )

    # Step 1 of the rotation: the new key, the old one as previous; everything still opens.
    settings.HOUSE_SECRETS_KEY, settings.HOUSE_SECRETS_KEY_PREVIOUS = new_key, old_key
    assert OperatorWallet.objects.get(operator=issued.operator).secret == issued.wallet_secret
    out = StringIO()
    call_command("reseal_secrets", stdout=out)
    assert json.loads(out.getvalue()) == {"resealed": {"wallets.OperatorWallet": 1, "webhooks.WebhookEndpoint": 1}, "unreadable": 0}

    # Step 3: the previous key dropped; what was re-sealed opens under the new key alone.
    settings.HOUSE_SECRETS_KEY_PREVIOUS = ""
    assert OperatorWallet.objects.get(operator=issued.operator).secret == issued.wallet_secret
    endpoint.refresh_from_db()
    assert secret_open(endpoint.secret_sealed) == "whsec_current"
    settings.HOUSE_SECRETS_KEY = old_key
    with pytest.raises(SecretUnreadable):
        OperatorWallet.objects.get(operator=issued.operator).secret  # noqa: B018 - nothing is sealed under the old key any more


@pytest.mark.django_db
def test_reseal_secrets_fails_loudly_on_a_secret_no_configured_key_opens(settings):
    settings.HOUSE_SECRETS_KEY = "a-key-that-will-be-lost-0123456789abcdef"
    operator_create(name="Orphan Casino", wallet_mode="s2s", wallet_url=WALLET_URL)
    settings.HOUSE_SECRETS_KEY = "another-key-0123456789abcdef0123456789"
    out = StringIO()
    with pytest.raises(CommandError, match="1 sealed value"):
        call_command("reseal_secrets", stdout=out)
    assert json.loads(out.getvalue())["unreadable"] == 1


@pytest.mark.django_db(transaction=True)
def test_the_migration_seals_the_plain_secrets_already_stored_and_back():
    issued = operator_create(name="Migrated Casino", wallet_mode="s2s", wallet_url=WALLET_URL)
    before, sealed = ("wallets", "0008_operator_list_indexes"), ("wallets", "0009_operator_wallet_secret_sealed")

    executor = MigrationExecutor(connection)
    executor.migrate([before])
    old = executor.loader.project_state([before]).apps.get_model("wallets", "OperatorWallet")
    assert old.objects.get(operator_id=issued.operator.pk).secret == issued.wallet_secret  # unsealed on the way back
    old.objects.filter(operator_id=issued.operator.pk).update(secret="plain-secret-stored-before-issue-13")

    executor = MigrationExecutor(connection)
    executor.migrate([sealed])
    stored = _stored(issued.operator.pk)
    assert "plain-secret" not in stored and secret_open(stored) == "plain-secret-stored-before-issue-13"
    assert OperatorWallet.objects.get(operator=issued.operator).secret == "plain-secret-stored-before-issue-13"


# -- the admin login throttled (django-axes) ---------------------------------------------------------


def _login(client, password: str, username: str = "desk"):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password, "next": "/admin/"})


@pytest.mark.django_db
def test_repeated_wrong_admin_passwords_lock_the_login_out_until_the_cool_off(client, settings):
    assert settings.AXES_FAILURE_LIMIT == 5 and settings.AXES_COOLOFF_TIME == timedelta(minutes=15)
    get_user_model().objects.create_superuser(username="desk", email="desk@example.com", password=PASSWORD)

    for _ in range(4):
        response = _login(client, "guess")
        assert response.status_code == 200 and "Please enter the correct username and password" in response.content.decode()
    locked = _login(client, "guess")  # the fifth failure
    assert locked.status_code == 429 and "too many login attempts" in locked.content.decode()
    # Locked out: even the right password is refused, and nobody is logged in.
    assert _login(client, PASSWORD).status_code == 429
    assert client.get("/admin/").status_code == 302
    # Another username from the same address is not locked (the lockout is per username and address).
    assert _login(client, "guess", username="someone-else").status_code == 200

    # After the cool-off the right password works (and resets the count).
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=16))
    response = _login(client, PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert not AccessAttempt.objects.filter(username="desk").exists()


# -- a wallet server's answer is bound to the request ------------------------------------------------


def test_a_signed_answer_about_another_transaction_is_an_unknown_outcome():
    sent = {"transaction_id": "6f1c2a52-6c3e-4b7e-9f0e-2d7d0f4c1a10", "amount": "25.00"}
    answer = {"status": "OK", "transaction_id": "0b9d5c1e-7a44-4c0e-8a55-3f2b1d9e6c21", "balance": "75.00"}
    replayed = WalletReply(OK, "OK", Decimal("75.00"), "op-1", answer)
    assert reply_bound_to_request(replayed, sent) == WalletReply(UNKNOWN, "MISMATCHED_TRANSACTION")
    # The same id (any spelling of the uuid) is the answer; an answer without the id is judged on its status.
    own = WalletReply(OK, "OK", Decimal("75.00"), "op-1", {**answer, "transaction_id": sent["transaction_id"].upper()})
    assert reply_bound_to_request(own, sent) is own
    silent = WalletReply(OK, "OK", Decimal("75.00"), "op-1", {"status": "OK", "balance": "75.00"})
    assert reply_bound_to_request(silent, sent) is silent
    garbled = WalletReply(OK, "OK", None, "", {**answer, "transaction_id": "not-a-uuid"})
    assert reply_bound_to_request(garbled, sent).status == "MISMATCHED_TRANSACTION"
