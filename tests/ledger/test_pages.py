"""The ledger's pages: explorer, entry verification, wallet, faucet, ops, admin and the live websocket."""

import re

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.test import Client
from django.urls import reverse

from ledger import chain, selectors, services
from ledger.models import (
    Account,
    Checkpoint,
    Cosignature,
    Entry,
    Escrow,
    LedgerHead,
    MerkleNode,
    SigningKey,
    Witness,
)
from platform_site.accounts.services import public_key_register
from platform_site.asgi import application
from tests.conftest import run_async
from tests.factories import MembershipFactory, OrganizationFactory
from tests.platform_site.accounts.keys import ed25519_keypair

pytestmark = pytest.mark.django_db

EXPLORER = "/ledger/"
PROFILE = "/accounts/profile/"
FAUCET = "/ledger/faucet/"


def mint(name: str, amount: int) -> Entry:
    with transaction.atomic():
        return services.mint(destination=name, amount=amount, actor="system", reason="test")


def transfer(source: str, destination: str, amount: int) -> Entry:
    with transaction.atomic():
        return services.transfer(source=source, destination=destination, amount=amount, actor=source)


def shown_seqs(response) -> list[int]:
    return [int(seq) for seq in re.findall(r'<tr data-seq="(\d+)"', response.content.decode())]


def text_of(page: str, testid: str) -> str:
    """The text inside the element with this data-testid, tags stripped and spaces collapsed."""
    match = re.search(rf'data-testid="{testid}"[^>]*>(.*?)</(div|p|span|code)>', page, re.S)
    assert match, testid
    return " ".join(re.sub(r"<[^>]+>", "", match.group(1)).replace("\xa0", " ").split())


def entry_page(client: Client, seq: int) -> str:
    response = client.get(f"/ledger/entries/{seq}/")
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def ledger(alice, bob):
    """#0 mint 1,000.00 to alice, #1 mint 500.00 to bob, #2 alice pays bob 250.00."""
    a, b = f"user:{alice.pk}", f"user:{bob.pk}"
    mint(a, 100_000)
    mint(b, 50_000)
    transfer(a, b, 25_000)
    return a, b


@pytest.fixture
def browser(client, alice):
    client.force_login(alice)
    return client


# ---------------------------------------------------------------------------------------------------- explorer


def test_anonymous_visitors_see_the_explorer_and_the_entry_pages(client, ledger):
    a, b = ledger

    explorer = client.get(EXPLORER)
    assert explorer.status_code == 200
    assert shown_seqs(explorer) == [2, 1, 0]
    assert client.get(EXPLORER, {"actor": a}).status_code == 200
    page = entry_page(client, 2)
    assert "VERIFIED" in text_of(page, "verdict")
    assert f"user:{b.split(':')[1]}" in page


def test_anonymous_visitors_still_cannot_use_the_faucet(client, ledger):
    response = client.post(FAUCET)

    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))
    assert Entry.objects.count() == 3


def test_the_ledger_pages_name_no_user_and_show_no_balance_to_anonymous_visitors(client, alice, bob, ledger):
    pages = [client.get(EXPLORER).content.decode()] + [entry_page(client, seq) for seq in range(3)]

    for page in pages:
        for name in (alice.username, bob.username):
            assert not re.search(rf"[>\s]{name}[<\s]", page), name
        assert "balance" not in page.lower()


def test_the_explorer_lists_the_newest_entries_first_with_their_amounts(browser, ledger):
    a, b = ledger
    response = browser.get(EXPLORER)
    assert response.status_code == 200
    assert shown_seqs(response) == [2, 1, 0]
    page = response.content.decode()
    assert f"250.00 tokens: {a} → {b}" in page
    assert f"1,000.00 tokens: issuance → {a}" in page
    assert bytes(Entry.objects.get(seq=2).entry_hash).hex()[:12] in page
    assert 'href="/ledger/entries/2/"' in page
    assert text_of(page, "ledger-size") == "3"
    assert "no checkpoint signed yet" in page
    assert reverse("api-ledger-checkpoint") in page and reverse("api-ledger-public-keys") in page


