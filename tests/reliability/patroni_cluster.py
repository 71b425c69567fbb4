"""A three-node PostgreSQL cluster managed by Patroni, with its own etcd, for the failover suite.

Everything lives in one temporary directory and on free loopback ports: one etcd member, and
three Patroni nodes each running PostgreSQL 15 as the ``postgres`` OS user (PostgreSQL refuses
to run as root; the processes are started with that user directly, so the PID this module holds
is Patroni's own, not a wrapper's). The shared server other tests use is never touched.

Settings are the shortest Patroni and etcd accept for a test on a loaded two-core machine:
``ttl`` 5 s, ``loop_wait`` 1 s, ``retry_timeout`` 2 s. The three are whole seconds (Patroni's
schema), and Patroni's rule ``ttl >= loop_wait + 2 * retry_timeout`` holds with equality.
``retry_timeout`` 1 s is not accepted here: with it the remaining nodes could not complete a
single etcd request once the leader died ("Error communicating with DCS" on every loop), so no
failover happened at all. ``ttl`` 3 s with ``retry_timeout`` 2 s does fail over, but breaks the
rule (a leader whose etcd requests are slow could lose its key while still retrying, before it
demotes itself). ``synchronous_mode`` and ``synchronous_mode_strict`` are on (a commit returns
only once a synchronous standby has flushed it, and with no standby the primary stops
committing rather than committing alone); ``use_pg_rewind`` so a failed primary rejoins as a
replica; ``wal_retrieve_retry_interval`` 200 ms so that a standby whose primary went away
reconnects to the new one without PostgreSQL's 5 s pause (the new primary's commits wait for it).

``use_slots`` is off, with ``wal_keep_size`` keeping the WAL a standby may need: with Patroni's
replication slots the remaining standby reattached to a new primary at once but could not
stream until that primary's Patroni had created its slot, which Patroni 3.0 does only once it
has seen the promotion complete (its promote step looks at ``pg_controldata`` once, then waits
for its next loop): 2 s in which strict mode lets no commit return.

The watchdog is on, ``mode: required`` as docs/high-availability.md prescribes for production,
with ``safety_margin`` 2 s (a 3 s timeout; Patroni refuses one shorter than ``loop_wait``, so
its default margin of 5 s cannot be used with ``ttl`` 5). The device is emulated
(``watchdog_device.py``): a primary whose Patroni stopped renewing the leader key is reset —
Patroni and PostgreSQL SIGKILLed — 3 s after the last renewal, before the key expires.

Every process is stopped by its PID when the cluster is closed, also after a failure: Patroni
with SIGTERM (it stops its PostgreSQL), then anything left with SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from tests.reliability.harness import free_port
from tests.reliability.watchdog_device import EmulatedWatchdog

PG_BIN = Path(os.environ.get("QWALLET_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
TTL_S = 5
LOOP_WAIT_S = 1
RETRY_TIMEOUT_S = 2
# Seconds between the watchdog resetting a primary whose Patroni went silent and its leader key
# expiring: the watchdog's timeout is TTL_S - WATCHDOG_SAFETY_MARGIN_S.
WATCHDOG_SAFETY_MARGIN_S = 2
WATCHDOG_TIMEOUT_S = TTL_S - WATCHDOG_SAFETY_MARGIN_S
NODES = 3
SCOPE = "qwallet-test"


def cluster_unavailable() -> str | None:
    """Why this machine cannot run the cluster, or None."""
    if os.geteuid() != 0:
        return "the Patroni cluster needs root (to run PostgreSQL as the postgres user)"
    for tool in ("etcd", "patroni", "patronictl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian packages etcd-server and patroni)"
    if not (PG_BIN / "postgres").exists():
        return f"no PostgreSQL binaries in {PG_BIN}"
    return None


def _postgres_ids() -> tuple[int, int]:
    return pwd.getpwnam("postgres").pw_uid, grp.getgrnam("postgres").gr_gid


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc), e.g. a postmaster's backends."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found.append(int(entry.name))
    return found


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is not alive.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


def _http_json(url: str, timeout_s: float = 2.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            return int(error.code), json.loads(body or b"null")
        except ValueError:
            return int(error.code), None


class EtcdProcess:
    """One etcd member on loopback ports; its data in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.client_port = free_port()
        self.peer_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def start(self, timeout_s: float = 30) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        client = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        with open(self.directory / "etcd.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    "etcd", "--name", "etcd0", "--data-dir", str(self.directory / "data"),
                    "--listen-client-urls", client, "--advertise-client-urls", client,
                    "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                    "--initial-cluster", f"etcd0={peer}", "--initial-cluster-state", "new",
                    "--initial-cluster-token", f"qwallet-{self.client_port}",
                ],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.tail()
            with contextlib.suppress(OSError):
                if _http_json(f"{client}/health")[0] == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"etcd not healthy after {timeout_s} s: {self.tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            _signal(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                _signal(self.process.pid, signal.SIGKILL)
                self.process.wait(10)

    def tail(self, size: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return (self.directory / "etcd.log").read_text(errors="replace")[-size:]
        return ""


@dataclass
class PatroniNode:
    """One Patroni-managed PostgreSQL node."""

    name: str
    directory: Path
    pg_port: int
    api_port: int
    process: subprocess.Popen[bytes] | None = None
    patroni_kills: int = 0
    postgres_kills: int = 0
    watchdog: EmulatedWatchdog | None = None
    # start() may be called by the fault injector and by the watchdog's "boot" at once.
    _start_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def config_path(self) -> Path:
        return self.directory / "patroni.yml"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def watchdog_path(self) -> Path:
        return self.directory / "watchdog"

    def start(self) -> None:
        with self._start_lock:
            assert self.process is None or self.process.poll() is not None, "already running"
            self._start()

    def start_if_stopped(self) -> None:
        """Start Patroni unless it runs (a service manager's restart, a machine's boot)."""
        with self._start_lock:
            if not self.patroni_alive():
                self._start()

    def _start(self) -> None:
        uid, gid = _postgres_ids()
        with open(self.directory / "patroni.log", "ab") as log:
            self.process = subprocess.Popen(
                ["patroni", str(self.config_path)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                user=uid,
                group=gid,
                extra_groups=[],
                cwd=self.directory,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.directory)},
                start_new_session=True,
            )

    def patroni_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def postmaster_pid(self) -> int | None:
        """The running postmaster's PID (first line of postmaster.pid), or None."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            if _alive(pid):
                return pid
        return None

    def kill_postgres(self) -> None:
        """SIGKILL the postmaster and every backend it started, as the OOM killer might."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        for child in _children(pid):
            _signal(child, signal.SIGKILL)
        _signal(pid, signal.SIGKILL)
        self.postgres_kills += 1

    def kill_patroni(self) -> None:
        """SIGKILL Patroni only: its PostgreSQL keeps running, orphaned."""
        if self.process is not None and self.process.poll() is None:
            _signal(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            self.patroni_kills += 1

    def crash(self) -> bool:
        """The machine dies: Patroni and PostgreSQL SIGKILLed together. False when neither was
        running (the machine was already down)."""
        running = self.patroni_alive() or self.postmaster_pid() is not None
        self.kill_patroni()
        self.kill_postgres()
        return running

    @property
    def watchdog_resets(self) -> list[float]:
        return [] if self.watchdog is None else self.watchdog.resets

    def freeze(self, on: bool) -> None:
        """SIGSTOP / SIGCONT Patroni and PostgreSQL: a node that hangs without closing anything."""
        sig = signal.SIGSTOP if on else signal.SIGCONT
        pids = [self.process.pid] if self.patroni_alive() and self.process is not None else []
        if (postmaster := self.postmaster_pid()) is not None:
            pids += [postmaster, *_children(postmaster)]
        for pid in pids:
            _signal(pid, sig)

    def status(self) -> dict[str, Any] | None:
        """Patroni's ``GET /patroni`` (role, state, timeline), or None when it does not answer."""
        with contextlib.suppress(OSError, ValueError):
            _code, body = _http_json(f"{self.api}/patroni", timeout_s=1.0)
            if isinstance(body, dict):
                return body
        return None

    def stop(self, timeout_s: float = 15) -> None:
        """SIGTERM Patroni (it stops PostgreSQL), then SIGKILL whatever is left, by PID."""
        if self.patroni_alive() and self.process is not None:
            _signal(self.process.pid, signal.SIGCONT)
            _signal(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                _signal(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        pid = self.postmaster_pid()
        if pid is not None:
            for child in _children(pid):
                _signal(child, signal.SIGCONT)
            _signal(pid, signal.SIGCONT)
            _signal(pid, signal.SIGQUIT)  # immediate shutdown; backends follow
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                for child in _children(pid):
                    _signal(child, signal.SIGKILL)
                _signal(pid, signal.SIGKILL)

    def tail(self, size: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return (self.directory / "patroni.log").read_text(errors="replace")[-size:]
        return ""


class PatroniCluster:
    """etcd and three Patroni nodes. Use as a context manager: closing stops every process."""

    def __init__(self, *, database: str = "qwallet") -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="qwallet-patroni-"))
        os.chmod(self.directory, 0o755)
        self.database = database
        self.etcd = EtcdProcess(self.directory / "etcd")
        self.nodes = [
            PatroniNode(f"pg{i}", self.directory / f"pg{i}", free_port(), free_port())
            for i in range(NODES)
        ]

    # -- life cycle -----------------------------------------------------------------------------

    def __enter__(self) -> PatroniCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, timeout_s: float = 120) -> None:
        self.etcd.start()
        uid, gid = _postgres_ids()
        for node in self.nodes:
            node.directory.mkdir(parents=True)
            node.config_path.write_text(self._config(node))
            os.chown(node.directory, uid, gid)
            os.chown(node.config_path, uid, gid)
            # A reset machine boots again once its leader key can have expired.
            node.watchdog = EmulatedWatchdog(
                node.watchdog_path,
                reset=node.crash,
                boot=node.start_if_stopped,
                boot_after_s=TTL_S + 3,
                uid=uid,
                gid=gid,
            )
        # The first node bootstraps the cluster; the others are cloned from it.
        first = self.nodes[0]
        first.start()
        self.wait_for(
            lambda: self.leader() is not None or not first.patroni_alive(), timeout_s, "a leader"
        )
        if not first.patroni_alive():
            raise RuntimeError(f"patroni exited: {first.tail()}")
        for node in self.nodes[1:]:
            node.start()
        self.wait_healthy(timeout_s)
        self.create_database()

    def close(self) -> None:
        for node in self.nodes:
            if node.watchdog is not None:
                node.watchdog.stop()  # no reset or boot while the cluster is taken down
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()
            if node.watchdog is not None:
                node.watchdog.close()
        with contextlib.suppress(Exception):
            self.etcd.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def keep_logs(self, directory: Path) -> None:
        """Copy etcd's and every node's Patroni log to ``directory`` (to read after a run)."""
        directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.copy(self.etcd.directory / "etcd.log", directory / "etcd.log")
        for node in self.nodes:
            with contextlib.suppress(OSError):
                shutil.copy(node.directory / "patroni.log", directory / f"{node.name}.log")

    def _config(self, node: PatroniNode) -> str:
        # JSON is YAML: written with json.dumps so no quoting can go wrong.
        config = {
            "scope": SCOPE,
            "name": node.name,
            # To stderr, which start() sends to patroni.log; milliseconds, to set beside the
            # Timeline.
            "log": {
                "level": "INFO",
                "format": "%(asctime)s.%(msecs)03d %(levelname)s: %(message)s",
                "dateformat": "%Y-%m-%d %H:%M:%S",
            },
            "restapi": {
                "listen": f"127.0.0.1:{node.api_port}",
                "connect_address": f"127.0.0.1:{node.api_port}",
            },
            "etcd3": {"hosts": [self.etcd.endpoint]},
            "bootstrap": {
                "dcs": {
                    "ttl": TTL_S,
                    "loop_wait": LOOP_WAIT_S,
                    "retry_timeout": RETRY_TIMEOUT_S,
                    "maximum_lag_on_failover": 1048576,
                    "synchronous_mode": True,
                    "synchronous_mode_strict": True,
                    "postgresql": {
                        "use_pg_rewind": True,
                        # See the module's docstring: a slot on the new primary came 2 s after
                        # the promotion, and strict mode waited for it.
                        "use_slots": False,
                        "parameters": {
                            "max_connections": 100,
                            "wal_log_hints": "on",
                            # Without slots this is what a standby or a rewound primary
                            # catches up from: far more than a test writes while one is down.
                            "wal_keep_size": "512MB",
                            "shared_buffers": "32MB",
                            "max_wal_senders": 10,
                            "max_replication_slots": 10,
                            "hot_standby": "on",
                            # A standby whose primary went away retries this often (5 s by
                            # default): after a failover the new primary's commits wait for
                            # it in strict mode, so the default alone added up to 5 s.
                            "wal_retrieve_retry_interval": "200ms",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, "data-checksums", {"auth": "trust"}],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{node.pg_port}",
                "connect_address": f"127.0.0.1:{node.pg_port}",
                "data_dir": str(node.data_dir),
                "bin_dir": str(PG_BIN),
                "pgpass": str(node.directory / "pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres", "password": "postgres"},
                    "replication": {"username": "replicator", "password": "replicator"},
                    "rewind": {"username": "postgres", "password": "postgres"},
                },
                "parameters": {
                    "unix_socket_directories": str(node.directory),
                    "fsync": "off",  # a test cluster: durability comes from the sync standby
                    # Evidence for a slow recovery (evidence.py): PostgreSQL writes into
                    # patroni.log; with milliseconds and the client's name, and each standby's
                    # START_REPLICATION, it can be set beside Patroni's lines and the timeline.
                    "log_line_prefix": "%m [%p] %a: ",
                    "log_replication_commands": "on",
                },
                "pg_hba": [
                    "local all all trust",
                    "host replication all 127.0.0.1/32 trust",
                    "host all all 127.0.0.1/32 trust",
                ],
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False},
            # Patroni's own test driver writes to the emulated device's pipe (watchdog_device.py).
            "watchdog": {
                "mode": "required",
                "driver": "testing",
                "device": str(node.watchdog_path),
                "safety_margin": WATCHDOG_SAFETY_MARGIN_S,
            },
        }
        return json.dumps(config, indent=2)

    # -- state ----------------------------------------------------------------------------------

    def members(self) -> list[dict[str, Any]]:
        """Patroni's ``GET /cluster`` member list from any node that answers."""
        for node in self.nodes:
            with contextlib.suppress(OSError, ValueError):
                code, body = _http_json(f"{node.api}/cluster", timeout_s=1.0)
                if code == 200 and isinstance(body, dict):
                    return list(body.get("members", []))
        return []

    def leader(self) -> PatroniNode | None:
        for member in self.members():
            if member.get("role") == "leader" and member.get("state") == "running":
                return self.node(str(member["name"]))
        return None

    def sync_standby(self) -> PatroniNode | None:
        for member in self.members():
            if member.get("role") == "sync_standby" and member.get("state") in (
                "running",
                "streaming",
            ):
                return self.node(str(member["name"]))
        return None

    def node(self, name: str) -> PatroniNode:
        return next(node for node in self.nodes if node.name == name)

    def healthy(self) -> bool:
        """A leader, a synchronous standby, and every node running and streaming on the
        leader's timeline (a rejoining old primary reports a small lag from its own, older
        timeline before Patroni notices the fork and rewinds it)."""
        members = self.members()
        if len(members) != NODES:
            return False
        roles = [m.get("role") for m in members]
        states = {m.get("state") for m in members}
        timelines = {m.get("timeline") for m in members}
        # A replica's lag is bytes behind the leader, or the text "unknown" while it starts.
        lags_ok = all(
            m.get("role") == "leader" or (isinstance(m.get("lag"), int) and m["lag"] < 1 << 20)
            for m in members
        )
        return (
            roles.count("leader") == 1
            and "sync_standby" in roles
            and states <= {"running", "streaming"}
            and lags_ok
            and len(timelines) == 1
            and None not in timelines
        )

    def wait_for(self, condition: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.2)
        raise RuntimeError(f"no {what} after {timeout_s} s: {self.describe()}")

    def wait_healthy(self, timeout_s: float = 90) -> None:
        self.wait_for(self.healthy, timeout_s, "healthy cluster")

    def describe(self) -> str:
        lines = [json.dumps(self.members())]
        for node in self.nodes:
            lines.append(f"--- {node.name} patroni log ---\n{node.tail(1500)}")
        return "\n".join(lines)

    # -- connecting -----------------------------------------------------------------------------

    def url(self, database: str | None = None, *, attrs: str = "read-write") -> str:
        hosts = ",".join(f"127.0.0.1:{node.pg_port}" for node in self.nodes)
        return (
            f"postgresql://postgres@{hosts}/{database or self.database}"
            f"?target_session_attrs={attrs}"
        )

    def node_url(self, node: PatroniNode, database: str | None = None) -> str:
        return f"postgresql://postgres@127.0.0.1:{node.pg_port}/{database or self.database}"

    def psql(self, node: PatroniNode, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [str(PG_BIN / "psql"), "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(node.pg_port),
             "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-c", sql],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        return result.stdout.strip()

    def create_database(self) -> None:
        leader = self.leader()
        assert leader is not None
        self.psql(leader, f'CREATE DATABASE "{self.database}"')

    # -- operations -----------------------------------------------------------------------------

    def patronictl(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["patronictl", "-c", str(self.nodes[0].config_path), *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            env={**os.environ, "HOME": str(self.directory)},
        )

    def switchover(self, candidate: PatroniNode) -> subprocess.CompletedProcess[str]:
        leader = self.leader()
        assert leader is not None
        return self.patronictl(
            "switchover", SCOPE, "--leader", leader.name, "--candidate", candidate.name, "--force"
        )

    def failover(self, candidate: PatroniNode) -> subprocess.CompletedProcess[str]:
        return self.patronictl("failover", SCOPE, "--candidate", candidate.name, "--force")


class Timeline:
    """What the cluster did, timestamped, beside the load: which node Patroni calls the running
    leader (``GET /cluster``) and when a durable write last succeeded directly on a node.

    A thread polls every ``interval_s``; a second one writes a row into a table of the
    ``postgres`` database on whichever node is not in recovery, one fresh connection per node
    with its own short timeout (closed, never cancelled, on a timeout: a commit wait is left to
    finish). So a recovery can be split into Patroni's part (the old leader gone, a new one
    running, a commit confirmed by the synchronous standby) and the part after it that is
    qwallet's (its pool noticing and reconnecting, the caller's next try).
    """

    def __init__(self, cluster: PatroniCluster, interval_s: float = 0.1) -> None:
        self.cluster = cluster
        self.interval_s = interval_s
        self.leaders: list[tuple[float, str | None, str | None]] = []
        self.writes: list[tuple[float, bool, str | None]] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._watch_leader, daemon=True),
            threading.Thread(target=self._watch_writes, daemon=True),
        ]

    def __enter__(self) -> Timeline:
        for node in self.cluster.nodes:
            if node is self.cluster.leader():
                self.cluster.psql(
                    node, "CREATE TABLE IF NOT EXISTS timeline_probe (at double precision)"
                )
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _watch_leader(self) -> None:
        while not self._stop.is_set():
            leader = sync = None
            for member in self.cluster.members():
                running = member.get("state") in ("running", "streaming")
                if member.get("role") == "leader" and running:
                    leader = str(member["name"])
                elif member.get("role") == "sync_standby" and running:
                    sync = str(member["name"])
            if not self.leaders or self.leaders[-1][1:] != (leader, sync):
                self.leaders.append((time.monotonic(), leader, sync))
            self._stop.wait(2 * self.interval_s)  # Patroni's REST API is not free to ask

    def _watch_writes(self) -> None:
        asyncio.run(self._write_loop())

    # Every failure of the probe is an observation, whatever asyncpg raises for a connection
    # closed under a statement (an interface error, an internal client error): never a crash
    # of the thread.

    async def _write_loop(self) -> None:
        connection: tuple[str, asyncpg.Connection] | None = None
        while not self._stop.is_set():
            if connection is None:
                connection = await self._connect_primary()
            node = None
            if connection is not None:
                node, link = connection
                if not await self._write(link):
                    link.terminate()
                    connection = node = None
            ok = node is not None
            if not self.writes or self.writes[-1][1:] != (ok, node):
                self.writes.append((time.monotonic(), ok, node))
            await asyncio.sleep(self.interval_s)
        if connection is not None:
            connection[1].terminate()

    async def _connect_primary(self) -> tuple[str, asyncpg.Connection] | None:
        """A connection to the first node that is not in recovery, each tried for 0.5 s."""
        for node in self.cluster.nodes:
            try:
                link = await asyncpg.connect(self.cluster.node_url(node, "postgres"), timeout=0.5)
            except Exception:
                continue
            if link.get_settings().in_hot_standby == "off":
                return node.name, link
            link.terminate()
        return None

    @staticmethod
    async def _write(link: asyncpg.Connection) -> bool:
        """One row committed, the commit confirmed by the synchronous standby within 1 s."""
        timer = asyncio.get_running_loop().call_later(1.0, link.terminate)
        try:
            await link.execute("INSERT INTO timeline_probe VALUES ($1)", time.monotonic())
            return True
        except Exception:
            return False
        finally:
            timer.cancel()

    def after(self, start: float, end: float) -> dict[str, Any]:
        """Seconds from ``start`` (a fault) to: the leader lost or changed, a leader running
        again, a synchronous standby named for it, durable direct writes failing first, and
        succeeding again after that (before ``end``, the next fault); and every outage of the
        direct writes in that window, [failed, writing again] (None: not again before ``end``)."""

        def since(moment: float | None) -> float | None:
            return None if moment is None else round(moment - start, 2)

        leaders = [entry for entry in self.leaders if entry[0] <= end]
        before = next((name for t, name, _ in reversed(leaders) if t <= start), None)
        lost = next((t for t, name, _ in leaders if t > start and name != before), None)
        back = sync = None
        if lost is not None:
            back = next((t for t, name, _ in leaders if t >= lost and name is not None), None)
        if back is not None:
            sync = next((t for t, _, standby in leaders if t >= back and standby is not None), None)
        writes = [entry for entry in self.writes if start < entry[0] <= end]
        failed = [t for t, ok, _ in writes if not ok]
        writable = None
        if failed:  # the end of the first outage after the fault
            writable = next((t for t, ok, _ in writes if t > failed[0] and ok), None)
        # Every outage, not only the first: writes may fail again after they came back (a
        # synchronous standby named that then goes away), which "durableWriteS" cannot show.
        outages: list[list[float | None]] = []
        for t, ok, _ in writes:
            if not ok and (not outages or outages[-1][1] is not None):
                outages.append([since(t), None])
            elif ok and outages and outages[-1][1] is None:
                outages[-1][1] = since(t)
        return {
            "leaderLostS": since(lost),
            "leaderRunningS": since(back),
            "syncStandbyS": since(sync),
            "writesFailedS": since(failed[0] if failed else None),
            "durableWriteS": since(writable),
            "writeOutagesS": outages,
        }


__all__ = [
    "LOOP_WAIT_S",
    "RETRY_TIMEOUT_S",
    "TTL_S",
    "WATCHDOG_SAFETY_MARGIN_S",
    "WATCHDOG_TIMEOUT_S",
    "PatroniCluster",
    "PatroniNode",
    "Timeline",
    "cluster_unavailable",
]
