"""Support-set and classification pages. Each resolves its objects through the same selectors as
the API, so a page answers a stranger with the same plain 404 as a missing id."""


from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from albums.roles import Role, role_at_least
from albums.views import resolve_for_user, with_album
from config.errors import ApplicationError
from search.rag import labeling, selectors, services
from search.rag.models import SupportSet


class SupportSetForm(forms.ModelForm):
    class Meta:
        model = SupportSet
        fields = ["name", "description", "patch_source", "support_resolution", "patch_size", "use_vlm", "flag_true_label"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}
        labels = {"use_vlm": "Use a vision-language model", "patch_source": "Patches from",
                  "flag_true_label": "Class that means flag = true"}
        help_texts = {
            "support_resolution": "Example images are resized to this square before they are cut into patches.",
            "patch_size": "Patch side in pixels at that resolution (448 / 64 gives 7 × 7 patches; at least 32).",
            "use_vlm": "Ask the server's vision-language model to decide and explain, when one is configured.",
            "flag_true_label": "For RAG Vision Engine clients that send a flagKey: without a vision-language model, "
                               "their boolean flag is true when this class is decided. Blank: the flag is null.",
        }


class SupportClassForm(forms.Form):
    label = forms.CharField(max_length=100)


def with_support_set(min_role: str = Role.VIEWER):
    return resolve_for_user(
        selectors.support_set_get_for_user, kwarg="support_set_id", min_role=min_role, not_found="Support set not found."
    )


def _form_changes(form) -> dict:
    return {name: form.cleaned_data[name] for name in form.changed_data}


@with_album()
def support_set_list_page(request, album):
    can_edit = role_at_least(album.role, Role.EDITOR)
    form = SupportSetForm(request.POST or None)
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied("Editors create support sets.")
        if form.is_valid():
            try:
                created = services.support_set_create(album=album, user=request.user, **form.cleaned_data)
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                return redirect("rag:detail", support_set_id=created.pk)
    sets = selectors.support_set_list_for_user(user=request.user, album_id=album.pk).order_by("name", "id")
    context = {"album": album, "sets": sets, "form": form, "can_edit": can_edit,
               "is_owner": role_at_least(album.role, Role.OWNER)}
    return render(request, "rag/list.html", context)


@with_support_set()
def support_set_page(request, support_set):
    can_edit = role_at_least(support_set.role, Role.EDITOR)
    settings_form = SupportSetForm(request.POST or None, instance=support_set, prefix="set")
    class_form = SupportClassForm(request.POST or None, prefix="class")
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied("Editors change support sets.")
        action = request.POST.get("action")
        form = class_form if action == "add-class" else settings_form
        if form.is_valid():
            try:
                if action == "add-class":
                    services.support_class_create(support_set=support_set, label=form.cleaned_data["label"])
                else:
                    services.support_set_update(support_set=support_set, **_form_changes(form))
                    messages.success(request, "Settings saved; examples are re-patched in the background if needed.")
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                return redirect("rag:detail", support_set_id=support_set.pk)
    album = support_set.album
    album.role = support_set.role
    context = {
        "album": album,
        "support_set": support_set,
        "classes": selectors.support_classes_with_images(support_set=support_set),
        "status": selectors.support_set_status(support_set=support_set),
        "settings_form": settings_form,
        "class_form": class_form,
        "can_edit": can_edit,
        "is_owner": role_at_least(support_set.role, Role.OWNER),
        "vlm": settings.LOUPE_VLM,
    }
    return render(request, "rag/detail.html", context)


@require_POST
@with_support_set(Role.EDITOR)
def support_set_delete_page(request, support_set):
    album_id = support_set.album_id
    services.support_set_delete(support_set=support_set)
    messages.success(request, f"Deleted support set {support_set.name}.")
    return redirect("rag:list", album_id=album_id)


@with_support_set()
def classify_page(request, support_set):
    album = support_set.album
    album.role = support_set.role
    context = {
        "album": album,
        "support_set": support_set,
        "classes": selectors.support_classes_with_images(support_set=support_set),
        "is_owner": role_at_least(support_set.role, Role.OWNER),
        "vlm": settings.LOUPE_VLM if support_set.use_vlm else "",
    }
    return render(request, "rag/classify.html", context)


@require_GET
@with_support_set()
def review_page(request, support_set):
    """Labels of the set, lowest margin first, reviewed with the keyboard; everything through the
    labeling API (search/rag/api/labels.py), which checks the roles again."""
    album = support_set.album
    album.role = support_set.role
    classes = selectors.support_classes_with_images(support_set=support_set)
    context = {
        "album": album,
        "support_set": support_set,
        "classes": classes,
        "class_labels": [c.label for c in classes],
        "can_edit": role_at_least(support_set.role, Role.EDITOR),
        "vlm": settings.LOUPE_VLM if support_set.use_vlm else "",
        # The set's labeling jobs, newest first, to review one job's scope (a selection, a search result).
        "label_jobs": labeling.label_jobs_recent(support_set=support_set),
    }
    return render(request, "rag/review.html", context)
