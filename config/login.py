"""The sign-in page, limited like the token endpoint: both exchange a password for a credential, so
guessing through the page must cost as much as guessing through the API. Both count against one
allowance per client address (the `auth` rate), in the shared Redis cache."""

from __future__ import annotations

import math

from django.contrib.auth import views as auth_views

from config.throttles import AuthRateThrottle


class ThrottledLoginView(auth_views.LoginView):
    def post(self, request, *args, **kwargs):
        throttle = AuthRateThrottle()
        if throttle.allow_request(request, self):
            return super().post(request, *args, **kwargs)
        wait = max(1, math.ceil(throttle.wait() or 1))
        # An unbound form: a bound one would check the password while rendering its errors.
        context = self.get_context_data(form=self.get_form_class()(request), throttled_seconds=wait)
        response = self.render_to_response(context, status=429)
        response["Retry-After"] = str(wait)
        return response
