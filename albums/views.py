"""Server-rendered pages. Each checks membership through the same selectors as the API."""

from functools import wraps
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from albums import hooks, selectors, services
from albums.errors import RoleRequiredError
from albums.forms import AlbumCreateForm, AlbumSettingsForm, MemberAddForm
from albums.models import ApiToken
from albums.roles import Role, role_at_least
from albums.tokens import api_token_create, api_token_revoke
from config.errors import ApplicationError, NotFoundError
from config.params import parse_id


def resolve_for_user(select, *, kwarg: str, min_role: str, not_found: str):
    """A view decorator: the URL's `kwarg` id becomes the object `select(user=…, <kwarg>=…, min_role=…)`
    gives the signed-in user; missing and foreign objects are both a plain 404, a member below the
    role a 403."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapper(request, *args, **kwargs):
            object_id = kwargs.pop(kwarg)
            try:
                found = select(user=request.user, min_role=min_role, **{kwarg: object_id})
            except RoleRequiredError as exc:
                raise PermissionDenied(exc.message) from None
            except NotFoundError:
                raise Http404(not_found) from None
            return view(request, found, *args, **kwargs)

        return wrapper

    return decorator


def with_album(min_role: str = Role.VIEWER):
    return resolve_for_user(selectors.album_get_for_user, kwarg="album_id", min_role=min_role, not_found="Album not found.")


@login_required
def album_list(request):
    form = AlbumCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            album = services.album_create(owner=request.user, **form.cleaned_data)
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            return redirect("albums:detail", album_id=album.pk)
    albums = list(selectors.album_list_for_user(user=request.user).order_by("name", "id"))
    covers = selectors.album_covers(album_ids=[album.pk for album in albums])
    for album in albums:
        album.cover_ids = covers.get(album.pk, [])
    return render(request, "albums/list.html", {"albums": albums, "form": form})


def _filter_query(*, status: str | None, sort: str, wanted: hooks.LabelFilter) -> str:
    params = {"status": status, "sort": sort, "support_set": wanted.support_set_id, "label": wanted.label,
              "label_state": wanted.state, "margin_below": wanted.margin_below}
    return urlencode({name: value for name, value in params.items() if value not in (None, "")})


@with_album()
def album_detail(request, album):
    status = request.GET.get("status") or None
    sort = request.GET.get("sort")
    sort = sort if sort in selectors.IMAGE_SORTS else selectors.DEFAULT_IMAGE_SORT  # a page shows the default for junk
    images = selectors.image_list(album=album, status=status if status in ("pending", "indexed", "failed") else None,
                                  sort=sort)
    wanted = hooks.LabelFilter.from_params(request.GET, strict=False)
    try:
        images = hooks.images_labeled(album=album, images=images, wanted=wanted)
    except ApplicationError:  # another album's set, an unknown state: the page shows every photo
        wanted = hooks.LabelFilter()
    page = Paginator(images, 60).get_page(request.GET.get("page"))
    labels = hooks.image_labels(album=album, image_ids=[image.pk for image in page])
    for image in page:
        image.labels = labels.get(image.pk, [])
    summary = hooks.index_summary(album=album)
    context = {
        "album": album,
        "summary": summary,
        "failed_rebuild": summary.last_failed_rebuild,
        "page": page,
        "status": status,
        "sort": sort,
        "label_filter": wanted,
        "label_sets": hooks.label_sets(album=album) if not request.htmx else [],
        # What the grid's onward links carry besides the page, so the next page keeps every filter.
        "filter_query": _filter_query(status=status, sort=sort, wanted=wanted),
        "can_edit": role_at_least(album.role, Role.EDITOR),
        "is_owner": role_at_least(album.role, Role.OWNER),
        "import_enabled": bool(settings.LOUPE_IMPORT_ROOTS),  # no roots: folder import is off
    }
    template = "albums/_grid.html" if request.htmx else "albums/detail.html"
    return render(request, template, context)


@with_album(Role.OWNER)
def album_settings(request, album):
    form = AlbumSettingsForm(request.POST or None, instance=album)
    if request.method == "POST" and form.is_valid():
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in form.cleaned_data}
        try:
            services.album_update(album=album, user=request.user, **changes)
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, "Settings saved.")
            return redirect("albums:settings", album_id=album.pk)
    return render(request, "albums/settings.html", {"album": album, "form": form, "is_owner": True})


@with_album()
def album_members(request, album):
    is_owner = role_at_least(album.role, Role.OWNER)
    form = MemberAddForm(request.POST or None)
    if request.method == "POST":
        if not is_owner:
            raise PermissionDenied("Only owners change members.")
        if form.is_valid():
            try:
                services.album_member_add(album=album, **form.cleaned_data)
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, f"{form.cleaned_data['username']} is now a {form.cleaned_data['role']}.")
                return redirect("albums:members", album_id=album.pk)
    members = selectors.membership_list(album=album)
    return render(request, "albums/members.html", {"album": album, "members": members, "form": form, "is_owner": is_owner})


@require_POST
@with_album()
def album_member_remove(request, album, user_id: int):
    if user_id != request.user.pk and not role_at_least(album.role, Role.OWNER):
        raise PermissionDenied("Only owners remove other members.")
    try:
        services.album_member_remove(album=album, user_id=user_id)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("albums:members", album_id=album.pk)
    if user_id == request.user.pk:
        messages.success(request, f"You left {album.name}.")
        return redirect("albums:list")
    return redirect("albums:members", album_id=album.pk)


@require_POST
@with_album(Role.OWNER)
def album_delete(request, album):
    services.album_delete(album=album)
    messages.success(request, f"Deleted {album.name}.")
    return redirect("albums:list")


@login_required
def api_tokens(request):
    """Create, list and revoke named API tokens. A new key is shown once: the create redirects (so a
    reload makes no second token) and the page after it takes the key out of the session."""
    new_key, status = None, 200
    if request.method == "POST":
        if "revoke" in request.POST:
            try:
                token_id = parse_id(request.POST["revoke"], name="revoke")
            except ApplicationError as exc:
                messages.error(request, exc.message)
                status = 400
            else:
                if api_token_revoke(user=request.user, token_id=token_id):
                    messages.success(request, "Token revoked.")
                return redirect("albums:tokens")
        else:
            _, request.session["new_api_key"] = api_token_create(user=request.user, name=request.POST.get("name", ""))
            return redirect("albums:tokens")
    else:
        new_key = request.session.pop("new_api_key", None)
    tokens = ApiToken.objects.filter(user=request.user)
    return render(request, "albums/tokens.html", {"tokens": tokens, "new_key": new_key}, status=status)
