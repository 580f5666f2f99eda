from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.validators import UnicodeUsernameValidator

from platform_site.accounts.models import ApiToken, Membership, Organization, PublicKey, User


class SignupForm(forms.Form):
    username = forms.CharField(
        max_length=150,
        validators=[UnicodeUsernameValidator()],
        help_text="Letters, digits and @ . + - _ only.",
        widget=forms.TextInput(attrs={"autocomplete": "username", "autofocus": True}),
    )
    email = forms.EmailField(required=False, help_text="Optional.")
    password1 = forms.CharField(
        label="Password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )
    password2 = forms.CharField(
        label="Password again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The rules the password validators apply (AUTH_PASSWORD_VALIDATORS), shown before the first failure.
        self.fields["password1"].help_text = password_validation.password_validators_help_text_html()

    def clean(self):
        cleaned = super().clean()
        if (
            cleaned.get("password1")
            and cleaned.get("password2")
            and cleaned["password1"] != cleaned["password2"]
        ):
            self.add_error("password2", "The two passwords differ.")
        return cleaned


class ApiTokenCreateForm(forms.Form):
    # Both profile forms have a "name" field: distinct ids keep the labels pointing at the right input.
    EXPIRY_CHOICES = [("", "Never"), ("30", "In 30 days"), ("90", "In 90 days"), ("365", "In a year")]

    name = forms.CharField(max_length=ApiToken._meta.get_field("name").max_length)
    expires_in_days = forms.TypedChoiceField(
        choices=EXPIRY_CHOICES, coerce=int, empty_value=None, required=False, label="Expires"
    )

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "token_%s")
        super().__init__(*args, **kwargs)


class PublicKeyRegisterForm(forms.Form):
    name = forms.CharField(max_length=PublicKey._meta.get_field("name").max_length)
    public_key = forms.CharField(
        label="Public key",
        max_length=4096,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text="An Ed25519 public key: a PEM block, or the raw 32 bytes in base64.",
    )
    organization = forms.ModelChoiceField(
        queryset=Organization.objects.none(),
        required=False,
        empty_label="Just me",
        help_text="Register the key for an organization you own instead of for yourself.",
    )

    def __init__(self, *args, owned_organizations=None, **kwargs):
        kwargs.setdefault("auto_id", "key_%s")
        super().__init__(*args, **kwargs)
        if owned_organizations is not None:
            self.fields["organization"].queryset = owned_organizations


class OrganizationCreateForm(forms.Form):
    name = forms.CharField(max_length=Organization._meta.get_field("name").max_length)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))


class MembershipAddForm(forms.Form):
    username = forms.ModelChoiceField(
        queryset=User.objects.filter(is_active=True),
        to_field_name="username",
        widget=forms.TextInput,
        error_messages={"invalid_choice": "There is no user named %(value)s."},
    )
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.MEMBER)


class MembershipRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)
