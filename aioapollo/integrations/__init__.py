"""Optional integrations with web frameworks; each lives behind its own extra.

- :mod:`aioapollo.integrations.starlette` (``pip install 'aioapollo[fastapi]'``): a lifespan
  that starts the client in each worker and a dependency that hands it to endpoints, for
  Starlette and FastAPI apps.
"""
