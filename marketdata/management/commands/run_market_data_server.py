"""run_market_data_server: serve the reference market-data server (SPEC §11) until interrupted.

Prints one JSON line, ``{"http": ..., "ws": ..., "control": ...}``, once both ports are bound.
"""

import json
import threading

from django.core.management.base import BaseCommand, CommandError

from marketdata.reference_server import ReferenceMarketDataServer, serve_in_thread


class Command(BaseCommand):
    help = "Serve the reference Polymarket-shaped market-data server (Gamma, CLOB, market websocket); for development and tests."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=9200, help="HTTP port (Gamma- and CLOB-shaped endpoints).")
        parser.add_argument("--ws-port", type=int, help="Websocket port (default: --port + 1; 0 picks a free one).")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--events-per-second", type=float, default=10.0, help="Random-walk price moves per second (0: prices hold).")
        parser.add_argument("--control", action="store_true", help="Enable POST /_control and GET /_state (unauthenticated).")
        parser.add_argument("--seed", type=int, default=0, help="Seed of the random walk and of the frame shapes.")
        parser.add_argument("--synthetic", type=int, default=0, metavar="N", help="Add N synthetic binary markets (benchmarks).")

    def handle(self, *args, port, ws_port, host, events_per_second, control, seed, synthetic, **options):
        server = ReferenceMarketDataServer(seed=seed, control=control)
        if synthetic:
            server.add_synthetic_markets(synthetic)
        if ws_port is None:
            ws_port = port + 1 if port else 0
        try:
            http_url, ws_url, stop = serve_in_thread(server, host, port, ws_port)
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}: {exc}") from exc
        server.random_walk(events_per_second)
        self.stdout.write(json.dumps({"http": http_url, "ws": ws_url, "control": control}))
        self.stdout.flush()
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            stop()