def test_the_explorer_filters_by_kind_actor_and_seq_range(browser, ledger):
    a, _b = ledger
    assert shown_seqs(browser.get(EXPLORER, {"kind": "ledger.mint"})) == [1, 0]
    assert shown_seqs(browser.get(EXPLORER, {"kind": "ledger."})) == [2, 1, 0]
    assert shown_seqs(browser.get(EXPLORER, {"kind": "ledger.transf"})) == [], "a kind without '.' is exact"
    assert shown_seqs(browser.get(EXPLORER, {"actor": a})) == [2]
    assert shown_seqs(browser.get(EXPLORER, {"actor": "system", "seq_min": 1})) == [1]
    assert shown_seqs(browser.get(EXPLORER, {"seq_min": 1, "seq_max": 1})) == [1]
    assert shown_seqs(browser.get(EXPLORER, {"seq_max": 0})) == [0]
    page = browser.get(EXPLORER, {"kind": "marketplace."}).content.decode()
    assert "No entries match these filters." in page


@pytest.mark.parametrize(
    "query",
    [
        {"seq_min": "abc"},
        {"seq_min": "-1"},
        {"seq_min": "2", "seq_max": "1"},
        {"seq_max": "99999999999999999999999999"},
        {"kind": "'; DROP TABLE ledger_entry; --"},
        {"kind": "x" * 500},
        {"actor": "user 1"},
    ],
)
def test_bad_filter_input_gives_a_message_not_a_500(browser, ledger, query):
    response = browser.get(EXPLORER, query)
    assert response.status_code == 200
    page = response.content.decode()
    assert "The filter was ignored." in page
    assert 'class="message error"' in page
    assert shown_seqs(response) == [2, 1, 0]


def test_a_bad_page_number_shows_a_page_not_an_error(browser, ledger):
    for page in ("zzz", "-3", "999"):
        response = browser.get(EXPLORER, {"page": page})
        assert response.status_code == 200


def test_the_explorer_pages_by_fifty_and_keeps_the_filters_in_its_links(browser, alice):
    for _ in range(55):
        mint(f"user:{alice.pk}", 1)
    first = browser.get(EXPLORER)
    assert shown_seqs(first) == list(range(54, 4, -1))
    assert "page 1 of 2" in first.content.decode()
    second = browser.get(EXPLORER, {"page": 2})
    assert shown_seqs(second) == [4, 3, 2, 1, 0]
    assert 'data-live="0"' in second.content.decode(), "only the first page takes new entries"
    filtered = browser.get(EXPLORER, {"kind": "ledger.mint", "seq_max": 52}).content.decode()
    assert "page 1 of 2" in filtered
    assert "?kind=ledger.mint&amp;seq_max=52&amp;page=2" in filtered


def test_the_explorer_does_not_query_per_entry(browser, alice, django_assert_max_num_queries):
    for _ in range(60):
        mint(f"user:{alice.pk}", 1)
    with django_assert_max_num_queries(7):
        assert len(shown_seqs(browser.get(EXPLORER))) == 50
    with django_assert_max_num_queries(8):
        assert len(shown_seqs(browser.get(EXPLORER, {"kind": "ledger.mint"}))) == 50


# ---------------------------------------------------------------------------------------------------- one entry


def test_an_entry_page_shows_every_field_and_verifies_it(browser, ledger):
    a, b = ledger
    entry = Entry.objects.get(seq=2)
    page = entry_page(browser, 2)
    assert "✔ VERIFIED" in page and "NOT VERIFIED" not in page
    assert "not yet in a checkpoint" in page
    for text in (
        "ledger.transfer",
        a,
        entry.key_id,
        bytes(entry.prev_hash).hex(),
        bytes(entry.entry_hash).hex(),
        bytes(entry.leaf_hash).hex(),
        "-250.00 tokens",
        "+250.00 tokens",
        "&quot;postings&quot;",
    ):
        assert text in page, text
    assert b in page
    assert 'href="/ledger/entries/1/"' in page, "a link to the previous entry"
    assert 'href="/ledger/entries/3/"' not in page, "no next entry yet"
    assert f"?actor={a.replace(':', '%3A')}" in page, "all entries by this actor"


def test_after_a_checkpoint_the_entry_page_shows_its_verified_inclusion_proof(browser, ledger):
    checkpoint = services.checkpoint_create()
    assert checkpoint is not None and checkpoint.tree_size == 3
    proof = selectors.inclusion_proof(seq=1, tree_size=3)
    page = entry_page(browser, 1)
    assert "✔ VERIFIED" in page
    assert "not yet in a checkpoint" not in page
    assert bytes(checkpoint.root_hash).hex() in page
    assert proof.proof and all(h.hex() in page for h in proof.proof)
    assert "the entry is leaf 1 of the signed checkpoint of 3 entries" in page
    assert 'class="badge ok">verified' in page


