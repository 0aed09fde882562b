"""An arm64 device on this machine: Debian bookworm arm64 (the base of Raspberry Pi OS) under qemu.

scripts/setup/arm64.sh builds the root filesystem once (debootstrap, cached in
<cache_dir>/arm64/rootfs) and registers qemu-aarch64 with binfmt_misc, so the kernel runs its aarch64
programs through qemu-user-static. Each device started here gets:
  - its own copy-on-write view of that root filesystem (overlayfs: the cache is never written, so
    every device starts as a freshly flashed one), in a private mount namespace (`unshare --mount`:
    its mounts vanish with its last process, nothing leaks into the host's mount table);
  - /proc and /dev, and a wheelhouse bound in from <cache_dir>/arm64/wheels: `prefetch_wheels`
    fills it once per set of dependencies with what the device's own pip downloads from the package
    index (aarch64 wheels), and a device started with `wheelhouse=True` installs from it offline
    (/etc/pip.conf: find-links, no-index), so a second deploy downloads nothing. (pip's HTTP cache
    cannot serve here: the index's responses come through a proxy that marks them uncacheable.)
  - an OpenSSH server from the arm64 root filesystem itself, on a free 127.0.0.1 port, with a host key
    and an authorised client key of its own, for `citygrid edge deploy`.
It shares the host's network (a chroot, not a network namespace), so the agent inside reaches the
local broker and a Modbus meter on 127.0.0.1 as a device on the LAN reaches them.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import subprocess
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from citygrid.devtools.server import ServerError, port_open

BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def rootfs(cache_dir: Path) -> Path:
    """The cached arm64 root filesystem; ServerError saying how to build it if it is missing."""
    root = Path(cache_dir).resolve() / "arm64" / "rootfs"
    if not (root / ".citygrid-complete").exists():
        raise ServerError(f"no arm64 root filesystem at {root}: run scripts/setup/arm64.sh")
    if not BINFMT.exists() or "enabled" not in BINFMT.read_text():
        raise ServerError("qemu-aarch64 is not registered with binfmt_misc: run scripts/setup/arm64.sh")
    return root


WHEELHOUSE = "/var/cache/citygrid-wheels"  # inside the device


def enter_script(lower: Path, work: Path, wheels: Path, command: list[str]) -> str:
    """The shell script (run under `unshare --mount`) that assembles the device's root and execs
    `command` chrooted into it."""
    merged, q = work / "root", shlex.quote
    mounts = [
        f"mount -t overlay overlay -o lowerdir={q(str(lower))},upperdir={q(str(work / 'upper'))},"
        f"workdir={q(str(work / 'overlay-work'))} {q(str(merged))}",
        f"mount -t proc proc {q(str(merged / 'proc'))}",
        f"mount --rbind /dev {q(str(merged / 'dev'))}",
        # No /sys: it would show the host's x86 CPUs, and onnxruntime's aarch64 CPU probe (cpuinfo)
        # crashes on them under qemu-user; without it, it warns and runs with its defaults.
        f"mount --bind {q(str(wheels))} {q(str(merged / WHEELHOUSE.lstrip('/')))}",
    ]
    return " && ".join([*mounts, f"exec /usr/sbin/chroot {q(str(merged))} {shlex.join(command)}"])


def spawn_in_device(cache_dir: Path, work: Path, command: list[str], log: Path,
                    extra_files: dict[str, tuple[bytes, int]] | None = None,
                    env: dict[str, str] | None = None) -> subprocess.Popen:
    """Run `command` as root inside an arm64 device whose changes live under `work` (a fresh device for
    a fresh `work`), with `env` (and a system PATH) as its whole environment."""
    lower = rootfs(cache_dir)
    wheels = Path(cache_dir).resolve() / "arm64" / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for d in (f"upper{WHEELHOUSE}", "upper/run/sshd", "overlay-work", "root"):
        (work / d).mkdir(parents=True, exist_ok=True)
    for path, (data, mode) in (extra_files or {}).items():  # written below the overlay, before it mounts
        target = work / "upper" / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(mode)
    with open(log, "ab") as out:
        return subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                 enter_script(lower, work, wheels, command)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={"PATH": SYSTEM_PATH, **(env or {})})


@dataclass
class Arm64Device:
    """A running arm64 device reachable over SSH as root on 127.0.0.1:port."""

    port: int
    client_key: Path
    known_hosts: Path
    work: Path
    proc: subprocess.Popen
    python: str = "/usr/bin/python3"

    def root(self) -> Path:
        """Where the device's files appear while it runs (its mount namespace only; use SSH)."""
        return self.work / "root"

    def processes(self) -> list[int]:
        """Every process running inside the device (its mount namespace), the sshd among them."""
        try:
            ns = os.readlink(f"/proc/{self.proc.pid}/ns/mnt")
        except OSError:
            return []
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.readlink(entry / "ns" / "mnt") == ns:
                        pids.append(int(entry.name))
                except OSError:
                    continue
        return pids

    def close(self) -> None:
        """Stop everything running in the device (sshd, agents it started); its mounts go with them."""
        pids = self.processes()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    continue
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (pids := self.processes()):
                time.sleep(0.1)
            if not pids:
                break
        self.proc.wait(10)


