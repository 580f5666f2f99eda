"""Issue 10's data pages: buying through a confirmation, a draft that follows its statistics job, the analysis
form by kind, the new-listing form, and the column statistics table."""

import re
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client

from ledger.models import Account
from marketplace import services
from marketplace.models import Dataset, License
from platform_site.jobs.services import job_execute
from tests.conftest import api_as
from tests.ledger.helpers import fund
from tests.marketplace.test_pages import CSV, client_for, make_listing, messages_of

pytestmark = pytest.mark.django_db


def confirmation(client: Client, dataset: Dataset, tier: str = "download") -> str:
    response = client.get(f"/data/{dataset.pk}/buy/?tier={tier}")
    assert response.status_code == 200
    return response.content.decode()


# ---------------------------------------------------------------------------------------------------- buying


def test_the_buy_button_leads_to_a_confirmation_not_a_purchase(alice, bob):
    dataset = make_listing(alice)
    fund(f"user:{bob.pk}", 50_000)
    html = client_for(bob).get(f"/data/{dataset.pk}/").content.decode()
    assert f'href="/data/{dataset.pk}/buy/?tier=download" data-testid="buy-download"' in html
    assert f'href="/data/{dataset.pk}/buy/?tier=compute" data-testid="buy-compute"' in html
    confirmation(client_for(bob), dataset)
    assert not License.objects.exists()


def test_the_confirmation_shows_tier_price_terms_balance_and_balance_after(alice, bob):
    dataset = make_listing(alice)
    fund(f"user:{bob.pk}", 50_000)
    html = confirmation(client_for(bob), dataset)
    assert re.search(r'data-testid="buy-tier">Download', html)
    assert 'data-testid="buy-price">100.00 tokens<' in html
    assert 'data-testid="buy-balance">500.00 tokens<' in html
    assert 'data-testid="buy-after">400.00 tokens<' in html
    # The terms in words, as on the listing.
    assert "Commercial use</dt><dd>not allowed" in html and "365 days from purchase" in html
    assert 'name="csrfmiddlewaretoken"' in html and 'data-testid="buy-confirm-button"' in html


def test_the_compute_confirmation_names_the_privacy_budget(alice, bob):
    dataset = make_listing(alice)
    fund(f"user:{bob.pk}", 50_000)
    html = confirmation(client_for(bob), dataset, "compute")
    assert (
        'data-testid="buy-price">40.00 tokens<' in html and 'data-testid="buy-after">460.00 tokens<' in html
    )
    assert "ε = 10 for your analyses" in html


def test_confirming_buys_the_tier_and_charges_the_price(alice, bob):
    dataset = make_listing(alice)
    fund(f"user:{bob.pk}", 50_000)
    client = client_for(bob)
    response = client.post(f"/data/{dataset.pk}/buy/", {"tier": "download"}, follow=True)
    assert response.redirect_chain[-1][0] == f"/data/{dataset.pk}/"
    assert "You bought download access for 100.00 tokens" in " ".join(messages_of(response))
    assert License.objects.get().buyer == bob
    # The next confirmation of the other tier starts from the balance left.
    assert 'data-testid="buy-balance">400.00 tokens<' in confirmation(client, dataset, "compute")


def test_confirming_needs_the_csrf_token(alice, bob):
    dataset = make_listing(alice)
    fund(f"user:{bob.pk}", 50_000)
    client = Client(enforce_csrf_checks=True)
    client.force_login(bob)
    assert client.post(f"/data/{dataset.pk}/buy/", {"tier": "download"}).status_code == 403
    assert not License.objects.exists()


def test_too_little_balance_is_said_in_words_with_links_to_the_wallet_and_the_faucet(alice, bob):
    dataset = make_listing(alice)
    html = confirmation(client_for(bob), dataset)
    assert "You have 0.00 tokens; this costs 100.00 tokens." in html
    assert 'data-testid="buy-after">-100.00 tokens<' in html
    assert 'action="/ledger/faucet/"' in html and 'data-testid="buy-faucet"' in html
    assert 'name="next" value="/data/' in html  # the faucet brings bob back to the confirmation
    assert 'href="/accounts/profile/" data-testid="buy-wallet"' in html
    assert 'data-testid="buy-confirm-button"' not in html
    assert f"user:{bob.pk}" not in html


def test_a_refused_purchase_never_shows_the_internal_account_name(alice, bob):
    dataset = make_listing(alice)
    fund(f"user:{bob.pk}", 1_000)
    response = client_for(bob).post(f"/data/{dataset.pk}/buy/", {"tier": "compute"}, follow=True)
    html = response.content.decode()
    assert messages_of(response) == ["Not bought: You have 10.00 tokens; this costs 40.00 tokens."]
    assert f"user:{bob.pk}" not in html and 'data-testid="buy-faucet"' in html
    assert not License.objects.exists()


def test_anonymous_visitors_are_sent_to_log_in_before_the_confirmation(alice):
    dataset = make_listing(alice)
    response = Client().get(f"/data/{dataset.pk}/buy/?tier=download")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")


