"""Demo data for the ledger: starting balances, a few payments, an escrow and a signed checkpoint."""

from django.db import transaction

from ledger import services
from ledger.models import Entry
from platform_site.accounts import selectors as accounts_selectors


def seed(*, stdout) -> None:
    if Entry.objects.filter(idempotency_key__startswith="demo:").exists():
        stdout.write("  ledger: demo entries exist already")
        return
    users = {
        u.username: services.account_name(user=u)
        for u in accounts_selectors.user_list_by_usernames(usernames=["alice", "bob", "carol"])
    }
    if len(users) < 3:
        return
    # One transaction: the demo ledger appears whole or not at all.
    with transaction.atomic(durable=True):
        for name, account in users.items():
            services.mint(destination=account, amount=500_000, actor="system", reason="demo starting balance",
                          idempotency_key=f"demo:mint:{name}")  # fmt: skip
        services.transfer(source=users["bob"], destination=users["alice"], amount=12_500, actor=users["bob"],
                          memo="dataset license (demo)")  # fmt: skip
        escrow = services.escrow_open(payer=users["carol"], payee=users["alice"], amount=40_000,
                                      actor=users["carol"], condition="model reaches 90% accuracy")  # fmt: skip
        services.escrow_release(escrow=escrow, actor="system", reason="accuracy 92.4% verified")
        services.split_pay(source=users["carol"], amount=10_000, actor=users["carol"], memo="royalty split (demo)",
                           shares=[services.Share(users["alice"], 7_000), services.Share(users["bob"], 3_000)])  # fmt: skip
    checkpoint = services.checkpoint_create()
    stdout.write(f"  ledger: {checkpoint.tree_size} demo entries, checkpoint signed")
