"""citygrid: signed IoT readings from the edge, streamed through Kafka, anchored on a parachain."""

from pathlib import Path as _Path

__version__ = "0.1.0"

_here = _Path(__file__).resolve().parent
if _here.name == "core" and (_here.parent / "edge" / "__init__.py").exists():
    # Running from a source checkout (PYTHONPATH=.dev, see scripts/setup/python.sh): the
    # parts sit beside core/ at the repository root, where the wheel maps them under
    # citygrid/. Searching the root too makes `citygrid.edge` resolve the same way.
    __path__.append(str(_here.parent))