def start_device(cache_dir: Path, work: Path, port: int, ready_s: float = 60,
                 wheelhouse: bool = False) -> Arm64Device:
    """An arm64 device running its own sshd on 127.0.0.1:`port` (root login with a fresh key only);
    with `wheelhouse`, its pip installs offline from the prefetched wheels (see `prefetch_wheels`)."""
    work.mkdir(parents=True, exist_ok=True)
    keys = work / "keys"
    keys.mkdir(exist_ok=True)
    for name in ("host", "client"):
        if not (keys / name).exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"arm64-{name}",
                            "-f", str(keys / name)], check=True)
    config = (f"Port {port}\nListenAddress 127.0.0.1\nHostKey /etc/ssh/citygrid/host\n"
              "AuthorizedKeysFile /etc/ssh/citygrid/authorized_keys\nPermitRootLogin prohibit-password\n"
              "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
              "PidFile /run/sshd-citygrid.pid\nSubsystem sftp internal-sftp\n")
    files = {"/etc/ssh/citygrid/sshd_config": (config.encode(), 0o644),
             "/etc/ssh/citygrid/host": ((keys / "host").read_bytes(), 0o600),
             "/etc/ssh/citygrid/authorized_keys": ((keys / "client.pub").read_bytes(), 0o644)}
    if wheelhouse:
        files["/etc/pip.conf"] = (f"[global]\nfind-links = {WHEELHOUSE}\nno-index = true\n".encode(), 0o644)
    sshd = ["/usr/sbin/sshd", "-D", "-e", "-f", "/etc/ssh/citygrid/sshd_config"]
    proc = spawn_in_device(cache_dir, work, sshd, work / "sshd.log", files)
    device = Arm64Device(port, keys / "client", work / "known_hosts", work, proc)
    deadline = time.monotonic() + ready_s
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            device.close()
            raise ServerError(f"the arm64 device's sshd did not listen on {port}: "
                              f"{(work / 'sshd.log').read_text()[-800:]}")
        time.sleep(0.2)
    host_pub = (keys / "host.pub").read_text().split()
    device.known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    return device


def prefetch_wheels(cache_dir: Path, wheel: Path, work: Path) -> Path:
    """Fill the wheelhouse with every dependency of `wheel`[edge], as the arm64 device's pip downloads
    them from the package index; once per set of dependencies (the wheel's Requires-Dist). Returns it."""
    wheels = Path(cache_dir).resolve() / "arm64" / "wheels"
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    requires = sorted(line for line in lines if line.startswith("Requires-Dist"))
    marker = wheels / f".complete-{hashlib.sha256(chr(10).join(requires).encode()).hexdigest()[:16]}"
    if marker.exists():
        return wheels
    work.mkdir(parents=True, exist_ok=True)
    target = f"/tmp/{wheel.name}"
    script = (f"python3 -m pip download --quiet --disable-pip-version-check -d {WHEELHOUSE} "
              f"'{target}[edge]' && rm -f {WHEELHOUSE}/citygrid-*.whl")
    proc = spawn_in_device(cache_dir, work, ["/bin/sh", "-c", script], work / "prefetch.log",
                           {target: (wheel.read_bytes(), 0o644)}, env={"HOME": "/root"})
    if proc.wait(1800) != 0:
        log = (work / "prefetch.log").read_text()
        raise ServerError(f"downloading the arm64 wheels failed: {log[-800:]}")
    marker.touch()
    return wheels
