"""The site's 400/403/404/500 pages: in its layout, with the right status, JSON under /api/, and a 500 that needs
neither the request nor the database."""

import pytest
from django.contrib.staticfiles import finders
from django.db import connection
from django.test import Client

from platform_site.home import error_pages

pytestmark = pytest.mark.django_db

LAYOUT = '<header class="topbar">'


@pytest.fixture
def failing(settings):
    settings.ROOT_URLCONF = "tests.platform_site.home.error_urls"


@pytest.fixture
def client_that_sees_500s():
    client = Client()
    client.raise_request_exception = False
    return client


def test_an_unknown_page_gets_the_styled_404_not_the_debug_list_of_urls(client, settings):
    assert settings.DEBUG is False

    response = client.get("/no/such/page/")

    page = response.content.decode()
    assert response.status_code == 404
    assert LAYOUT in page and 'data-testid="error-page"' in page
    assert "There is nothing here" in page and "/no/such/page/" in page
    assert "URLconf" not in page and "admin/" not in page


def test_a_missing_object_gets_the_styled_404_with_its_message(client):
    response = client.get("/ledger/entries/424242/")

    assert response.status_code == 404
    assert LAYOUT in response.content.decode() and "No entry 424242" in response.content.decode()


def test_an_unknown_api_endpoint_gets_json_not_a_page(client):
    response = client.get("/api/no/such/endpoint/")

    assert response.status_code == 404
    assert response.json() == {"detail": "no such endpoint", "code": "not_found"}


def test_permission_denied_in_a_page_gets_the_styled_403(client, bob):
    client.force_login(bob)

    response = client.get("/ops/")

    page = response.content.decode()
    assert response.status_code == 403
    assert LAYOUT in page and "You may not open this page" in page
    assert 'data-testid="nav-profile">bob<' in page, "the 403 page knows who is logged in"


def test_a_domain_permission_error_in_a_page_shows_its_message(failing, client):
    response = client.get("/test/forbidden/")

    page = response.content.decode()
    assert response.status_code == 403
    assert "Only the owner publishes" in page and "Log in" in page


def test_a_bug_in_a_page_gets_the_styled_500(failing, client_that_sees_500s):
    response = client_that_sees_500s.get("/test/boom/")

    page = response.content.decode()
    assert response.status_code == 500
    assert LAYOUT in page and "Something went wrong on our side" in page
    assert "a bug" not in page and "Traceback" not in page


def test_a_bug_in_an_api_view_gets_a_json_500(failing, client_that_sees_500s):
    response = client_that_sees_500s.get("/api/test/boom/")

    assert response.status_code == 500
    assert response.json() == {"detail": "server error", "code": "server_error"}


def test_the_500_page_renders_without_a_request_or_the_database(monkeypatch):
    def no_database(*args, **kwargs):
        raise AssertionError("the 500 page touched the database")

    with connection.execute_wrapper(no_database):
        response = error_pages.server_error(None)

    assert response.status_code == 500 and LAYOUT in response.content.decode()


def test_the_500_page_falls_back_to_a_fixed_page_when_its_template_fails(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the template is broken")

    monkeypatch.setattr(error_pages.loader, "render_to_string", broken)

    response = error_pages.server_error(None)

    assert response.status_code == 500
    assert "Something went wrong on our side" in response.content.decode()


def test_a_bad_request_gets_the_styled_400(failing, client):
    response = client.get("/test/suspicious/")

    assert response.status_code == 400
    assert LAYOUT in response.content.decode() and "could not be understood" in response.content.decode()


def test_a_host_the_site_does_not_serve_gets_the_styled_400(client):
    response = client.get("/", HTTP_HOST="evil.example")

    assert response.status_code == 400 and "could not be understood" in response.content.decode()


def test_a_form_sent_without_its_csrf_token_gets_the_styled_403(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post("/ledger/faucet/")

    assert response.status_code == 403
    assert LAYOUT in response.content.decode() and "This form has expired" in response.content.decode()


def test_every_page_links_the_favicon_and_it_is_served(client):
    page = client.get("/").content.decode()

    assert 'rel="icon" href="/static/favicon.svg"' in page
    assert finders.find("favicon.svg") and finders.find("favicon.ico")
    redirect = client.get("/favicon.ico")
    assert redirect.status_code == 301 and redirect["Location"] == "/static/favicon.ico"