def test_the_owner_is_not_offered_buying(alice):
    dataset = make_listing(alice)
    client = client_for(alice)
    html = client.get(f"/data/{dataset.pk}/").content.decode()
    assert 'data-testid="buy-download"' not in html and 'data-testid="buy-compute"' not in html
    response = client.get(f"/data/{dataset.pk}/buy/?tier=download", follow=True)
    assert response.redirect_chain[-1][0] == f"/data/{dataset.pk}/"
    assert messages_of(response) == ["You own this dataset."]


def test_a_tier_already_held_or_unknown_is_not_offered_again(alice, bob):
    dataset = make_listing(alice)
    fund(f"user:{bob.pk}", 50_000)
    services.license_purchase(buyer=bob, dataset=dataset, tier="download")
    client = client_for(bob)
    response = client.get(f"/data/{dataset.pk}/buy/?tier=download", follow=True)
    assert messages_of(response) == ["This access is not on sale to you."]
    response = client.get(f"/data/{dataset.pk}/buy/?tier=gold", follow=True)
    assert (
        response.status_code == 200 and "gold is not one of the available choices" in messages_of(response)[0]
    )


# ---------------------------------------------------------------------------------------------------- live draft


def test_a_draft_polls_its_state_until_the_statistics_are_ready_then_offers_publish(alice):
    dataset = services.dataset_create(
        owner=alice, title="Draft", description="", terms_preset="research", price_download=1_000
    )
    version = services.dataset_version_upload(
        dataset=dataset, actor=alice, upload=SimpleUploadedFile("incomes.csv", CSV)
    )
    client = client_for(alice)
    html = client.get(f"/data/{dataset.pk}/").content.decode()
    assert f'data-poll="/data/{dataset.pk}/state/"' in html and "updates by itself" in html
    assert 'data-testid="publish"' not in html and "js/marketplace.js" in html
    state = client.get(f"/data/{dataset.pk}/state/").json()
    assert state == {"version": 1, "status": "processing", "error": "", "can_publish": False}

    job_execute(job_id=version.stats_job_id, worker="test")

    state = client.get(f"/data/{dataset.pk}/state/").json()
    assert state == {"version": 1, "status": "ready", "error": "", "can_publish": True}
    html = client.get(f"/data/{dataset.pk}/").content.decode()
    assert "data-poll" not in html and 'data-testid="publish"' in html and 'data-testid="stats-table"' in html


def test_a_failed_statistics_job_reports_its_reason(alice):
    dataset = services.dataset_create(
        owner=alice, title="Draft", description="", terms_preset="research", price_download=1_000
    )
    version = services.dataset_version_upload(
        dataset=dataset, actor=alice, upload=SimpleUploadedFile("data.csv", b"a,b\n1,2,3\n")
    )
    job_execute(job_id=version.stats_job_id, worker="test")
    version.refresh_from_db()
    client = client_for(alice)
    state = client.get(f"/data/{dataset.pk}/state/").json()
    assert state["status"] == "failed" and state["error"] == version.error and not state["can_publish"]
    assert 'data-testid="stats-error"' in client.get(f"/data/{dataset.pk}/").content.decode()


