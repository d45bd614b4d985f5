"""The slot: the one model container, through the Docker API. Mechanism only.

``DockerSlot`` implements the ``Slot`` Protocol (``protocol.py``): it creates, stops, inspects,
reads and waits on the container and answers the Docker questions policy asks (images, device
holders, die events, compose services); it never decides *which* profile runs (that is
``control/switch.py``) and never talks to the frontdoor.

At most one model container exists at any instant (DESIGN.md, invariant 1). This module holds
two of the three things that keep it so: the fixed container name (Docker refuses a second
container of that name, whatever its state) and the label sweep (``stop`` removes *every*
container carrying the slot's labels, not only the one it expects). The third, one writer at a
time, is ``lock.py``.

Configuration (environment):

- ``MODEL_SLOT_CONTAINER_NAME`` (``modelslot-model``): the fixed name;
- ``MODEL_SLOT_INSTANCE`` (``default``): the ``modelslot.instance`` label value; sweeps only
  touch containers of this instance, so tests and a real slot can share one engine;
- ``MODEL_SLOT_BACKEND_HOST`` / ``MODEL_SLOT_BACKEND_PORT`` (``127.0.0.1`` / ``18080``): where
  the container port is published; port ``0`` lets Docker pick one;
- ``MODEL_SLOT_NETWORK``: a Docker network to attach, where the container's name is its host;
- ``MODEL_SLOT_PROBE`` (``published`` or ``network``): how the orchestrator reaches vLLM;
  by default ``network`` when a network is set and the orchestrator runs in a container (the
  compose service), else ``published``;
- ``MODEL_SLOT_UPSTREAM_URL``: what the frontdoor is told; by default
  ``http://<name>:<port>`` with a network, else the published address;
- ``MODEL_SLOT_CPUSET``: the host CPUs the model container may run on (Docker's
  ``--cpuset-cpus``, e.g. ``0-3``); unset, all of them. Two slots on one host each get their own
  CPUs this way: vLLM CPU's ``auto`` OpenMP binding picks from the CPUs the container may use,
  so without it both engines bind to the same cores and starve each other.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import docker
import docker.errors
import httpx
import requests
from docker.models.containers import Container

from orchestrator import cpus
from orchestrator.errors import NotReadyError, SlotError
from orchestrator.profiles.store import Profile
from orchestrator.slot.protocol import ContainerInfo, DeviceHolders, DieEvent, OnStep
from orchestrator.slot.xpu_smi import XpuSmi, XpuSmiError

ROLE_LABEL = "modelslot.role"
ROLE = "model"
PROFILE_LABEL = "modelslot.profile"
HASH_LABEL = "modelslot.profile-hash"
INSTANCE_LABEL = "modelslot.instance"

#: How long to wait for a container to be gone after SIGKILL.
KILL_WAIT_S = 60.0
#: How many log lines a failure report carries.
LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class SlotConfig:
    container_name: str = "modelslot-model"
    instance: str = "default"
    backend_host: str = "127.0.0.1"
    backend_port: int = 18080
    network: str | None = None
    probe: str = "published"  # or "network"
    upstream_url: str | None = None
    cpuset: frozenset[int] | None = None  # None: every CPU of the host

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> SlotConfig:
        env = dict(os.environ) if environ is None else environ
        network = env.get("MODEL_SLOT_NETWORK") or None
        # Inside a container on that network (the compose service), the published loopback
        # port is the host's, not ours: reach vLLM by name instead.
        in_container = Path("/.dockerenv").exists()
        probe = env.get("MODEL_SLOT_PROBE") or (
            "network" if network and in_container else "published"
        )
        if probe not in ("published", "network"):
            raise SlotError(f"MODEL_SLOT_PROBE={probe!r}: expected published or network")
        port = env.get("MODEL_SLOT_BACKEND_PORT", "18080")
        if not port.isdigit():
            raise SlotError(f"MODEL_SLOT_BACKEND_PORT={port!r}: expected a port number (0: any)")
        return cls(
            container_name=env.get("MODEL_SLOT_CONTAINER_NAME", "modelslot-model"),
            instance=env.get("MODEL_SLOT_INSTANCE", "default"),
            backend_host=env.get("MODEL_SLOT_BACKEND_HOST", "127.0.0.1"),
            backend_port=int(port),
            network=network,
            probe=probe,
            upstream_url=env.get("MODEL_SLOT_UPSTREAM_URL") or None,
            cpuset=cpuset_setting(env.get("MODEL_SLOT_CPUSET", "")),
        )

    def cpu_problems(self, profile: Profile) -> list[str]:
        """Why ``profile`` cannot run on this slot's CPUs (empty: it can): a profile that binds
        vLLM's OpenMP threads to fixed CPUs must name CPUs the container may use
        (``MODEL_SLOT_CPUSET``, else every CPU of the host)."""
        bind = profile.get("VLLM_CPU_OMP_THREADS_BIND")
        if bind in ("", "auto", "nobind"):
            return []
        allowed = self.cpuset if self.cpuset is not None else host_cpus()
        outside = set().union(*(cpus.parse(rank) for rank in bind.split("|"))) - allowed
        if not outside:
            return []
        where = (
            f"outside this slot's MODEL_SLOT_CPUSET={cpus.format_ids(allowed)}"
            if self.cpuset is not None
            else f"which this host does not have (it has {cpus.format_ids(allowed)})"
        )
        return [
            f"{profile.name} binds vLLM's OpenMP threads to CPUs {cpus.format_ids(outside)} "
            f"(VLLM_CPU_OMP_THREADS_BIND={bind}), {where}: its engine could not start. Use "
            "VLLM_CPU_OMP_THREADS_BIND=auto (it binds inside the container's CPUs) or CPUs "
            "the container has"
        ]


def host_cpus() -> frozenset[int]:
    """The CPUs this process may run on: the host's, for the CLI and the compose service."""
    if hasattr(os, "sched_getaffinity"):
        return frozenset(os.sched_getaffinity(0))
    return frozenset(range(os.cpu_count() or 1))


