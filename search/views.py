"""Search and image pages. They render the form and the shell; results come from the API with the
session's credentials, so pages and API share one membership check and one search path."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import render

from albums.errors import RoleRequiredError
from albums.exif_info import image_info
from albums.roles import Role, role_at_least
from albums.hooks import index_summary, label_sets
from albums.selectors import image_get_for_user
from albums.views import with_album
from config.errors import NotFoundError
from encoders.model_ids import parse_model_id
from encoders.pooling import REGIONS
from encoders.registry import TEXT_CONCEPTS, default_min_score, spec_modalities, text_search
from search.query_encoding import spec_of_model_id
from workers.selectors import job_list_for_user


@with_album()
def album_search_page(request, album):
    model_spec = spec_of_model_id(album.active_model_id) if album.active_model_id else album.encoder_spec
    summary = index_summary(album=album)
    context = {
        "album": album,
        "is_owner": role_at_least(album.role, Role.OWNER),
        "text_enabled": "text" in spec_modalities(model_spec),
        # EfficientNet-Lite0: words name ImageNet concepts (encoders/concepts.py), not free text.
        "text_by_concepts": text_search(model_spec) == TEXT_CONCEPTS,
        "model_spec": model_spec,
        "default_min_score": album.min_search_score if album.min_search_score is not None else default_min_score(model_spec),
        # An album photo as the query ("search with this photo"); anything but an id is ignored here
        # and the page's search says what is wrong with it.
        "query_image_id": image_id if (image_id := request.GET.get("image_id", "")).isascii() and image_id.isdigit() else "",
        # A regions album answers box queries: the page lets the user draw one on the query image.
        "regions_enabled": bool(album.active_model_id) and parse_model_id(album.active_model_id).pooling == REGIONS,
        "summary": summary,
        "label_sets": label_sets(album=album),  # the Adjust panel's "Only label"
    }
    return render(request, "search/search.html", context)


@login_required
def image_page(request, image_id: int):
    try:
        image = image_get_for_user(user=request.user, image_id=image_id)
    except RoleRequiredError as exc:  # pragma: no cover - viewers may see every image of their albums
        raise PermissionDenied(exc.message) from None
    except NotFoundError:
        raise Http404("Image not found.") from None
    info = image_info(exif=image.exif, width=image.width, height=image.height, taken_at=image.taken_at,
                      camera=image.camera)
    return render(request, "search/image.html", {"image": image, "album": image.album, "info": info,
                                                   "can_edit": role_at_least(image.role, Role.EDITOR)})


@login_required
def jobs_page(request):
    jobs = list(job_list_for_user(user=request.user).select_related("album").order_by("-created_at", "-id")[:200])
    return render(request, "workers/jobs.html", {"jobs": jobs, "flower_url": settings.FLOWER_URL,
                                                 "any_active": any(job.is_active for job in jobs)})


@with_album()
def album_duplicates_page(request, album):
    return render(request, "search/duplicates.html", {"album": album, "is_owner": role_at_least(album.role, Role.OWNER)})


@with_album()
def album_map_page(request, album):
    # The map and its states come from the map API; the page only knows whether there is anything to place.
    return render(request, "search/map.html", {
        "album": album, "is_owner": role_at_least(album.role, Role.OWNER), "summary": index_summary(album=album),
        "can_edit": role_at_least(album.role, Role.EDITOR), "indexed": bool(album.active_model_id),
    })
