"""Shared by the API tests: the OpenAPI file as a response validator, and history builders."""

import re
from datetime import UTC, datetime, timedelta
from functools import cache
from urllib.parse import urlsplit

import yaml
from django.contrib.auth.models import Permission
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from runs.api import OPENAPI_FILE
from runs.models import RecordProblem, Run

T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
ENDPOINTS = ["/api/pipelines/", "/api/runs/", "/api/runs/1/", "/api/runs/1/errors/", "/api/problems/"]

# --- the OpenAPI file as a response validator ---------------------------------------


@cache
def spec() -> dict:
    return yaml.safe_load(OPENAPI_FILE.read_text())


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        *_, section, name = node["$ref"].split("/")
        node = spec()["components"][section][name]
    return node


def _operation(path: str, method: str) -> tuple[str, dict]:
    """The spec's path template matching a concrete request path."""
    for template, item in spec()["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return template, item[method.lower()]
    raise AssertionError(f"{method} {path} is not in runs/openapi.yaml")


def assert_matches_spec(response, method="GET"):
    path = urlsplit(response.wsgi_request.get_full_path()).path
    template, operation = _operation(path, method)
    responses = operation["responses"]
    assert str(response.status_code) in responses, f"{response.status_code} undocumented for {method} {template}"
    content = _resolve(responses[str(response.status_code)])["content"]
    assert response["Content-Type"].startswith("application/json") and "application/json" in content
    schema = content["application/json"]["schema"]
    registry = Registry().with_resource("urn:syncsite:openapi", Resource.from_contents(spec(), DRAFT202012))
    if "$ref" in schema:
        schema = {"$ref": "urn:syncsite:openapi" + schema["$ref"]}
    else:
        schema = {**schema, "$id": "urn:syncsite:inline"}
        schema = _absolutize(schema)
    Draft202012Validator(schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(
        response.json()
    )
    return response.json()


def _absolutize(node):
    if isinstance(node, dict):
        return {k: ("urn:syncsite:openapi" + v if k == "$ref" and v.startswith("#") else _absolutize(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_absolutize(v) for v in node]
    return node

def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="runs", codename__in=codenames))


def make_run(pipeline="clean", status="success", *, started_at=T0, **fields):
    return Run.objects.create(pipeline=pipeline, status=status, started_at=started_at,
                              finished_at=None if status == "running" else started_at + timedelta(seconds=5),
                              duration_ms=None if status == "running" else 5000, **fields)

def make_problem(identifier="AB0001", *, at=T0, pipeline="clean", resolved=False, **fields):
    return RecordProblem.objects.create(
        pipeline=pipeline, identifier=identifier, identifier_kind="knvb_id", message="bad date",
        first_seen_at=at, last_seen_at=at, resolved_at=at if resolved else None,
        resolution="fixed" if resolved else "", **fields)