def cpuset_setting(value: str) -> frozenset[int] | None:
    """``MODEL_SLOT_CPUSET``, checked: a CPU list of CPUs this host has, or unset."""
    value = value.strip()
    if not value:
        return None
    try:
        chosen = cpus.parse(value)
    except ValueError as exc:
        raise SlotError(f"MODEL_SLOT_CPUSET={value!r}: {exc}") from None
    have = host_cpus()
    missing = chosen - have
    if missing:
        raise SlotError(
            f"MODEL_SLOT_CPUSET={value!r}: this host has no CPU {cpus.format_ids(missing)} "
            f"(it has {cpus.format_ids(have)}); name CPUs it has, or unset it for all of them"
        )
    return chosen


def _info(container: Container) -> ContainerInfo:
    attrs: dict[str, Any] = container.attrs
    state = attrs.get("State", {})
    labels = attrs.get("Config", {}).get("Labels") or {}
    port: int | None = None
    for bindings in (attrs.get("NetworkSettings", {}).get("Ports") or {}).values():
        for binding in bindings or []:
            if binding.get("HostPort"):
                port = int(binding["HostPort"])
                break
    return ContainerInfo(
        id=container.id or "",
        name=(attrs.get("Name") or "").lstrip("/"),
        status=state.get("Status", "unknown"),
        profile=labels.get(PROFILE_LABEL, ""),
        profile_hash=labels.get(HASH_LABEL, ""),
        exit_code=state.get("ExitCode") if state.get("Status") in ("exited", "dead") else None,
        started_at=state.get("StartedAt"),
        published_port=port,
    )


def _size_bytes(value: str) -> int:
    units = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    value = value.strip().lower()
    if value and value[-1] in units:
        return int(value[:-1]) * units[value[-1]]
    return int(value)


def device_groups(group: str, devices: tuple[str, ...]) -> list[str]:
    """What to pass as ``group_add``. A group *name* such as ``render`` is resolved by Docker
    inside the image, which may not know it; the group that matters is the one owning the
    device nodes on the host. So a name becomes the gids of the device nodes (``/dev/dri/*``),
    read where this runs (the host, or the orchestrator container with ``/dev`` visible), and
    stays a name only when no device node can be read."""
    if not group:
        return []
    if group.isdigit():
        return [group]
    gids: set[int] = set()
    for device in devices:
        path = Path(device)
        nodes = list(path.iterdir()) if path.is_dir() else [path]
        for node in nodes:
            try:
                gid = node.stat().st_gid
            except OSError:
                continue
            if gid != 0:
                gids.add(gid)
    return [str(gid) for gid in sorted(gids)] or [group]