def test_only_the_owner_may_read_a_listings_state(alice, mallory):
    dataset = make_listing(alice, publish=False)
    assert client_for(mallory).get(f"/data/{dataset.pk}/state/").status_code == 404
    published = make_listing(alice, title="On sale")
    assert client_for(mallory).get(f"/data/{published.pk}/state/").status_code == 404
    response = Client().get(f"/data/{dataset.pk}/state/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


# ---------------------------------------------------------------------------------------------------- forms


def test_the_analysis_form_puts_each_kinds_options_in_a_fieldset_marked_with_its_kind(alice):
    dataset = make_listing(alice)
    html = client_for(alice).get(f"/data/{dataset.pk}/").content.decode()
    form = html[html.index('data-testid="analysis-form"') :]
    assert re.search(r'<fieldset data-kind="kmeans"[^>]*><legend>k-means</legend>', form)
    assert re.search(r'<fieldset data-kind="dbscan"[^>]*><legend>DBSCAN</legend>', form)
    assert '<fieldset data-kind=""><legend>Preprocessing</legend>' in form
    # Without the script every fieldset is shown: none is hidden by the server.
    assert not re.search(r"<fieldset[^>]*(hidden|disabled)", form[: form.index("</form>")])


def test_the_new_listing_form_groups_the_prices_puts_the_file_last_and_explains_the_presets(alice):
    html = client_for(alice).get("/data/new/").content.decode()
    names = re.findall(r'<(?:input|select|textarea)[^>]* name="(\w+)"', html[html.index("new-listing") :])
    names = [n for n in names if n != "csrfmiddlewaretoken"]
    assert names[-1] == "file"
    assert names.index("price_compute") == names.index("price_download") + 1
    prices = html[html.index('data-testid="prices"') : html.index("</fieldset>")]
    assert 'name="price_download"' in prices and 'name="price_compute"' in prices
    assert (
        "<strong>Research</strong>: no commercial use; no redistribution; attribution required; no models "
        "trained from it; for 365" in html
    )
    assert "<strong>Open</strong>: commercial use allowed; redistribution allowed" in html
    assert (
        "<strong>Commercial</strong>: commercial use allowed; no redistribution; attribution required; "
        "models may be trained from it; perpetual" in html
    )
    assert "choose the file again" not in html


def test_after_a_refused_post_the_form_says_plainly_that_the_file_must_be_chosen_again(alice):
    response = client_for(alice).post(
        "/data/new/",
        {"title": "", "terms_preset": "research", "price_download": "10",
         "file": SimpleUploadedFile("incomes.csv", CSV)},
    )  # fmt: skip
    html = response.content.decode()
    assert response.status_code == 200 and not Dataset.objects.exists()
    assert "choose the file again: a browser does not keep a chosen file" in html
    assert "Choose the file again." in html


# ---------------------------------------------------------------------------------------------------- statistics


def test_the_statistics_show_three_top_values_on_one_line_and_numbers_in_one_format(alice):
    csv = b"n,city\n" + b"".join(
        f"{i * 1.2345},{['Oslo', 'Bergen', 'Turku', 'Lyon', 'Porto'][i % 5]}\n".encode() for i in range(100)
    )
    dataset = services.dataset_create(
        owner=alice, title="Cities", description="", terms_preset="open", price_download=1_000
    )
    version = services.dataset_version_upload(
        dataset=dataset, actor=alice, upload=SimpleUploadedFile("cities.csv", csv)
    )
    job_execute(job_id=version.stats_job_id, worker="test")
    html = client_for(alice).get(f"/data/{dataset.pk}/").content.decode()
    table = html[html.index('data-testid="stats-table"') : html.index("</table>")]
    top = re.search(r'data-testid="top-values">(.*?)</td>', table, re.S).group(1)
    assert top.startswith("5 distinct · most frequent:") and top.count("<code>") == 3 and "2 more" in top
    assert '<span class="col-type">numeric</span>' in table
    # Four significant digits, no exponent: the mean of 1.2345 * (0..99) is 61.1078 → 61.11.
    assert '<td class="num">61.11</td>' in table


def test_a_purchase_is_refused_when_the_offer_changed_after_its_confirmation(alice, bob):
    """The confirmation sends back the price, the terms' hash and (compute) the ε it showed: an owner who
    raises the price, changes the terms or lowers ε meanwhile sells nothing on the old page."""
    dataset = make_listing(alice)
    fund(f"user:{bob.pk}", 50_000)
    client = client_for(bob)
    html = confirmation(client, dataset)
    shown = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', html))
    assert shown["price"] == "10000" and re.fullmatch(r"[0-9a-f]{64}", shown["terms_hash"])
    Dataset.objects.filter(pk=dataset.pk).update(price_download=40_000)  # the owner, meanwhile
    response = client.post(f"/data/{dataset.pk}/buy/", shown, follow=True)
    assert "the offer changed: the price is now 400.00 tokens, not 100.00 tokens" in " ".join(
        messages_of(response)
    )

    shown = dict(
        re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', confirmation(client, dataset))
    )
    services.dataset_derived_models_set(dataset=dataset, actor=alice, allowed=True)
    response = client.post(f"/data/{dataset.pk}/buy/", shown, follow=True)
    assert "the terms of use were changed" in " ".join(messages_of(response))

    html = confirmation(client, dataset, "compute")
    shown = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', html))
    assert shown["privacy_budget"] == "10.00"
    services.dataset_privacy_budget_set(dataset=dataset, actor=alice, budget=Decimal("0.50"))
    response = client.post(f"/data/{dataset.pk}/buy/", shown, follow=True)
    assert "the privacy budget is now ε 0.50, not ε 10.00" in " ".join(messages_of(response))
    for junk in ({"price": "-1"}, {"terms_hash": "x"}, {"privacy_budget": "1e9"}):
        response = client.post(f"/data/{dataset.pk}/buy/", {**shown, **junk}, follow=True)
        assert response.status_code == 200 and not License.objects.exists(), junk
    assert not License.objects.exists() and Account.objects.get(name=f"user:{bob.pk}").balance == 50_000

    api = api_as(bob)
    url = f"/api/data/datasets/{dataset.pk}/buy/"
    response = api.post(url, {"tier": "compute", "privacy_budget": "10"}, format="json")
    assert response.status_code == 409 and "ε 0.50, not ε 10.00" in response.json()["detail"]
    assert api.post(url, {"tier": "download", "privacy_budget": "1"}, format="json").status_code == 400
    response = api.post(url, {"tier": "compute", "price": 4_000, "privacy_budget": "0.5"}, format="json")
    assert response.status_code == 201
    call_command("verify_ledger", "--quiet")
