"""The demo: the embedded Apollo test server, a FastAPI app under uvicorn, one publish.

Starts `aioapollo.testing.ApolloTestServer`, serves `examples/fastapi_app.py` with uvicorn on
loopback, asks the app for its greeting, publishes a new greeting, and prints when the app
serves it. Exits 0 only if the change arrived.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import httpx
import uvicorn

from aioapollo.testing import ApolloTestServer

APP_ID = "demo-app"
sys.path.insert(0, str(Path(__file__).resolve().parent))


async def main() -> int:
    async with ApolloTestServer(hold_seconds=30) as apollo:
        apollo.publish(APP_ID, "application", {"greeting": "hello from Apollo"})
        os.environ.update(APP_ID=APP_ID, APOLLO_CONFIG_SERVICE=apollo.url)
        os.environ.setdefault("APOLLO_CACHE_FILE_ENABLE", "false")
        from fastapi_app import app

        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for this
            await asyncio.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}/greeting"
        print(f"Apollo test server: {apollo.url}   FastAPI app: {url}")
        async with httpx.AsyncClient() as http:
            print("before publish:", (await http.get(url)).json())
            published = time.perf_counter()
            apollo.publish(APP_ID, "application", {"greeting": "hot reloaded!"})
            print("published greeting='hot reloaded!'")
            ok = False
            deadline = published + 10
            while time.perf_counter() < deadline:
                body = (await http.get(url)).json()
                if body["greeting"] == "hot reloaded!":
                    elapsed = (time.perf_counter() - published) * 1000
                    print(f"after publish:  {body}  (seen after {elapsed:.0f} ms)")
                    ok = True
                    break
                await asyncio.sleep(0.01)
        server.should_exit = True
        await serving
    print("OK: the published change reached the app" if ok else "FAILED: change not seen")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
