from django.core.management.base import BaseCommand

from ledger.services import signing_key_rotate


class Command(BaseCommand):
    help = "Make a new platform signing key, announced in the ledger by an entry signed with the old one."

    def handle(self, *args, **options) -> None:
        key = signing_key_rotate()
        self.stdout.write(f"the ledger now signs with {key.verifier_key} (from entry {key.first_seq})")
