"""The operator tooling's errors: each says what failed on which device and what to do."""

from __future__ import annotations

from citygrid.errors import CitygridError


class DeployError(CitygridError, reason="deploy"):
    """Installing or upgrading the agent on a device failed (the device was rolled back)."""


class ReleaseError(CitygridError, reason="release"):
    """The release could not be built or read (no wheel, no project to build one from)."""
