from rest_framework.pagination import PageNumberPagination


class LoupePagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


def paginate(request, queryset, serializer_class, *, view=None, context=None):
    """A page of `queryset` in the shape {count, next, previous, results}. A view that paginates sets
    `pagination_class = LoupePagination`: that is also what tells drf-spectacular to document the page
    shape (and the `page`/`page_size` parameters) rather than a bare array. `context(rows)`: the
    serializer's context for the page's rows (what the page reads in one query, not one per row)."""
    paginator = (getattr(view, "pagination_class", None) or LoupePagination)()
    page = paginator.paginate_queryset(queryset, request, view=view)
    extra = context(page) if context is not None else {}
    return paginator.get_paginated_response(serializer_class(page, many=True, context=extra).data)
