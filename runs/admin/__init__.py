"""The runs app's admins (found by Django's admin autodiscovery, as runs.admin), by role:

    base        what the history admins share: capped counts, cheap date levels, filters
    history     runs, steps and errors (read-only), with the run now / cancel actions
    records     record changes and problems (read-only)
    operations  per-pipeline settings, API tokens, alert notifications
"""

from runs.admin import history, operations, records  # noqa: F401  (importing registers the admins)
