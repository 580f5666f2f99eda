"""OpenAPI description of the site's token authentication; imported by AccountsConfig.ready()."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "platform_site.accounts.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        # HTTP bearer, so that the docs page sends `Authorization: Bearer <key>`; `Token <key>` works as well.
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "An API token created on your profile page or with POST /api/accounts/tokens/, sent as "
                "`Authorization: Token <key>` or `Authorization: Bearer <key>`."
            ),
        }
