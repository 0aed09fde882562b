"""`citygrid edge deploy`: install or upgrade the agent on devices over SSH, proven by its first reading.

Layout on a device (under `root`, default /opt/citygrid-edge):
  releases/<id>/wheels/   the project's wheel (citygrid.ops.release): what `pip install citygrid[edge]`
                          installs; the device fetches its dependencies' wheels for its own architecture
  releases/<id>/venv -> venvs/<hash>  its virtual environment (shared by releases differing only in
                          their model)
  releases/<id>/model.onnx  the model the release ships (optional), made current on its first start
  releases/<id>/release.json  what `citygrid edge status` reports
  current -> releases/<id>  switched atomically (rename of a symlink)
  config/                 what the device gets besides the release (citygrid.ops.device_config): its
                          settings, key, broker identity and CA, the unit, run-unit.py
  /var/lib/citygrid-edge  outbox and models (systemd's StateDirectory), kept across releases
  state/, run/            the same, and its pid, credentials and log, where no systemd runs
The agent runs as the sandboxed systemd unit of citygrid.ops.device_config. Where no systemd runs, the
same unit is started by config/run-unit.py (without the sandbox), and the deploy says so. A redeploy of
the same release rewrites only the config that changed and restarts the agent if anything did (a
rotated password, a new command key).

Order of a deploy, and what failure at each step leaves: the release is installed beside the current
one and checked (`citygrid edge check` with the release's own interpreter): a failure removes it, the
device never left its release. Then `current` moves and the agent restarts; with a `FirstReadingGate`
the deploy waits for the release's first signed reading in Kafka (citygrid.ops.first_reading). If the
switch, the restart or the reading fails, `current` goes back to the previous release, its agent is
restarted and the new release is removed, so a device is never left on an agent that does not publish.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import structlog

from citygrid.ops.device_config import Device, DeviceTrust, device_config, safe_path
from citygrid.ops.errors import DeployError
from citygrid.ops.first_reading import FirstReadingGate
from citygrid.ops.release import Release, model_label
from citygrid.ops.remote import UNIT, Remote, Starter, agent_running, restart_agent, stop_agent
from citygrid.signing import DeviceKey

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Deployed:
    """What a deploy did on one device."""

    device: str
    release: str
    previous: str | None  # the release before (None: first install)
    started_by: Starter | None  # systemd, or run-unit.py where no systemd runs; None: not restarted
    first_reading_s: float | None = None  # how long its first reading took (None: not waited for)


def deploy_device(d: Device, release: Release, agent_env: dict[str, str], trust: DeviceTrust,
                  known_hosts: Path | None = None, provisioned_site: str | None = None,
                  gate: FirstReadingGate | None = None) -> Deployed:
    """Install or upgrade one device; with a `gate`, wait for the release's first reading. Rolls back on
    any failure (DeployError).

    `provisioned_site`: for deps "provisioned", the site-packages directory the operator provisioned on
    the devices (an operator option, never a devices-file value)."""
    d = Device.model_validate(d.model_dump())
    config = device_config(d, agent_env, trust)  # a device not enrolled is refused before any SSH
    site = _provisioned(d, provisioned_site)
    release_id = release.id(f"{d.deps} {d.python} {site}")
    r = Remote(d, known_hosts)
    try:
        previous = r.sh(f"readlink {shlex.quote(d.root)}/current || true").strip() or None
        if previous and previous.endswith(f"/{release_id}"):
            return _redeploy(r, d, config, release, release_id, gate)
        rel = _install(r, d, release, release_id, site, config)
        result = _switch(r, d, release, rel, previous, gate)
        _prune(r, d.root)
        log.info("deployed", device=d.name, release=release_id, previous=result.previous,
                 started_by=result.started_by, first_reading_s=result.first_reading_s)
        return result
    finally:
        r.close()


def _redeploy(r: Remote, d: Device, config: dict[str, tuple[bytes, int]], release: Release,
              release_id: str, gate: FirstReadingGate | None) -> Deployed:
    """The device runs this release already: rewrite the config that changed, restart if any did."""
    changed = _write_config(r, d, config)
    started, waited = None, None
    # A rotated password or a new command key acts only once the agent restarts; an agent that is not
    # running (a device without systemd after a reboot) is started.
    if changed or not agent_running(r, d.root):
        started, waited = _restart_proven(r, d, release, gate)
    log.info("deploy_up_to_date", device=d.name, release=release_id, config_changed=changed,
             restarted=started is not None)
    return Deployed(d.name, release_id, release_id, started, waited)


def _install(r: Remote, d: Device, release: Release, release_id: str, site: str,
             config: dict[str, tuple[bytes, int]]) -> str:
    """Put the release beside the current one and check it there; removed again if anything fails."""
    q = shlex.quote
    rel = f"{d.root}/releases/{release_id}"
    r.sh(f"rm -rf {q(rel)} && mkdir -p {q(rel)}/wheels {q(d.root)}/config {q(d.root)}/state && "
         f"chmod 700 {q(d.root)}/config {q(d.root)}/state")
    try:
        r.put(release.wheel, f"{rel}/wheels/{release.wheel_name}")
        if release.model is not None:
            r.put(release.model, f"{rel}/model.onnx")
        r.put(release.manifest(f"{d.deps} {d.python} {site}").encode(), f"{rel}/release.json")
        _build_venv(r, d, rel, release, site)
        _write_config(r, d, config)
        r.sh(f"{q(rel)}/venv/bin/python -m citygrid edge check --key {q(d.root)}/config/device.key",
             timeout_s=300)
    except DeployError:
        r.sh(f"rm -rf {q(rel)}")
        log.error("deploy_check_failed_kept_previous", device=d.name, release=release_id)
        raise
    return rel


def _switch(r: Remote, d: Device, release: Release, rel: str, previous: str | None,
            gate: FirstReadingGate | None) -> Deployed:
    """Make `rel` current and restart the agent on it, proven by its first reading when `gate` is given;
    on failure, back to `previous` (its agent restarted) and `rel` removed."""
    q = shlex.quote
    try:
        _activate(r, d.root, rel)
        started, waited = _restart_proven(r, d, release, gate)
    except DeployError:
        if previous:
            _activate(r, d.root, previous)
            restart_agent(r, d.root)
        else:  # a first install that does not work: no agent at all rather than a broken one
            stop_agent(r, d.root)
            r.sh(f"rm -f {q(d.root)}/current")
        r.sh(f"rm -rf {q(rel)}")
        log.error("deploy_rolled_back", device=d.name, release=rel.rsplit("/", 1)[-1], previous=previous)
        raise
    return Deployed(d.name, rel.rsplit("/", 1)[-1], previous and previous.rsplit("/", 1)[-1], started, waited)


def _restart_proven(r: Remote, d: Device, release: Release,
                    gate: FirstReadingGate | None) -> tuple[Starter, float | None]:
    """Restart the agent; with `gate`, wait for its first reading (DeployError if none comes)."""
    if gate is None:
        return restart_agent(r, d.root), None
    device_id = DeviceKey.load(d.device_key).device_id
    watch = gate.open(device_id)  # from the topic's end now: nothing published before counts
    try:
        stop_agent(r, d.root)
        since = r.now_ms()  # once the old agent stopped: only what the new one measures counts
        started = restart_agent(r, d.root)
        model = model_label(release.model)
        reading, waited = watch.first(since, model)
    finally:
        watch.close()
    if reading is None:
        tail = r.sh(f"tail -c 1500 {shlex.quote(d.root)}/run/agent.log 2>/dev/null || true").strip()
        raise DeployError(f"{d.name}: no reading of {device_id}{f' scored by {model}' if model else ''} "
                          f"reached Kafka within {gate.timeout_s:.0f} s of the restart; check the agent's "
                          f"log (journalctl -u {UNIT}){f': {tail[-600:]}' if tail else ''}")
    log.info("first_reading", device=d.name, seq=reading.seq, model=model, after_s=round(waited, 1))
    return started, waited


def _provisioned(d: Device, site: str | None) -> str:
    if d.deps != "provisioned":
        return ""
    try:
        return safe_path(site or "")
    except ValueError:
        raise DeployError(f"{d.name}: deps 'provisioned' needs the operator's provisioned site-packages "
                          "directory (a plain absolute path)") from None


def _build_venv(r: Remote, d: Device, rel: str, release: Release, site_dir: str) -> None:
    """The release's venv with the wheel installed: its [edge] dependencies from the package index, or
    (deps "provisioned") from the operator's pre-provisioned site-packages.

    Venvs live in venvs/<hash of wheel, deps, interpreter, site>, linked from each release using it: a
    release that changes only the model reuses the venv of the one before (no download, no rebuild,
    which on a Pi over a metered link is most of a deploy). A venv is marked complete only once built."""
    q = shlex.quote
    venv = f"{d.root}/venvs/{release.id(f'venv {d.deps} {d.python} {site_dir}', with_model=False)}"
    if r.sh(f"test -f {q(venv)}/.complete && echo yes || echo no").strip() != "yes":
        try:
            _make_venv(r, d, venv, f"{rel}/wheels/{release.wheel_name}", site_dir)
        except DeployError:
            r.sh(f"rm -rf {q(venv)}")
            raise
        r.sh(f"touch {q(venv)}/.complete")
    r.sh(f"ln -sfn {q(venv)} {q(rel)}/venv")


def _make_venv(r: Remote, d: Device, venv: str, wheel: str, site_dir: str) -> None:
    q = shlex.quote
    r.sh(f"rm -rf {q(venv)} && mkdir -p {q(d.root)}/venvs && {q(d.python)} -m venv {q(venv)}")
    pip = f"{q(venv)}/bin/python -m pip install --quiet --disable-pip-version-check"
    if d.deps == "provisioned":
        r.sh(f"test -d {q(site_dir)}")
        site = r.sh(f"{q(venv)}/bin/python -c "
                    "'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])'").strip()
        # One plain path (validated), never an `import` line; after the venv's own site-packages, so the
        # release's citygrid comes first.
        r.put(f"{site_dir}\n".encode(), f"{site}/zz-provisioned-site.pth")
        # --ignore-installed: the provisioned site may hold a citygrid of its own; the release's goes into
        # its venv (never uninstalling anything from the shared site).
        r.sh(f"{pip} --no-deps --no-index --ignore-installed {q(wheel)}", timeout_s=600)
    else:
        r.sh(f"{pip} {q(wheel + '[edge]')}", timeout_s=1800)


def _write_config(r: Remote, d: Device, config: dict[str, tuple[bytes, int]]) -> bool:
    """Write the files of config/ that differ (contents or mode); whether any did."""
    changed = False
    for name, (data, mode) in config.items():
        changed |= r.put_if_changed(data, f"{d.root}/config/{name}", mode)
    return changed


def _prune(r: Remote, root: str) -> None:
    """Keep the three newest releases (a manual rollback stays possible) and the venvs they use."""
    q = shlex.quote
    r.sh(f"cd {q(root)}/releases && ls -1t | tail -n +4 | xargs -r rm -rf")
    r.sh(f"cd {q(root)} && used=$(for v in releases/*/venv; do readlink -f \"$v\"; done) && "
         f"for v in venvs/*; do [ -d \"$v\" ] || continue; case \"$used\" in "
         f"*\"$(readlink -f \"$v\")\"*) ;; *) rm -rf \"$v\" ;; esac; done")


def _activate(r: Remote, root: str, rel: str) -> None:
    q = shlex.quote
    r.sh(f"ln -sfn {q(rel)} {q(root)}/current.new && mv -T {q(root)}/current.new {q(root)}/current")
