from django.contrib import admin

from albums.models import Album, AlbumMembership, ApiToken, Image


class MembershipInline(admin.TabularInline):
    model = AlbumMembership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Album)
class AlbumAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "encoder_spec", "generation", "created_at"]
    search_fields = ["name", "owner__username"]
    list_select_related = ["owner"]
    inlines = [MembershipInline]


@admin.register(AlbumMembership)
class AlbumMembershipAdmin(admin.ModelAdmin):
    list_display = ["album", "user", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["album__name", "user__username"]
    list_select_related = ["album", "user"]


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["original_name", "album", "status", "width", "height", "mime", "created_at"]
    list_filter = ["status", "mime"]
    search_fields = ["original_name", "sha256", "album__name"]
    list_select_related = ["album"]
    readonly_fields = ["sha256", "bytes", "exif", "created_at", "updated_at"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created_at", "last_used_at"]
    search_fields = ["name", "user__username"]
    readonly_fields = ["prefix", "key_hash", "created_at", "last_used_at"]
