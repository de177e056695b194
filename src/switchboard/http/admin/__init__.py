"""The admin API under ``/admin``: a FastAPI application, the terminal of the admin operation.

It runs behind the same stage chain as every other endpoint (authentication first), reached
through :class:`AdminBridge`, which hands it the authenticated principal and the already read,
already bounded body. The inference hot path never touches it. The schema is served at
``/admin/v1/openapi.json``, interactive docs at ``/docs``.
"""

from switchboard.http.admin.app import AdminServices, create_admin_app
from switchboard.http.admin.bridge import AdminBridge

__all__ = ["AdminBridge", "AdminServices", "create_admin_app"]
