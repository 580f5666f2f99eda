"""The opt-in preview: the first rows show on the listing and in the API only while the owner has it on."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from marketplace.models import Dataset, DatasetVersion
from tests.conftest import api_as
from tests.marketplace.test_pages import CSV, client_for, make_listing, messages_of

pytestmark = pytest.mark.django_db

PREVIEW = {
    "columns": ["age", "income", "city"],
    "rows": [["20", "30000", "Oslo"], ["21", None, "Zyxwvut-secret-town"]],
}


def with_preview(dataset: Dataset, *, enabled: bool, preview=PREVIEW) -> Dataset:
    DatasetVersion.objects.filter(dataset=dataset).update(preview=preview)
    Dataset.objects.filter(pk=dataset.pk).update(preview_enabled=enabled)
    return Dataset.objects.select_related("current_version").get(pk=dataset.pk)


def test_the_preview_is_hidden_on_the_page_and_in_the_api_unless_enabled(alice, bob):
    dataset = with_preview(make_listing(alice), enabled=False)
    for client in (Client(), client_for(bob), client_for(alice)):
        html = client.get(f"/data/{dataset.pk}/").content.decode()
        assert 'data-testid="preview-table"' not in html and "Zyxwvut" not in html
    detail = api_as(bob).get(f"/api/data/datasets/{dataset.pk}/").json()
    assert detail["preview"] is None and detail["preview_enabled"] is False
    listing = api_as(bob).get("/api/data/datasets/").json()["results"]
    assert "preview" not in listing[0]
    assert "Zyxwvut" not in api_as(bob).get("/api/data/datasets/").content.decode()


def test_an_enabled_preview_shows_the_first_rows_to_everyone(alice, bob):
    dataset = with_preview(make_listing(alice), enabled=True)
    html = Client().get(f"/data/{dataset.pk}/").content.decode()
    assert 'data-testid="preview-table"' in html
    assert "Zyxwvut-secret-town" in html and '<td class="missing">missing</td>' in html
    detail = api_as(bob).get(f"/api/data/datasets/{dataset.pk}/").json()
    assert detail["preview"] == PREVIEW
    listing = api_as(bob).get("/api/data/datasets/")
    assert "preview" not in listing.json()["results"][0] and b"Zyxwvut" not in listing.content, "detail only"


@pytest.mark.parametrize(
    "preview",
    [{"columns": ["a"]}, {"columns": ["a", "b"], "rows": [["1"]]}, ["not", "a", "dict"], {"rows": "x"}],
    ids=["no-rows", "ragged", "list", "rows-not-a-list"],
)
def test_a_malformed_preview_is_not_shown_and_breaks_nothing(alice, bob, preview):
    dataset = with_preview(make_listing(alice), enabled=True, preview=preview)
    response = Client().get(f"/data/{dataset.pk}/")
    assert response.status_code == 200 and 'data-testid="preview-table"' not in response.content.decode()
    assert api_as(bob).get(f"/api/data/datasets/{dataset.pk}/").json()["preview"] is None


def test_the_owner_turns_the_preview_on_and_off_from_the_page(alice):
    dataset = with_preview(make_listing(alice), enabled=False)
    client = client_for(alice)
    page = client.get(f"/data/{dataset.pk}/").content.decode()
    assert 'data-testid="preview-on"' in page
    response = client.post(f"/data/{dataset.pk}/preview/", {"enabled": "on"}, follow=True)
    assert "The preview of the first rows is shown on the listing." in messages_of(response)
    assert 'data-testid="preview-table"' in response.content.decode()
    assert Dataset.objects.get(pk=dataset.pk).preview_enabled is True
    response = client.post(f"/data/{dataset.pk}/preview/", {}, follow=True)
    assert "no row is shown" in " ".join(messages_of(response))
    assert 'data-testid="preview-table"' not in response.content.decode()
    assert Dataset.objects.get(pk=dataset.pk).preview_enabled is False


def test_only_the_owner_may_toggle_the_preview(alice, mallory):
    dataset = with_preview(make_listing(alice), enabled=False)
    url = f"/data/{dataset.pk}/preview/"
    response = client_for(mallory).post(url, {"enabled": "on"}, follow=True)
    assert "Not changed: only the owner turns the preview on or off." in messages_of(response)
    assert 'data-testid="preview-form"' not in response.content.decode()
    anonymous = Client().post(url, {"enabled": "on"})
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    assert client_for(alice).get(url).status_code == 405
    draft = make_listing(alice, title="Draft", publish=False)
    assert client_for(mallory).post(f"/data/{draft.pk}/preview/", {"enabled": "on"}).status_code == 404
    assert not Dataset.objects.filter(preview_enabled=True).exists()


def test_the_owner_toggles_the_preview_through_the_api_and_others_are_refused(alice, mallory, api):
    dataset = with_preview(make_listing(alice), enabled=False)
    url = f"/api/data/datasets/{dataset.pk}/"
    assert api_as(mallory).patch(url, {"preview_enabled": True}, format="json").status_code == 403
    assert api.patch(url, {"preview_enabled": True}, format="json").status_code in (401, 403)
    assert not Dataset.objects.get(pk=dataset.pk).preview_enabled
    bad = api_as(alice).patch(url, {"preview_enabled": "perhaps"}, format="json")
    assert bad.status_code == 400 and "preview_enabled" in bad.json()
    assert api_as(alice).patch(url, {}, format="json").status_code == 400
    on = api_as(alice).patch(url, {"preview_enabled": True}, format="json")
    assert on.status_code == 200 and on.json()["preview"] == PREVIEW
    off = api_as(alice).patch(url, {"preview_enabled": False}, format="json")
    assert off.status_code == 200 and off.json()["preview"] is None


def test_the_new_listing_form_has_the_preview_checkbox(alice):
    client = client_for(alice)
    assert 'name="preview_enabled"' in client.get("/data/new/").content.decode()
    client.post(
        "/data/new/",
        {
            "title": "Incomes", "terms_preset": "open", "price_download": "10", "preview_enabled": "on",
            "file": SimpleUploadedFile("incomes.csv", CSV),
        },
    )  # fmt: skip
    assert Dataset.objects.get().preview_enabled is True
