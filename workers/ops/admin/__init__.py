"""The admin API: an ASGI app (FastAPI) to watch and steer postroom's queues over HTTP.

`create_admin_app()` builds it; `postroom serve` runs it alone, and a web app can mount it
under a prefix (see app.py).
"""

from workers.ops.admin.app import create_admin_app
from workers.ops.admin.state import AdminState

__all__ = ["AdminState", "create_admin_app"]
