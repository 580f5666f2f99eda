import base64

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from platform_site.accounts.models import ApiToken, Membership, Organization, PublicKey, User
from platform_site.accounts.selectors import (
    api_token_get_for_user,
    api_token_list_for_user,
    organization_get_for_user,
    organization_get_with_members,
    organization_list_for_user,
    public_key_get_for_user,
    public_key_list_for_user,
    user_get_with_memberships,
)
from platform_site.accounts.services import (
    api_token_create,
    api_token_revoke,
    membership_set,
    organization_create,
    public_key_register,
    public_key_revoke,
)
from platform_site.api import api_errors as errors
from platform_site.api import paginated_response


@extend_schema_serializer(component_name="OrganizationMember")
class MembershipOutputSerializer(serializers.ModelSerializer):
    user_id = serializers.IntegerField(source="user.id", read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)
    display_name = serializers.CharField(source="user.display_name", read_only=True)

    class Meta:
        model = Membership
        fields = ["user_id", "username", "display_name", "role", "joined_at"]


@extend_schema_serializer(component_name="Organization")
class OrganizationOutputSerializer(serializers.ModelSerializer):
    role = serializers.ChoiceField(
        choices=Membership.Role.choices, read_only=True, help_text="Your role in it."
    )
    member_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Organization
        fields = ["id", "name", "slug", "description", "created_at", "role", "member_count"]


@extend_schema_serializer(component_name="ApiToken")
class ApiTokenOutputSerializer(serializers.ModelSerializer):
    # A plain string, not an enum: an enum named "status" would collide with the jobs' in the schema.
    status = serializers.CharField(read_only=True, help_text="active, expired or revoked")

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at", "status"]


@extend_schema_serializer(component_name="PublicKey")
class PublicKeyOutputSerializer(serializers.ModelSerializer):
    public_key = serializers.SerializerMethodField(help_text="The raw 32 bytes, base64.")

    class Meta:
        model = PublicKey
        fields = [
            "id",
            "name",
            "algorithm",
            "key_id",
            "public_key",
            "user",
            "organization",
            "created_at",
            "revoked_at",
        ]

    def get_public_key(self, key: PublicKey) -> str:
        return base64.b64encode(bytes(key.raw)).decode()


@extend_schema_serializer(component_name="MeOrganization")
class MeOrganizationSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(source="organization.id", read_only=True)
    name = serializers.CharField(source="organization.name", read_only=True)
    slug = serializers.CharField(source="organization.slug", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "name", "slug", "role"]


class MeApi(APIView):
    @extend_schema_serializer(component_name="Me")
    class OutputSerializer(serializers.ModelSerializer):
        organizations = MeOrganizationSerializer(many=True, read_only=True, source="memberships")

        class Meta:
            model = User
            fields = ["id", "username", "email", "display_name", "organizations"]

    @extend_schema(
        summary="Who you are, and the organizations you belong to with your role in each",
        responses={200: OutputSerializer, **errors()},
    )
    def get(self, request: Request) -> Response:
        user = user_get_with_memberships(user_id=request.user.pk)
        return Response(self.OutputSerializer(user).data)


class ApiTokenListCreateApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema_serializer(component_name="ApiTokenCreateInput")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=ApiToken._meta.get_field("name").max_length)
        expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    @extend_schema_serializer(component_name="ApiTokenCreated")
    class OutputSerializer(ApiTokenOutputSerializer):
        key = serializers.CharField(read_only=True, help_text="The secret; shown this once, never again.")

        class Meta(ApiTokenOutputSerializer.Meta):
            fields = [*ApiTokenOutputSerializer.Meta.fields, "key"]

    @extend_schema(
        summary="Your API tokens", responses={200: ApiTokenOutputSerializer(many=True), **errors()}
    )
    def get(self, request: Request) -> Response:
        tokens = api_token_list_for_user(user=request.user)
        return paginated_response(
            request=request, view=self, queryset=tokens, serializer_class=ApiTokenOutputSerializer
        )

    @extend_schema(
        summary="Create an API token; the response carries its key, once",
        request=InputSerializer,
        responses={201: OutputSerializer, **errors(400)},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token, key = api_token_create(user=request.user, **data.validated_data)
        token = api_token_get_for_user(token_id=token.pk, user=request.user)
        token.key = key
        return Response(self.OutputSerializer(token).data, status=status.HTTP_201_CREATED)


class ApiTokenRevokeApi(APIView):
    @extend_schema(
        summary="Revoke one of your API tokens",
        request=None,
        responses={200: ApiTokenOutputSerializer, **errors(404)},
    )
    def post(self, request: Request, token_id: int) -> Response:
        token = api_token_get_for_user(token_id=token_id, user=request.user)
        api_token_revoke(token=token, actor=request.user)
        token = api_token_get_for_user(token_id=token_id, user=request.user)
        return Response(ApiTokenOutputSerializer(token).data)


class PublicKeyListRegisterApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema_serializer(component_name="PublicKeyRegisterInput")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=PublicKey._meta.get_field("name").max_length)
        public_key = serializers.CharField(
            max_length=4096, help_text="An Ed25519 public key: a PEM block, or the raw 32 bytes in base64."
        )
        organization = serializers.IntegerField(
            required=False,
            allow_null=True,
            default=None,
            help_text="Register for this organization (owners only).",
        )

    @extend_schema(
        summary="Your public keys and those of your organizations",
        responses={200: PublicKeyOutputSerializer(many=True), **errors()},
    )
    def get(self, request: Request) -> Response:
        keys = public_key_list_for_user(user=request.user)
        return paginated_response(
            request=request, view=self, queryset=keys, serializer_class=PublicKeyOutputSerializer
        )

    @extend_schema(
        summary="Register an Ed25519 public key for yourself or for an organization you own",
        request=InputSerializer,
        responses={201: PublicKeyOutputSerializer, **errors(400, 403, 404, 409)},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        organization_id = data.validated_data["organization"]
        organization = (
            organization_get_for_user(organization_id=organization_id, user=request.user)
            if organization_id is not None
            else None
        )
        key = public_key_register(
            actor=request.user,
            name=data.validated_data["name"],
            key_text=data.validated_data["public_key"],
            organization=organization,
        )
        return Response(PublicKeyOutputSerializer(key).data, status=status.HTTP_201_CREATED)


class PublicKeyRevokeApi(APIView):
    @extend_schema(
        summary="Revoke a public key: signatures made with it are no longer accepted",
        request=None,
        responses={200: PublicKeyOutputSerializer, **errors(403, 404)},
    )
    def post(self, request: Request, public_key_id: int) -> Response:
        key = public_key_get_for_user(public_key_id=public_key_id, user=request.user)
        key = public_key_revoke(key=key, actor=request.user)
        return Response(PublicKeyOutputSerializer(key).data)


class OrganizationListCreateApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema_serializer(component_name="OrganizationCreateInput")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=Organization._meta.get_field("name").max_length)
        description = serializers.CharField(required=False, allow_blank=True, default="")

    @extend_schema(
        summary="Organizations you belong to",
        responses={200: OrganizationOutputSerializer(many=True), **errors()},
    )
    def get(self, request: Request) -> Response:
        organizations = organization_list_for_user(user=request.user)
        return paginated_response(
            request=request, view=self, queryset=organizations, serializer_class=OrganizationOutputSerializer
        )

    @extend_schema(
        summary="Create an organization; you become its owner",
        request=InputSerializer,
        responses={201: OrganizationOutputSerializer, **errors(400, 409)},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        organization = organization_create(owner=request.user, **data.validated_data)
        organization = organization_get_for_user(organization_id=organization.pk, user=request.user)
        return Response(OrganizationOutputSerializer(organization).data, status=status.HTTP_201_CREATED)


class OrganizationDetailApi(APIView):
    @extend_schema_serializer(component_name="OrganizationDetail")
    class OutputSerializer(OrganizationOutputSerializer):
        members = MembershipOutputSerializer(many=True, read_only=True, source="memberships")

        class Meta(OrganizationOutputSerializer.Meta):
            fields = [*OrganizationOutputSerializer.Meta.fields, "members"]

    @extend_schema(
        summary="An organization you belong to, with its members",
        responses={200: OutputSerializer, **errors(404)},
    )
    def get(self, request: Request, organization_id: int) -> Response:
        organization = organization_get_with_members(organization_id=organization_id, user=request.user)
        return Response(self.OutputSerializer(organization).data)


class MembershipSetApi(APIView):
    @extend_schema_serializer(component_name="MembershipSetInput")
    class InputSerializer(serializers.Serializer):
        username = serializers.SlugRelatedField(
            slug_field="username", queryset=User.objects.filter(is_active=True)
        )
        role = serializers.ChoiceField(choices=Membership.Role.choices, default=Membership.Role.MEMBER)

    @extend_schema(
        summary="Add a member to an organization, or change their role (owners only)",
        request=InputSerializer,
        responses={200: MembershipOutputSerializer, **errors(400, 403, 404)},
    )
    def post(self, request: Request, organization_id: int) -> Response:
        organization = organization_get_for_user(organization_id=organization_id, user=request.user)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = membership_set(
            organization=organization,
            actor=request.user,
            user=data.validated_data["username"],
            role=data.validated_data["role"],
        )
        return Response(MembershipOutputSerializer(membership).data)
