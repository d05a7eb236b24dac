"""Using postroom from a web app: `open_client` here; FastAPI/Starlette in `.asgi`.

`workers.integrations.asgi` needs the `web` extra (`pip install postroom[web]`); this module
needs nothing beyond postroom itself, for aiohttp apps and scripts.
"""

from workers.integrations.client import open_client

__all__ = ["open_client"]
