"""The read-only JSON API (plus one action: start a run), described in runs/openapi.yaml.

Authentication: a staff session (the dashboard's login) or a per-user token
sent as `Authorization: Bearer <token>` (created, given an optional expiry and
revoked in the admin, stored hashed; the token's user must be an active staff
member). A session POST is CSRF-checked; a token POST is not (a browser never
sends the header on its own, which is what CSRF protection is about).
Authorization is Django's model permissions, like the admin: `runs.view_run`
for everything, `runs.view_runerror` for a run's errors and for the open
problems (record history: a problem carries a record's latest error message),
`runs.trigger_run` to start a run (for every record, or `{"only": [...]}`).

The contract: every answer under /api/ is JSON, errors as {"error": "..."}
(unknown paths and ids, undeclared methods with `Allow`, and unexpected
exceptions included). Every parameter is checked exactly as openapi.yaml
declares it (patterns, formats, ranges, enums), so what the spec accepts the
server accepts and what it rejects the server answers with 400 and a message
that names the parameter. tests/runs/api/ and tests/runs/test_api_contract.py
hold both to it.

Lists use keyset (cursor) pagination: no COUNT(*) over history tables and
stable pages while new runs arrive.

The modules, by role:
    auth         the gate: authentication, CSRF, permissions, JSON errors (api_view, not_found)
    params       query parameters and the trigger's body, checked as the spec declares
    pagination   keyset cursors and `next` links
    serializers  the JSON shapes of runs, steps, errors and problems
    views        the endpoints that syncsite/urls.py routes to (re-exported here)
"""

from runs.api.auth import ApiError, api_view, not_found
from runs.api.views import OPENAPI_FILE, openapi, pipelines, problems, run_detail, run_errors, runs, trigger

__all__ = ["OPENAPI_FILE", "ApiError", "api_view", "not_found", "openapi", "pipelines", "problems", "run_detail",
           "run_errors", "runs", "trigger"]
