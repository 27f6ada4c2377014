"""Support-set and classify pages: membership checked like the API, editors' controls only for editors."""

import pytest
from django.test import Client

from search.rag.models import SupportClass, SupportSet

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_an_editor_creates_a_set_and_a_class_from_the_pages(rag_album, alice):
    client = signed_in(alice)
    listing = client.get(f"/albums/{rag_album.pk}/support-sets/")
    assert listing.status_code == 200 and 'id="support-set-create"' in listing.content.decode()
    created = client.post(
        f"/albums/{rag_album.pk}/support-sets/",
        {"name": "surfaces", "patch_source": "tokens", "support_resolution": 448, "patch_size": 64, "use_vlm": "on"},
    )
    support_set = SupportSet.objects.get(name="surfaces")
    assert created.status_code == 302 and created["Location"] == f"/support-sets/{support_set.pk}/"
    client.post(f"/support-sets/{support_set.pk}/", {"action": "add-class", "class-label": "clean"})
    assert list(SupportClass.objects.filter(support_set=support_set).values_list("label", flat=True)) == ["clean"]
    page = client.get(f"/support-sets/{support_set.pk}/").content.decode()
    assert "clean" in page and "/api/v1/support-classes/" in page and "none configured (retrieval only)" in page


def test_settings_change_from_the_page_repatches(two_class_set, alice):
    client = signed_in(alice)
    response = client.post(
        f"/support-sets/{two_class_set['id']}/",
        {"action": "settings", "set-name": "cat or cup", "set-patch_source": "crops", "set-support_resolution": 224,
         "set-patch_size": 112, "set-use_vlm": "on"},
    )
    assert response.status_code == 302
    support_set = SupportSet.objects.get(pk=two_class_set["id"])
    assert (support_set.patch_source, support_set.patch_size, support_set.generation) == ("crops", 112, 2)


def test_classify_page_says_when_there_is_no_model(two_class_set, viewer_of):
    page = signed_in(viewer_of).get(f"/support-sets/{two_class_set['id']}/classify/").content.decode()
    assert 'id="classify-form"' in page and 'id="no-vlm"' in page
    assert f"/api/v1/support-sets/{two_class_set['id']}/classify/" in page


def test_viewers_see_no_editing_controls_and_cannot_post(two_class_set, viewer_of):
    client = signed_in(viewer_of)
    page = client.get(f"/support-sets/{two_class_set['id']}/").content.decode()
    assert "support-upload" not in page and 'id="class-add"' not in page and "remove class" not in page
    assert client.post(f"/support-sets/{two_class_set['id']}/", {"action": "add-class", "class-label": "x"}).status_code == 403
    assert client.post(f"/support-sets/{two_class_set['id']}/delete/").status_code == 403
    assert client.post(f"/albums/{two_class_set['album'].pk}/support-sets/", {"name": "v"}).status_code == 403


def test_strangers_get_404_on_every_page(two_class_set, bob):
    client = signed_in(bob)
    set_id = two_class_set["id"]
    for url in (f"/albums/{two_class_set['album'].pk}/support-sets/", f"/support-sets/{set_id}/",
                f"/support-sets/{set_id}/classify/"):
        assert client.get(url).status_code == 404
    assert client.post(f"/support-sets/{set_id}/delete/").status_code == 404
    assert SupportSet.objects.filter(pk=set_id).exists()


def test_the_support_set_form_speaks_plainly(alice, album):
    from search.rag.views import SupportSetForm

    form = SupportSetForm()
    assert form.fields["use_vlm"].label == "Use a vision-language model"
    assert "at least 32" in form.fields["patch_size"].help_text


def test_the_class_meaning_flag_true_is_set_from_the_settings_form(two_class_set, alice):
    client = signed_in(alice)
    page = client.get(f"/support-sets/{two_class_set['id']}/").content.decode()
    assert 'name="set-flag_true_label"' in page and "Class that means flag = true" in page
    response = client.post(
        f"/support-sets/{two_class_set['id']}/",
        {"action": "settings", "set-name": "cat or cup", "set-patch_source": "tokens", "set-support_resolution": 224,
         "set-patch_size": 32, "set-use_vlm": "on", "set-flag_true_label": "cup"},
    )
    assert response.status_code == 302
    support_set = SupportSet.objects.get(pk=two_class_set["id"])
    assert (support_set.flag_true_label, support_set.generation) == ("cup", 1)  # a decision rule: nothing re-patched


def test_the_review_page_is_linked_from_the_set_and_shows_controls_to_editors_only(two_class_set, alice, viewer_of, bob):
    set_id = two_class_set["id"]
    detail = signed_in(alice).get(f"/support-sets/{set_id}/").content.decode()
    assert f'href="/support-sets/{set_id}/review/"' in detail
    page = signed_in(alice).get(f"/support-sets/{set_id}/review/").content.decode()
    assert 'id="label-job"' in page and 'data-can-edit="1"' in page and "js/review.js" in page
    assert f"/api/v1/support-sets/{set_id}/labels/export?format=zip" in page
    assert '<script id="review-classes" type="application/json">["cat", "cup"]</script>' in page
    viewer_page = signed_in(viewer_of).get(f"/support-sets/{set_id}/review/").content.decode()
    assert 'id="label-job"' not in viewer_page and 'data-can-edit="0"' in viewer_page
    assert signed_in(bob).get(f"/support-sets/{set_id}/review/").status_code == 404
    assert signed_in(alice).post(f"/support-sets/{set_id}/review/").status_code == 405