def test_an_entry_changed_in_the_database_is_not_verified(browser, ledger):
    a, b = ledger
    services.checkpoint_create()
    stolen = [{"account": a, "amount": -2_500}, {"account": b, "amount": 2_500}]
    Entry.objects.filter(seq=2).update(payload={"postings": stolen})
    page = entry_page(browser, 2)
    assert "✘ NOT VERIFIED: entry hash: the content hashes to" in page
    assert "the entry&#x27;s leaf does not lead to the root of checkpoint 3" in page
    assert "✔ VERIFIED" in entry_page(browser, 1), "its neighbours still verify"


def test_an_entry_with_a_forged_signature_or_a_broken_link_is_not_verified(browser, ledger):
    Entry.objects.filter(seq=1).update(signature=bytes(64))
    assert "NOT VERIFIED: platform signature: the signature is not valid" in entry_page(browser, 1)
    Entry.objects.filter(seq=0).update(entry_hash=bytes(32))
    page = entry_page(browser, 1)
    assert "NOT VERIFIED: chain link: prev_hash is not the hash of entry 0" in page


def test_an_entry_signed_by_its_actor_shows_that_signature_checked(browser, alice):
    private_key, pem = ed25519_keypair()
    key = public_key_register(actor=alice, name="laptop", key_text=pem)
    actor, kind, payload = f"user:{alice.pk}", "ledger.note", {"text": "signed by alice"}
    statement = chain.actor_statement(actor=actor, kind=kind, payload=payload)
    with transaction.atomic():
        entry = services.entry_append(
            kind=kind, actor=actor, payload=payload, actor_key_id=key.key_id,
            actor_signature=private_key.sign(statement),
        )  # fmt: skip
    page = entry_page(browser, entry.seq)
    assert "✔ VERIFIED" in page
    assert f"valid Ed25519 signature by {actor}&#x27;s key {key.key_id}" in page
    Entry.objects.filter(seq=entry.seq).update(actor_signature=bytes(64))
    assert "NOT VERIFIED: actor signature: the signature is not valid" in entry_page(browser, entry.seq)


def test_an_unknown_entry_is_a_404(browser, ledger):
    assert browser.get("/ledger/entries/99/").status_code == 404


# ---------------------------------------------------------------------------------------------------- wallet


def test_the_profile_shows_the_balance_and_the_entries_that_touch_the_account(browser, alice, bob, mallory):
    a, b, m = f"user:{alice.pk}", f"user:{bob.pk}", f"user:{mallory.pk}"
    organization = OrganizationFactory(name="Acme")
    MembershipFactory(organization=organization, user=alice)
    mint(a, 12_345)
    mint(b, 10_000)
    mint(m, 10_000)
    transfer(b, a, 1_000)  # bob is the actor: it still touches alice's account
    mint(f"org:{organization.pk}", 70_000)
    page = browser.get(PROFILE).content.decode()
    assert text_of(page, "wallet-balance") == "133.45 tokens"
    assert "Acme" in page and "700.00 tokens" in page
    wallet = page[page.index('data-testid="wallet-entries"') :]
    wallet = wallet[: wallet.index("</ul>")]
    assert re.findall(r'href="/ledger/entries/(\d+)/"', wallet) == ["3", "0"]
    assert "+10.00 tokens" in wallet and "+123.45 tokens" in wallet


def test_the_wallet_lists_only_the_last_ten_entries(browser, alice):
    for _ in range(12):
        mint(f"user:{alice.pk}", 100)
    page = browser.get(PROFILE).content.decode()
    wallet = page[page.index('data-testid="wallet-entries"') :]
    seqs = re.findall(r'href="/ledger/entries/(\d+)/"', wallet[: wallet.index("</ul>")])
    assert seqs == [str(s) for s in range(11, 1, -1)]


