"""The Laposta API v2 client: members of a list, created or updated (upsert) and deleted."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from django.conf import settings

from pipelines.http import ApiClient, ApiError, ServiceDownError, json_or_none

if TYPE_CHECKING:
    import httpx

#: Laposta wants the IP address a subscription came from; these come from the club's own records.
SIGNUP_IP = "127.0.0.1"


class LapostaClient(ApiClient):
    """Laposta API v2: HTTP basic auth with the API key as user, form-encoded bodies."""

    service = "Laposta"
    credentials_setting = "LAPOSTA_API_KEY"
    base_url_setting = "LAPOSTA_BASE_URL"

    def __init__(self, *, api_key: str, base_url: str, **kwargs: Any) -> None:
        super().__init__(base_url, auth=(api_key, ""), secrets=(api_key,), **kwargs)

    @classmethod
    def from_settings(cls, **kwargs: Any) -> LapostaClient:
        return cls(api_key=settings.LAPOSTA_API_KEY, base_url=settings.LAPOSTA_BASE_URL, **kwargs)

    def upsert_member(self, list_id: str, email: str, custom_fields: dict[str, Any]) -> dict:
        """Create the member, or update the one with this email (201/200); returns the member."""
        data: dict[str, Any] = {
            "list_id": list_id,
            "ip": SIGNUP_IP,
            "email": email,
            "options[upsert]": "true",
            "options[suppress_email_notification]": "true",
        }
        for name, value in custom_fields.items():
            if isinstance(value, list):
                data[f"custom_fields[{name}][]"] = value
            else:
                data[f"custom_fields[{name}]"] = value
        return self._member(self.request("POST", "member", data=data))

    def delete_member(self, list_id: str, member: str) -> dict | None:
        """Delete by member id or email; None when Laposta does not know it (already gone)."""
        try:
            response = self.request("DELETE", f"member/{quote(member, safe='@')}", params={"list_id": list_id})
        except ApiError as exc:
            if exc.status == 400 and str(exc.code) == "203":
                return None
            raise
        return self._member(response)

    def get_members(self, list_id: str, *, state: str | None = None) -> list[dict]:
        params = {"list_id": list_id, **({"state": state} if state else {})}
        body = json_or_none(self.request("GET", "member", params=params)) or {}
        return [entry.get("member", entry) for entry in body.get("data", [])]

    def _member(self, response: httpx.Response) -> dict:
        body = json_or_none(response)
        if isinstance(body, dict) and isinstance(body.get("member"), dict):
            return body["member"]
        # A 2xx without a member is not Laposta's API answering: stop, don't
        # remember members as sent.
        raise ServiceDownError(f"{self.service} answered HTTP {response.status_code} without a member: "
                               f"is {self.base_url_setting} the API's address?", status=response.status_code)

    def api_message(self, response: httpx.Response) -> str:
        body = json_or_none(response)
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and error.get("message"):
            extra = [f"code {error['code']}"] if error.get("code") is not None else []
            if error.get("parameter"):
                extra.append(f"parameter {error['parameter']}")
            return f"{error['message']}" + (f" ({', '.join(extra)})" if extra else "")
        return super().api_message(response)

    def api_code(self, response: httpx.Response) -> Any:
        body = json_or_none(response)
        error = body.get("error") if isinstance(body, dict) else None
        return error.get("code") if isinstance(error, dict) else None
