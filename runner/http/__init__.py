"""``runner serve``: the client API over HTTP, events as Server-Sent Events, a web page.

- ``auth``: bearer tokens, stored hashed in Redis
- ``fanout``: one reader per followed run, broadcasting to every SSE subscriber
- ``app``: the Starlette app (JSON endpoints, SSE, the page)
- ``remote``: the client over HTTP, chosen by ``open_client`` when RUNNER_API_URL is set
- ``static/``: the page (one HTML file with vanilla JS; no build step)

Everything goes through :class:`runner.client.Client`; nothing here builds a key name
except through ``runner.keys``.
"""
