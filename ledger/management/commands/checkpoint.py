from django.core.management.base import BaseCommand

from ledger.services import checkpoint_create


class Command(BaseCommand):
    help = "Sign a checkpoint of the ledger's current tree now (beat also makes one every LEDGER_CHECKPOINT_SECONDS)."

    def handle(self, *args, **options) -> None:
        checkpoint = checkpoint_create()
        if checkpoint is None:
            self.stdout.write("the ledger is empty: nothing to checkpoint")
            return
        self.stdout.write(checkpoint.note, ending="")
