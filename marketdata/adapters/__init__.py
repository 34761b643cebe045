"""Adapters to the outside market-data sources; ``polymarket`` holds every quirk of Polymarket's public APIs."""
