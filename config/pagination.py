from rest_framework.pagination import PageNumberPagination


class LoupePagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


def paginate(request, queryset, serializer_class, *, view=None):
    paginator = LoupePagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)
