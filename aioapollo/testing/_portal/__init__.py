"""The portal side of the test server: apps, clusters, working items, releases with ids, locks,
gray branches and OpenAPI consumers, over the same :class:`ReleaseStore` the config service
reads. A publish here is a ``store.publish``, so it wakes long polls like any other.

Mirrors Apollo's portal and admin service closely enough for clients and CI scripts: working
items are separate from releases (a publish releases the whole working set), releases have
numeric ids, a rollback abandons releases and serves the previous one again without touching
the items, and, with the namespace lock on, the first editor of a namespace holds it until it
is published and may not publish it. Releases made outside the portal (``server.publish``)
are adopted on the next portal request: they get an id and become the working items.

Every method runs under the store's lock and raises :class:`PortalError` with the status, the
message and the Java exception class the portal would answer with.
"""

from .model import ACCESS_DENIED, BAD_REQUEST, NOT_FOUND, Consumer, ItemChange, PortalError
from .state import PortalState

__all__ = [
    "ACCESS_DENIED",
    "BAD_REQUEST",
    "NOT_FOUND",
    "Consumer",
    "ItemChange",
    "PortalError",
    "PortalState",
]
