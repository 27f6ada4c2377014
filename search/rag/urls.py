from django.urls import path

from search.rag import views

app_name = "rag"

urlpatterns = [
    path("albums/<int:album_id>/support-sets/", views.support_set_list_page, name="list"),
    path("support-sets/<int:support_set_id>/", views.support_set_page, name="detail"),
    path("support-sets/<int:support_set_id>/delete/", views.support_set_delete_page, name="delete"),
    path("support-sets/<int:support_set_id>/classify/", views.classify_page, name="classify"),
    path("support-sets/<int:support_set_id>/review/", views.review_page, name="review"),
]