def test_the_faucet_gives_tokens_once_a_day(browser, alice):
    response = browser.post(FAUCET, {"next": PROFILE}, follow=True)
    assert response.redirect_chain[-1][0] == PROFILE
    page = response.content.decode()
    assert "1,000.00 tokens added to your wallet (entry #0)." in page
    assert text_of(page, "wallet-balance") == "1,000.00 tokens"
    page = browser.post(FAUCET, {"next": PROFILE}, follow=True).content.decode()
    assert "you have used the faucet today" in page
    assert text_of(page, "wallet-balance") == "1,000.00 tokens"
    assert Entry.objects.count() == 1


def test_a_closed_faucet_says_so(browser, settings):
    settings.LEDGER_FAUCET_AMOUNT = 0
    page = browser.post(FAUCET, follow=True).content.decode()
    assert "the faucet is closed on this site" in page
    assert not Entry.objects.exists()


def test_the_faucet_does_not_redirect_off_site(browser):
    response = browser.post(FAUCET, {"next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == PROFILE
    assert browser.get(EXPLORER).status_code == 200


def test_the_faucet_refuses_get(browser):
    assert browser.get(FAUCET).status_code == 405


def test_the_dashboard_shows_the_balance_and_a_faucet_button(browser, alice):
    mint(f"user:{alice.pk}", 4_200)
    page = browser.get("/").content.decode()
    assert text_of(page, "dashboard-balance") == "42.00 tokens"
    assert 'data-testid="dashboard-faucet"' in page
    response = browser.post(FAUCET, {"next": "/"})
    assert response["Location"] == "/"


# ---------------------------------------------------------------------------------------------------- ops


def test_the_ops_page_shows_the_ledger_head_and_checkpoint_age_to_staff(client, staff, ledger):
    client.force_login(staff)
    page = client.get("/ops/").content.decode()
    assert text_of(page, "ops-ledger-size") == "3"
    assert text_of(page, "ops-checkpoint-age") == "none"
    assert "3 not yet covered" in page
    checkpoint = services.checkpoint_create()
    Checkpoint.objects.filter(pk=checkpoint.pk).update(created_at=checkpoint.created_at.replace(year=2020))
    page = client.get("/ops/").content.decode()
    head = LedgerHead.objects.get(pk=1)
    assert bytes(head.head_hash).hex() in page
    assert head.active_key_id in page
    assert re.fullmatch(r"\d+ years?(, \d+ months?)? ago", text_of(page, "ops-checkpoint-age"))
    assert "covers 3 entries" in page and "not yet covered" not in page
    assert text_of(page, "ops-supply") == "1,500.00 tokens"
    assert Account.objects.count() == 3 and ">3</div>" in page
    assert "is Celery beat running?" not in page


def test_the_ops_page_warns_when_entries_wait_too_long_for_a_checkpoint(client, staff, ledger, settings):
    client.force_login(staff)
    settings.LEDGER_CHECKPOINT_SECONDS = 300
    assert "is Celery beat running?" not in client.get("/ops/").content.decode()
    Entry.objects.filter(seq=0).update(created_at=Entry.objects.get(seq=0).created_at.replace(year=2020))
    page = client.get("/ops/").content.decode()
    assert "3 not yet covered" in page and "is Celery beat running?" in page


# ---------------------------------------------------------------------------------------------------- admin


@pytest.fixture
def every_ledger_row(alice, bob, ledger):
    a, b = ledger
    with transaction.atomic():
        escrow = services.escrow_open(payer=a, payee=b, amount=100, actor=a, condition="delivery")
    checkpoint = services.checkpoint_create()
    organization = OrganizationFactory(name="Witnesses Inc")
    witness = Witness.objects.create(
        organization=organization, name="witness.example/w1", public_key=bytes(32), key_id="00000000",
        verifier_key="witness.example/w1+00000000+AAAA",
    )  # fmt: skip
    cosignature = Cosignature.objects.create(
        checkpoint=checkpoint, witness=witness, timestamp=1, line="— w1 AAAA\n"
    )
    return {
        Entry: Entry.objects.get(seq=0),
        MerkleNode: MerkleNode.objects.first(),
        Checkpoint: checkpoint,
        Cosignature: cosignature,
        SigningKey: SigningKey.objects.first(),
        LedgerHead: LedgerHead.objects.get(pk=1),
        Account: Account.objects.get(name=a),
        Escrow: escrow,
        Witness: witness,
    }


def test_the_ledger_admin_pages_render_for_staff_and_refuse_every_change(client, staff, every_ledger_row):
    client.force_login(staff)
    for model, row in every_ledger_row.items():
        name = f"admin:ledger_{model._meta.model_name}"
        assert client.get(reverse(f"{name}_changelist")).status_code == 200, model
        assert client.get(reverse(f"{name}_changelist"), {"q": "1"}).status_code == 200, model
        change = reverse(f"{name}_change", args=[row.pk])
        assert client.get(change).status_code == 200, model
        assert client.get(reverse(f"{name}_add")).status_code == 403, model
        assert client.post(reverse(f"{name}_delete", args=[row.pk]), {"post": "yes"}).status_code == 403, (
            model
        )
        if model is not Witness:
            assert client.post(change, {}).status_code == 403, model
    entry = every_ledger_row[Entry]
    page = client.get(reverse("admin:ledger_entry_change", args=[entry.pk])).content.decode()
    assert bytes(entry.entry_hash).hex() in page
    assert (
        Entry.objects.count() == 4
        and Account.objects.get(name=every_ledger_row[Account].name).balance == 74_900
    )


def test_staff_may_switch_a_witness_off_but_not_rename_it(client, staff, every_ledger_row):
    witness = every_ledger_row[Witness]
    client.force_login(staff)
    change = reverse("admin:ledger_witness_change", args=[witness.pk])
    response = client.post(change, {"name": "renamed", "active": ""})
    assert response.status_code == 302
    witness.refresh_from_db()
    assert witness.active is False and witness.name == "witness.example/w1"


def test_non_staff_cannot_open_the_ledger_admin(client, mallory, every_ledger_row):
    client.force_login(mallory)
    response = client.get(reverse("admin:ledger_entry_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


# ---------------------------------------------------------------------------------------------------- live


def session_headers(user) -> list[tuple[bytes, bytes]]:
    browser = Client()
    browser.force_login(user)
    return [
        (b"origin", b"http://localhost"),
        (b"cookie", f"sessionid={browser.cookies['sessionid'].value}".encode()),
    ]


@pytest.mark.django_db(transaction=True)
def test_the_explorer_websocket_sends_entries_appended_after_connecting(alice):
    headers = session_headers(alice)
    mint(f"user:{alice.pk}", 100)

    async def receive() -> list[dict]:
        communicator = WebsocketCommunicator(application, "/ws/ledger/", headers=headers)
        connected, _ = await communicator.connect()
        assert connected
        assert await communicator.receive_nothing(timeout=0.3), "entries before connecting are on the page"
        await database_sync_to_async(mint)(f"user:{alice.pk}", 2_500)
        await database_sync_to_async(mint)(f"user:{alice.pk}", 300)
        messages = [await communicator.receive_json_from(timeout=5) for _ in range(2)]
        assert await communicator.receive_nothing(timeout=0.5), "each entry is sent once"
        await communicator.disconnect()
        return messages

    first, second = run_async(receive())
    assert first["type"] == "entry" and first["entry"]["seq"] == 1
    assert first["entry"]["amount"] == f"25.00 tokens: issuance → user:{alice.pk}"
    assert first["entry"]["url"] == "/ledger/entries/1/"
    assert second["entry"]["seq"] == 2


@pytest.mark.django_db(transaction=True)
def test_the_explorer_websocket_first_sends_what_the_page_missed(alice):
    headers = session_headers(alice)
    for amount in (100, 200, 300):
        mint(f"user:{alice.pk}", amount)

    async def receive() -> list[int]:
        communicator = WebsocketCommunicator(application, "/ws/ledger/?after=0", headers=headers)
        connected, _ = await communicator.connect()
        assert connected
        seqs = [(await communicator.receive_json_from(timeout=5))["entry"]["seq"] for _ in range(2)]
        await communicator.send_json_to({"type": "refresh"})
        assert await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()
        return seqs

    assert run_async(receive()) == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_the_explorer_websocket_streams_to_anonymous_visitors_too(alice):
    mint(f"user:{alice.pk}", 100)

    async def receive() -> dict:
        communicator = WebsocketCommunicator(
            application, "/ws/ledger/?after=-1", headers=[(b"origin", b"http://localhost")]
        )
        connected, _ = await communicator.connect()
        assert connected
        message = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return message

    assert run_async(receive())["entry"]["seq"] == 0
