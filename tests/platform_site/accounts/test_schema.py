from django.urls import include, path
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

from platform_site.accounts import urls as accounts_urls


def accounts_schema() -> dict:
    generator = SchemaGenerator(patterns=[path("api/accounts/", include(accounts_urls.api_urlpatterns))])
    return generator.get_schema(request=None, public=True)


def test_the_accounts_schema_is_valid_and_has_no_warnings():
    GENERATOR_STATS.reset()
    schema = accounts_schema()
    validate_schema(schema)
    # Private, but the only place drf-spectacular keeps what it warned about.
    assert dict(GENERATOR_STATS._warn_cache) == {}
    assert dict(GENERATOR_STATS._error_cache) == {}


def test_the_schema_documents_token_authentication_and_every_error_status():
    schema = accounts_schema()
    assert schema["components"]["securitySchemes"]["tokenAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["tokenAuth"]["description"],
    }
    paths = schema["paths"]
    members = paths["/api/accounts/organizations/{organization_id}/members/"]["post"]
    assert {"tokenAuth": []} in members["security"]
    assert set(members["responses"]) == {"200", "400", "401", "403", "404"}
    assert set(paths["/api/accounts/keys/"]["post"]["responses"]) == {
        "201",
        "400",
        "401",
        "403",
        "404",
        "409",
    }
    assert set(paths["/api/accounts/organizations/"]["post"]["responses"]) == {"201", "400", "401", "409"}
    assert "key" in schema["components"]["schemas"]["ApiTokenCreated"]["properties"]
    assert "PaginatedApiTokenList" in schema["components"]["schemas"]
