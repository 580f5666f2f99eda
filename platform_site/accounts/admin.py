from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from platform_site.accounts.models import User


@admin.register(User)
class PlatformUserAdmin(UserAdmin):
    pass
