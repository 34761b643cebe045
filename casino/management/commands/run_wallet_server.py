"""run_wallet_server: serve the reference operator wallet server (SPEC §9) until interrupted.

Prints one JSON line, ``{"url": ..., "control": ...}``, once the port is bound.
"""

import json
import re
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError

from wallets.models import OperatorWallet
from wallets.reference_server import ReferenceWalletServer, make_server, server_url

_SEED = re.compile(r"(?P<user>[^=]+)=(?P<balance>[0-9]+(\.[0-9]{1,2})?)")


class Command(BaseCommand):
    help = "Serve the reference S2S wallet server (threaded) on a port; for development and tests."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=9100)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--secret", action="append", default=[], help="Signing secret; repeat to accept old ones (first signs).")
        parser.add_argument("--operator", help="Use the wallet secret of this operator (by name) from the database.")
        parser.add_argument("--control", action="store_true", help="Enable POST /_control and GET /_state (unauthenticated).")
        parser.add_argument("--seed-player", action="append", default=[], metavar="ID=BALANCE")
        parser.add_argument("--latency", type=float, default=0.0, help="Seconds to sleep before each wallet request.")
        parser.add_argument("--currency", default="USD", help="Currency of seeded and auto-created players.")
        parser.add_argument("--no-auto-create", action="store_true", help="Answer UNKNOWN_ERROR for players not seeded.")

    def handle(self, *args, port, host, secret, operator, control, seed_player, latency, currency, no_auto_create, **options):
        secrets = list(secret)
        if operator:
            secrets.insert(0, self._operator_secret(operator))
        if not secrets:
            raise CommandError("give --secret or --operator")
        app = ReferenceWalletServer(
            secrets, control=control, currency=currency, auto_create_players=not no_auto_create, latency_seconds=latency
        )
        for seed in seed_player:
            match = _SEED.fullmatch(seed)
            if not match:
                raise CommandError(f"--seed-player expects ID=BALANCE, got {seed!r}")
            app.set_player(match["user"], balance=Decimal(match["balance"]), currency=currency)
        try:
            server = make_server(app, host, port)
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc}") from exc
        self.stdout.write(json.dumps({"url": server_url(server), "control": control}))
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()

    @staticmethod
    def _operator_secret(name: str) -> str:
        config = OperatorWallet.objects.filter(operator__name=name).first()
        if config is None or not config.secret:
            raise CommandError(f"operator {name!r} has no wallet settings")
        return config.secret