P = ParamSpec("P")
R = TypeVar("R")

#: What docker-py raises when the engine fails or does not answer in time (a busy daemon).
DOCKER_FAILURES = (docker.errors.DockerException, requests.exceptions.RequestException)


def _as_slot_error(method: Callable[P, R]) -> Callable[P, R]:
    """The Protocol promises SlotError: a Docker failure that escapes a method becomes one that
    says which call failed, never a docker-py or requests exception in the policy's lap."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except DOCKER_FAILURES as exc:
            raise SlotError(
                f"the Docker engine failed during {method.__name__}: {type(exc).__name__}: {exc}"
            ) from None

    return call


class _DockerDieEvents:
    """docker-py's event stream of this slot's ``die`` events, as ``DieEvent``s."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[DieEvent]:
        for event in self._stream:
            actor = event.get("Actor") or {}
            code = (actor.get("Attributes") or {}).get("exitCode")
            yield DieEvent(
                id=str(event.get("id") or actor.get("ID") or ""),
                exit_code=None if code is None else str(code),
            )

    def close(self) -> None:
        self._stream.close()


class DockerSlot:
    """The one model container of one slot instance, through the Docker API."""

    def __init__(
        self,
        config: SlotConfig,
        client: docker.DockerClient | None = None,
        xpu_smi: XpuSmi | None = None,
    ) -> None:
        self.config = config
        self.client = client or docker.from_env(timeout=120)
        self.xpu_smi = xpu_smi if xpu_smi is not None else XpuSmi()  # absent off XPU hosts

    @property
    def container_name(self) -> str:
        return self.config.container_name

    # ---- questions policy asks ------------------------------------------------------------
    def image_exists(self, image: str) -> bool:
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.APIError as exc:
            raise SlotError(f"cannot ask Docker about image {image}: {exc}") from None
        return True

    @_as_slot_error
    def device_holders(self, devices: tuple[str, ...]) -> DeviceHolders:
        holders: list[str] = []
        others: list[Container] = []  # their processes are named once, as the container
        for container in self.client.containers.list():
            name = (container.attrs.get("Name") or "").lstrip("/")
            if name == self.config.container_name:
                continue
            mapped = container.attrs.get("HostConfig", {}).get("Devices") or []
            for mapping in mapped:
                host = mapping.get("PathOnHost", "")
                if any(host == d or host.startswith(d.rstrip("/") + "/") for d in devices):
                    holders.append(f"container {name} ({host})")
                    others.append(container)
        how = "Docker's device mappings"
        if self.xpu_smi.path is None:
            return DeviceHolders(
                holders, f"{how} only: xpu-smi is not on the PATH, host processes not checked"
            )
        own = self._pids(self.config.container_name) or set()
        for container in others:
            own |= self._pids(container.id or "") or set()
        try:
            holders += self.xpu_smi.holders(own)
        except XpuSmiError as exc:
            return DeviceHolders(holders, f"{how} only: {exc}")
        return DeviceHolders(holders, f"{how} and xpu-smi ps")

    def _pids(self, name: str) -> set[int] | None:
        """Host PIDs of a running container's processes (``docker top``), None if none runs."""
        try:
            container = self.client.containers.get(name)
            if container.status != "running":
                return None
            top = container.top()
        except docker.errors.NotFound:
            return None
        column = list(top.get("Titles") or []).index("PID")
        return {int(row[column]) for row in top.get("Processes") or []}

    def die_events(self) -> _DockerDieEvents:
        return _DockerDieEvents(
            self.client.events(
                decode=True,
                filters={"type": "container", "event": ["die"], "label": self.labels_filter()},
            )
        )

    @_as_slot_error
    def service_running(self, project: str, service: str) -> bool:
        running = self.client.containers.list(
            sparse=True,
            filters={
                "label": [
                    f"com.docker.compose.project={project}",
                    f"com.docker.compose.service={service}",
                ]
            },
        )
        return bool(running)

    # ---- finding --------------------------------------------------------------------------
    def labels_filter(self) -> list[str]:
        return [f"{ROLE_LABEL}={ROLE}", f"{INSTANCE_LABEL}={self.config.instance}"]

    def _labelled(self) -> list[Container]:
        # sparse: no inspect per container inside list(), which would race a removal (404).
        found: list[Container] = self.client.containers.list(
            all=True, filters={"label": self.labels_filter()}, sparse=True
        )
        # Also the fixed name, labelled or not: Docker would refuse to create ours next to it.
        try:
            named = self.client.containers.get(self.config.container_name)
        except docker.errors.NotFound:
            named = None
        if named is not None and all(c.id != named.id for c in found):
            found.append(named)
        return found

    @_as_slot_error
    def containers(self) -> list[ContainerInfo]:
        """Every container of this slot, in any state (normally none or one)."""
        infos = []
        for container in self._labelled():
            try:
                container.reload()
            except docker.errors.NotFound:
                continue
            infos.append(_info(container))
        return infos

    @_as_slot_error
    def current(self) -> ContainerInfo | None:
        """The container under the fixed name, if any."""
        try:
            container = self.client.containers.get(self.config.container_name)
        except docker.errors.NotFound:
            return None
        return _info(container)

    @_as_slot_error
    def inspect(self) -> dict[str, Any] | None:
        try:
            attrs: dict[str, Any] = self.client.containers.get(self.config.container_name).attrs
        except docker.errors.NotFound:
            return None
        return attrs

    # ---- creating -------------------------------------------------------------------------
    @_as_slot_error
    def create(self, profile: Profile, model_root: Path) -> ContainerInfo:
        """Create and start the container for ``profile``. The caller has swept the slot; if a
        container of the fixed name still exists Docker refuses, and so does this."""
        env = profile.container_env()
        container_port = profile.container_port
        mounts: list[docker.types.Mount] = [
            docker.types.Mount(
                target=profile.get("VLLM_CACHE_ROOT"), source=profile.cache_volume, type="volume"
            )
        ]
        model_dir = profile.model_dir(model_root)
        if model_dir is not None:
            mounts.append(
                docker.types.Mount(
                    target=profile.get("VLLM_MODEL"),
                    source=str(model_dir),
                    type="bind",
                    read_only=True,
                )
            )
        port_binding: tuple[str, int] | tuple[str] = (
            (self.config.backend_host, self.config.backend_port)
            if self.config.backend_port
            else (self.config.backend_host,)
        )
        kwargs: dict[str, Any] = {
            "name": self.config.container_name,
            "environment": env,
            "labels": {
                ROLE_LABEL: ROLE,
                INSTANCE_LABEL: self.config.instance,
                PROFILE_LABEL: profile.name,
                HASH_LABEL: profile.hash,
            },
            "mounts": mounts,
            "ports": {f"{container_port}/tcp": port_binding},
            "ipc_mode": "host",
            "shm_size": profile.get("MODEL_SLOT_SHM_SIZE"),
            # The controller restarts it, with backoff and fault detection; Docker must not.
            "restart_policy": {"Name": "no"},
            "detach": True,
            "stop_signal": "SIGTERM",
        }
        if profile.devices:
            kwargs["devices"] = [f"{device}:{device}:rwm" for device in profile.devices]
        groups = device_groups(profile.get("MODEL_SLOT_GROUP_ADD"), profile.devices)
        if groups:
            kwargs["group_add"] = groups
        memory = profile.get("MODEL_SLOT_MEMORY_LIMIT")
        if memory:
            # memswap_limit equal to mem_limit: no swap on top of the limit.
            kwargs["mem_limit"] = _size_bytes(memory)
            kwargs["memswap_limit"] = _size_bytes(memory)
        if self.config.network:
            kwargs["network"] = self.config.network
        problems = self.config.cpu_problems(profile)  # preflight said so too; never start it
        if problems:
            raise SlotError(problems[0])
        if self.config.cpuset is not None:
            kwargs["cpuset_cpus"] = cpus.format_ids(self.config.cpuset)
        try:
            container = self.client.containers.create(profile.image, **kwargs)
        except docker.errors.ImageNotFound:
            raise SlotError(f"image {profile.image} not found (build it first)") from None
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise SlotError(
                    f"a container named {self.config.container_name} already exists: {exc}"
                ) from None
            raise SlotError(f"cannot create the model container: {exc}") from None
        try:
            container.start()
        except docker.errors.APIError as exc:
            tail = self._tail(container)
            self._remove(container)
            raise SlotError(f"cannot start the model container: {exc}\n{tail}") from None
        container.reload()
        return _info(container)

    # ---- stopping -------------------------------------------------------------------------
    @_as_slot_error
    def stop(self, grace_s: float, on_step: OnStep | None = None) -> list[str]:
        """Remove every container of this slot: SIGTERM, grace, SIGKILL, wait until it has
        exited, remove, wait until Docker no longer knows it. Returns the ids removed."""
        removed = []
        for container in self._labelled():
            self._teardown(container, grace_s, on_step)
            removed.append(container.id or "")
        return removed

    def _teardown(self, container: Container, grace_s: float, on_step: OnStep | None) -> None:
        def step(text: str) -> None:
            if on_step is not None:
                on_step(f"{(container.id or '')[:12]}: {text}")

        try:
            container.reload()
        except docker.errors.NotFound:
            return
        if container.status in ("running", "restarting", "paused"):
            if container.status == "paused":
                self._signal(container, "unpause")
            step("SIGTERM")
            self._signal(container, "SIGTERM")
            if not self._wait_exited(container, grace_s):
                step(f"still running after {grace_s:g}s: SIGKILL")
                self._signal(container, "SIGKILL")
                # A multi-process vLLM can take a while to be reaped after SIGKILL.
                if not self._wait_exited(container, KILL_WAIT_S):
                    raise SlotError(
                        f"container {container.short_id} survived SIGKILL for {KILL_WAIT_S:g}s"
                    )
        self._remove(container)

    @staticmethod
    def _signal(container: Container, what: str) -> None:
        """Send a signal (or unpause). Fine if the container is already gone or stopped (404,
        409), and fine when Docker says PID 1 "is zombie": the signal was delivered and PID 1
        died, but its children are still being torn down; Docker 20.10 gives up waiting for
        that after 2 s and answers 500. Waiting for the exit is the caller's next step."""
        try:
            if what == "unpause":
                container.unpause()
            else:
                container.kill(signal=what)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if exc.status_code in (404, 409) or "zombie" in str(exc):
                return
            raise SlotError(f"cannot signal container {container.short_id}: {exc}") from None

    def _wait_exited(self, container: Container, within_s: float) -> bool:
        deadline = time.monotonic() + within_s
        while True:
            try:
                container.reload()
            except docker.errors.NotFound:
                return True
            if container.status not in ("running", "restarting", "paused", "removing"):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _remove(self, container: Container) -> None:
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise SlotError(f"cannot remove container {container.short_id}: {exc}") from None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.client.containers.get(container.id)
            except docker.errors.NotFound:
                return
            time.sleep(0.05)
        raise SlotError(f"container {container.short_id} still exists 60s after removal")

    # ---- reading --------------------------------------------------------------------------
    @_as_slot_error
    def logs(self, tail: int | None = None, timestamps: bool = False) -> str:
        try:
            container = self.client.containers.get(self.config.container_name)
        except docker.errors.NotFound:
            return ""
        return self._logs(container, tail, timestamps)

    @staticmethod
    def _logs(container: Container, tail: int | None, timestamps: bool) -> str:
        try:
            raw: bytes = container.logs(
                stdout=True,
                stderr=True,
                tail=tail if tail is not None else "all",
                timestamps=timestamps,
            )
        except docker.errors.APIError:
            return ""
        return raw.decode("utf-8", errors="replace")

    def _tail(self, container: Container) -> str:
        return self._logs(container, LOG_TAIL_LINES, False)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return self.logs(tail=lines)

    # ---- addresses ------------------------------------------------------------------------
    def cpu_problems(self, profile: Profile) -> list[str]:
        return self.config.cpu_problems(profile)

    def probe_url(self, profile: Profile, info: ContainerInfo | None = None) -> str:
        """Where the orchestrator reaches vLLM."""
        if self.config.probe == "network":
            return f"http://{self.config.container_name}:{profile.container_port}"
        info = info or self.current()
        port = info.published_port if info and info.published_port else self.config.backend_port
        host = self.config.backend_host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 (compare only)
        return f"http://{host}:{port}"

    def upstream_url(self, profile: Profile, info: ContainerInfo | None = None) -> str:
        """What the frontdoor is told to proxy to."""
        if self.config.upstream_url:
            return self.config.upstream_url
        if self.config.network:
            return f"http://{self.config.container_name}:{profile.container_port}"
        return self.probe_url(profile, info)

    # ---- readiness ------------------------------------------------------------------------
    @_as_slot_error
    def wait_ready(
        self,
        profile: Profile,
        timeout_s: float | None = None,
        on_step: OnStep | None = None,
    ) -> None:
        """Return once the container is ready as invariant 2 defines it: running, ``/health``
        200, ``/v1/models`` lists the served name with the expected ``max_model_len``, and one
        real generation returned tokens. Every probe races the container's exit: if it exits,
        NotReadyError("exited during startup") with its last log lines, at once."""
        timeout_s = profile.startup_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        stage = "health"
        last_problem = ""
        while True:
            try:
                container = self._get_or_fail(profile)
                container.reload()
            except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
                # A busy engine that does not answer in time is not the container's failure:
                # ask again until the deadline.
                if isinstance(exc, docker.errors.NotFound):
                    raise NotReadyError(
                        f"{profile.name}: the container disappeared during startup"
                    ) from None
                last_problem = f"the Docker engine did not answer: {type(exc).__name__}"
                if time.monotonic() >= deadline:
                    raise NotReadyError(
                        f"{profile.name}: not ready after {timeout_s:g}s ({last_problem})"
                    ) from None
                time.sleep(1.0)
                continue
            if container.status in ("exited", "dead"):
                code = container.attrs.get("State", {}).get("ExitCode")
                raise NotReadyError(
                    f"{profile.name}: exited during startup (exit code {code}) while waiting "
                    f"for {stage}",
                    self._tail(container),
                )
            if container.status == "running":
                base = self.probe_url(profile, _info(container))
                try:
                    stage, last_problem = self._probe(profile, base, stage, on_step)
                except _Ready:
                    return
            if time.monotonic() >= deadline:
                raise NotReadyError(
                    f"{profile.name}: not ready after {timeout_s:g}s (waiting for {stage}"
                    + (f": {last_problem}" if last_problem else "")
                    + ")",
                    self._tail(container),
                )
            time.sleep(0.25)

    def _get_or_fail(self, profile: Profile) -> Container:
        try:
            container: Container = self.client.containers.get(self.config.container_name)
        except docker.errors.NotFound:
            raise NotReadyError(
                f"{profile.name}: the container disappeared during startup"
            ) from None
        return container

    def _probe(
        self,
        profile: Profile,
        base: str,
        stage: str,
        on_step: OnStep | None,
    ) -> tuple[str, str]:
        """One pass through the readiness ladder; returns the stage reached and the problem,
        raises _Ready at the top."""

        def advance(to: str) -> None:
            if on_step is not None:
                on_step(to)

        served = profile.served_model_name
        try:
            health = httpx.get(f"{base}/health", timeout=5)
            if health.status_code != 200:
                return "health", f"/health answered {health.status_code}"
            if stage == "health":
                advance("health 200")
                stage = "models"
            models = httpx.get(f"{base}/v1/models", timeout=10)
            if models.status_code != 200:
                return "models", f"/v1/models answered {models.status_code}"
            listed = {m.get("id"): m for m in models.json().get("data", [])}
            if served not in listed:
                return "models", f"/v1/models lists {sorted(listed)}, not {served!r}"
            length = listed[served].get("max_model_len")
            if length != profile.max_model_len:
                raise NotReadyError(
                    f"{profile.name}: /v1/models says max_model_len={length}, the profile says "
                    f"{profile.max_model_len}"
                )
            if stage == "models":
                advance(f"/v1/models lists {served} (max_model_len {length})")
                stage = "generation"
            generation = httpx.post(
                f"{base}/v1/completions",
                json={"model": served, "prompt": "Hello", "max_tokens": 4, "temperature": 0},
                timeout=120,
            )
            if generation.status_code != 200:
                return "generation", (
                    f"/v1/completions answered {generation.status_code}: {generation.text[:200]}"
                )
            tokens = (generation.json().get("usage") or {}).get("completion_tokens") or 0
            if tokens < 1:
                return "generation", "the generation returned no tokens"
            advance(f"generation returned {tokens} tokens")
            raise _Ready
        except (httpx.HTTPError, ValueError) as exc:
            return stage, f"{type(exc).__name__}: {exc}"


class _Ready(Exception):  # a control-flow signal: the ladder reached the top
    pass
