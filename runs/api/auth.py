"""The API's gate: authentication (staff session or bearer token), CSRF for
sessions, model permissions, and the JSON shape of every error (see runs.api)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from functools import wraps

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import Resolver404, resolve
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from runs.models import ApiToken

logger = logging.getLogger("runs.api")

#: last_used_at is written at most this often per token (a GET should not write per request).
TOUCH_EVERY = timedelta(minutes=1)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="syncsite"'
    return response


def authenticate(request: HttpRequest):
    """Return (user, via_token) or raise ApiError(401)."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, raw = header.partition(" ")
        raw = raw.strip()
        if scheme.lower() != "bearer" or not raw:
            raise ApiError(401, "Malformed Authorization header; send 'Authorization: Bearer <token>'.")
        token = ApiToken.objects.select_related("user").filter(token_hash=ApiToken.hash(raw)).first()
        if token is None:
            raise ApiError(401, "Invalid token.")
        if token.revoked_at is not None:
            raise ApiError(401, "This token was revoked.")
        now = timezone.now()
        if token.is_expired(now):
            raise ApiError(401, "This token has expired; ask an administrator for a new one.")
        if not (token.user.is_active and token.user.is_staff):
            raise ApiError(401, "The token's user is not an active staff member.")
        if token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, True
    # AuthenticationMiddleware (settings.MIDDLEWARE) sets request.user on every request.
    user = request.user
    if user.is_authenticated and user.is_active and user.is_staff:
        return user, False
    raise ApiError(401, "Authentication required: a staff session or 'Authorization: Bearer <token>'.")


def _not_called(request: HttpRequest) -> HttpResponse:
    raise AssertionError("the CSRF check never calls the view or the next middleware")


def _csrf_failure(request: HttpRequest) -> str | None:
    check = CsrfViewMiddleware(_not_called)
    check.process_request(request)
    response = check.process_view(request, _not_called, (), {})
    return None if response is None else "CSRF check failed: send the csrftoken cookie and X-CSRFToken header."


def api_view(*, methods: tuple[str, ...] = ("GET",), permissions: tuple[str, ...] = ("runs.view_run",)) -> Callable:
    """Method check (405 with Allow), authentication (401), CSRF for sessions and
    the model permissions (403), then the view; every outcome is JSON."""

    def decorate(view: Callable) -> Callable:
        @csrf_exempt  # checked below for sessions only
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            if request.method not in methods:
                method = str(request.method)[:20]
                response = error_response(405, f"Method {method} not allowed here; "
                                               f"use {' or '.join(methods)}.")
                response["Allow"] = ", ".join(methods)
                return response
            try:
                user, via_token = authenticate(request)
                if not via_token and request.method not in SAFE_METHODS:
                    failure = _csrf_failure(request)
                    if failure:
                        raise ApiError(403, failure)
                missing = [p for p in permissions if not user.has_perm(p)]
                if missing:
                    raise ApiError(403, f"Permission {', '.join(missing)} required; an administrator can grant it.")
                request.api_user = user  # type: ignore[attr-defined]  # for the view: who the token belongs to
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return error_response(exc.status, exc.message)
            except MultiPartParserError:  # read by the CSRF check of a session POST
                return error_response(400, "The multipart body could not be read; send JSON or form fields.")
            except Exception:
                # Logged with the traceback for the operator; the client gets the
                # documented JSON shape and nothing about the internals.
                logger.exception("API error: %s %s", request.method, request.path)
                return error_response(500, "Internal error; it was logged for the administrator.")

        return wrapper

    return decorate


@csrf_exempt
def not_found(request: HttpRequest, path: str = ""):
    """Any other path under /api/: a JSON 404 (never Django's HTML page), for every method."""
    message = f"No API endpoint at {request.path}."
    if not request.path.endswith("/"):
        try:
            match = resolve(request.path + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not not_found:
            message += f" Did you mean {request.path}/ ?"
    return error_response(404, message + " The endpoints are listed in /api/openapi.yaml.")
