"""What a deploy installs on a device: the project's built wheel and, optionally, the model it ships with.

A release is immutable and named by a hash of its contents (the wheel, the model, how its dependencies
are installed), so deploying the same release twice is a no-op and `citygrid edge status` can say
which one a device runs. The wheel is the same artefact `pip install citygrid[edge]` installs: a device
gets its dependencies (paho-mqtt, numpy, onnxruntime, pynacl …) as wheels for its own architecture
from the package index, never copied from the operator's machine. hatchling builds wheels
reproducibly (fixed timestamps), so rebuilding unchanged sources gives the same release id.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from citygrid.ops.errors import ReleaseError


@dataclass(frozen=True)
class Release:
    """The wheel a device installs, and the ONNX model it starts with (none: it keeps its own)."""

    wheel_name: str
    wheel: bytes
    model: bytes | None = None

    def id(self, install: str = "", with_model: bool = True) -> str:
        """The release id: a hash of what the device gets and how (`install`: deps mode, interpreter);
        without the model, the id of its venv (releases differing only in their model share one)."""
        h = hashlib.sha256(self.wheel_name.encode() + b"\0" + self.wheel + b"\0" + install.encode())
        if with_model:
            h.update(b"\0" + (self.model or b""))
        return h.hexdigest()[:12]

    def manifest(self, install: str = "") -> str:
        """release.json on the device: what `citygrid edge status` reports."""
        return json.dumps({"release": self.id(install), "wheel": self.wheel_name,
                           "model_sha256": hashlib.sha256(self.model).hexdigest() if self.model else None,
                           "model": model_label(self.model)}, sort_keys=True)

    @classmethod
    def from_files(cls, wheel: Path, model: Path | None = None) -> Release:
        """A release from a built wheel and an optional model file."""
        wheel = Path(wheel)
        if wheel.suffix != ".whl" or not wheel.is_file():
            raise ReleaseError(f"{wheel} is not a wheel; build one with `pip wheel --no-deps .`")
        return cls(wheel.name, wheel.read_bytes(), Path(model).read_bytes() if model else None)


def model_label(model: bytes | None) -> str | None:
    """"name version" from a citygrid model's metadata (the version its readings will carry), or None.

    Read without onnxruntime (the operator's machine may not have it): the metadata strings sit in the
    ONNX protobuf as plain key/value pairs."""
    if not model:
        return None
    meta = {}
    for key in (b"citygrid.name", b"citygrid.version"):
        # A metadata_props entry: key (field 1, tag 0x0a), then value (field 2, tag 0x12), each a varint
        # length and the bytes.
        at = model.find(b"\x0a" + bytes([len(key)]) + key + b"\x12")
        if at < 0:
            continue
        pos, length, shift = at + len(key) + 3, 0, 0
        while pos < len(model) and shift < 35:
            length |= (model[pos] & 0x7F) << shift
            pos, shift = pos + 1, shift + 7
            if not model[pos - 1] & 0x80:
                break
        meta[key.decode()] = model[pos:pos + min(length, 200)].decode(errors="replace")
    if "citygrid.version" not in meta:
        return None
    return f"{meta.get('citygrid.name', '?')} {meta['citygrid.version']}"


def project_root() -> Path | None:
    """The source checkout this code runs from (where pyproject.toml is), None if installed from a wheel."""
    import citygrid

    root = Path(citygrid.__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "core").is_dir() else None


def build_wheel(project: Path, out_dir: Path | None = None) -> Path:
    """Build the project's wheel (no dependencies) with this interpreter; its path."""
    out = Path(out_dir or tempfile.mkdtemp(prefix="citygrid-wheel-"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                           "--no-build-isolation", "--no-cache-dir", "-w", str(out), str(project)],
                          capture_output=True, text=True, timeout=600)
    wheels = sorted(out.glob("citygrid-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise ReleaseError(f"building the wheel of {project} failed: {(proc.stderr or proc.stdout)[-800:]}")
    return wheels[-1]
