import json

from django.core.management.base import BaseCommand

from ledger.export import export_records


class Command(BaseCommand):
    help = (
        "Write the ledger as JSON lines (entries, checkpoints, keys, balances) for `python -m ledger.verify`."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="where to write the export ('-' for standard output)")

    def handle(self, *args, file: str, **options) -> None:
        out = self.stdout if file == "-" else open(file, "w", encoding="utf-8")  # noqa: SIM115
        count = 0
        try:
            for record in export_records():
                out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
                count += record["type"] == "entry"
        finally:
            if out is not self.stdout:
                out.close()
        if file != "-":
            self.stdout.write(f"wrote {count} entries to {file}")
