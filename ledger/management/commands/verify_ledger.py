from django.core.management.base import BaseCommand, CommandError

from ledger.audit import audit, progress_printer
from ledger.selectors import ledger_size


class Command(BaseCommand):
    help = (
        "Re-hash every entry from its stored fields, check every link and signature, every checkpoint's root and "
        "signature, the stored Merkle tree, replay every balance and escrow, and check that the balances outside "
        "issuance sum to the total minted; exit 1 naming the first bad seq."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--key", help="pin the first platform key (its verifier key) instead of trusting the database"
        )
        parser.add_argument("--jobs", type=int, default=1, help="processes for signature checks (default 1)")
        parser.add_argument("--quiet", action="store_true", help="print nothing when the ledger is sound")
        parser.add_argument(
            "--since", type=int, default=0,
            help="check signatures from this seq on; every entry is still re-hashed, linked and replayed",
        )  # fmt: skip

    def handle(self, *args, key: str | None, jobs: int, quiet: bool, since: int, **options) -> None:
        if since < 0:
            raise CommandError("--since must be 0 or more")
        finding = audit(
            trusted_key=key, jobs=max(jobs, 1), since=since, on_entry=progress_printer(ledger_size())
        )
        if not finding.ok:
            raise CommandError(finding.line)
        if not quiet:
            self.stdout.write(finding.line)
