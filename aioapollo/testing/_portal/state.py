"""PortalState: the portal side of the test server, made of one part per Apollo aggregate."""

from __future__ import annotations

from .access import AccessMixin
from .apps import AppsMixin
from .gray import GrayMixin
from .items import ItemsMixin
from .releases import ReleasesMixin

__all__ = ["PortalState"]


class PortalState(AccessMixin, AppsMixin, ItemsMixin, ReleasesMixin, GrayMixin):
    """What the portal knows beyond the releases (see the package docstring).

    Args:
        store: The releases the config service serves.
        env: The one environment this portal serves (Apollo's ``DEV``, ``PRO``, ...).
    """
