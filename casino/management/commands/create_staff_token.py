"""create_staff_token --username NAME -> {"token": ...} (creates the staff user if needed)."""

import json

from django.core.management.base import BaseCommand

from casino.services.credentials import staff_token_create


class Command(BaseCommand):
    help = "Issue a staff bearer token for the REST admin endpoints."

    def add_arguments(self, parser):
        parser.add_argument("--username", required=True)

    def handle(self, *args, username, **options):
        self.stdout.write(json.dumps({"token": staff_token_create(username=username)}))
