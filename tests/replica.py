"""A PostgreSQL primary and its streaming replica on loopback, for tests/test_read_replica.py.

The main cluster (port 5432) holds the benchmark databases (gigabytes): a base backup of it would
take minutes, so the tests start a small primary of their own (initdb) and its replica
(`pg_basebackup -R`), each on a free port, under /var/tmp. Idempotent: clusters already running
are reused, stopped ones restarted, a directory that does not come up streaming is recreated.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time

import sqlalchemy as sa


def _bin() -> str:
    # Debian installs each major version's server binaries apart; the newest one serves.
    versions = [path for path in glob.glob("/usr/lib/postgresql/*/bin")
                if path.split("/")[-2].isdigit()]
    versions.sort(key=lambda path: int(path.split("/")[-2]))
    return os.environ.get("PG_BIN") or (versions[-1] if versions else "/usr/lib/postgresql/bin")


BIN = _bin()
BASE = os.environ.get("TEST_REPLICA_DIR", "/var/tmp/ciie-test-replica")
# Settings of a throwaway cluster: durability off (the tests rebuild it), small memory.
PRIMARY_SETTINGS = ("listen_addresses = '127.0.0.1'\nunix_socket_directories = '{base}'\n"
                    "fsync = off\nfull_page_writes = off\nshared_buffers = 32MB\n"
                    "max_connections = 60\nwal_level = replica\nmax_wal_senders = 5\n")
# The replica reports what it still reads, so exports are not cancelled by the primary's
# vacuum (docs/production.md).
REPLICA_SETTINGS = "hot_standby = on\nhot_standby_feedback = on\n"


def available() -> str | None:
    """Why the clusters cannot be started here, or None."""
    missing = [b for b in ("initdb", "pg_ctl", "pg_basebackup") if
               not os.access(os.path.join(BIN, b), os.X_OK)]
    return f"PostgreSQL binaries missing in {BIN}: {', '.join(missing)}" if missing else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(*args: str, check: bool = True, timeout: float = 120) -> str:
    # initdb and postgres refuse to run as root.
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    done = subprocess.run(prefix + list(args), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr or done.stdout}")
    return done.stdout


class ReplicaPair:
    """The primary and replica clusters: their servers' URLs, stop and start of the replica."""

    def __init__(self, base: str = BASE, settings: str = "") -> None:
        self.base = base
        # More settings of the primary (bench/replica.py gives a benchmark's memory).
        self.settings = settings
        self.primary_dir = os.path.join(base, "primary")
        self.replica_dir = os.path.join(base, "replica")

    def url(self, port: int) -> str:
        return f"postgresql://postgres@127.0.0.1:{port}"

    @property
    def primary_url(self) -> str:
        return self.url(self._port(self.primary_dir))

    @property
    def replica_url(self) -> str:
        return self.url(self._port(self.replica_dir))

    def _port(self, data_dir: str) -> int:
        with open(os.path.join(data_dir, "ciie-port"), encoding="ascii") as fh:
            return int(fh.read())

    def _configure(self, data_dir: str, settings: str) -> None:
        port = _free_port()
        with open(os.path.join(data_dir, "postgresql.auto.conf"), "a", encoding="ascii") as fh:
            fh.write(settings.format(base=self.base) + f"port = {port}\n")
        with open(os.path.join(data_dir, "ciie-port"), "w", encoding="ascii") as fh:
            fh.write(str(port))
        if os.geteuid() == 0:
            shutil.chown(os.path.join(data_dir, "ciie-port"), "postgres", "postgres")

    def _running(self, data_dir: str) -> bool:
        if not os.path.exists(os.path.join(data_dir, "ciie-port")):
            return False
        return subprocess.run([os.path.join(BIN, "pg_isready"), "-q", "-h", "127.0.0.1", "-p",
                               str(self._port(data_dir))]).returncode == 0

    def _start(self, data_dir: str) -> bool:
        if self._running(data_dir):
            return True
        if not os.path.exists(os.path.join(data_dir, "PG_VERSION")):
            return False
        _as_postgres(os.path.join(BIN, "pg_ctl"), "-D", data_dir, "-l",
                     os.path.join(self.base, os.path.basename(data_dir) + ".log"),
                     "-w", "-t", "30", "start", check=False)
        return self._running(data_dir)

    def _create_primary(self) -> None:
        shutil.rmtree(self.primary_dir, ignore_errors=True)
        _as_postgres(os.path.join(BIN, "initdb"), "-D", self.primary_dir, "-U", "postgres",
                     "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        self._configure(self.primary_dir, PRIMARY_SETTINGS + self.settings)
        if not self._start(self.primary_dir):
            raise RuntimeError(f"primary cluster in {self.primary_dir} did not start")

    def _create_replica(self) -> None:
        shutil.rmtree(self.replica_dir, ignore_errors=True)
        _as_postgres(os.path.join(BIN, "pg_basebackup"), "-h", "127.0.0.1", "-p",
                     str(self._port(self.primary_dir)), "-U", "postgres", "-D",
                     self.replica_dir, "-R", "-X", "stream", "--no-sync")
        os.remove(os.path.join(self.replica_dir, "ciie-port"))
        self._configure(self.replica_dir, REPLICA_SETTINGS)
        if not self._start(self.replica_dir):
            raise RuntimeError(f"replica cluster in {self.replica_dir} did not start")

    def ensure(self) -> ReplicaPair:
        """Both clusters up and the replica streaming from the primary."""
        if not os.path.isdir(self.base):
            os.makedirs(self.base)
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        if not self._start(self.primary_dir):
            self._create_primary()
            shutil.rmtree(self.replica_dir, ignore_errors=True)
        if not (self._start(self.replica_dir) and self.wait_streaming(timeout=15)):
            self.stop_replica()
            self._create_replica()
            if not self.wait_streaming():
                raise RuntimeError(f"replica in {self.replica_dir} is not streaming: see "
                                   f"{self.replica_dir}.log")
        return self

    def _replica_status(self) -> tuple[bool, str | None]:
        engine = sa.create_engine(f"{self.replica_url}/postgres", poolclass=sa.NullPool)
        try:
            with engine.connect() as conn:
                return (conn.scalar(sa.text("SELECT pg_is_in_recovery()")),
                        conn.scalar(sa.text("SELECT status FROM pg_stat_wal_receiver")))
        finally:
            engine.dispose()

    def wait_streaming(self, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self._replica_status() == (True, "streaming"):
                    return True
            except sa.exc.OperationalError:
                pass
            time.sleep(0.2)
        return False

    def wait_database(self, name: str, timeout: float = 60) -> None:
        """Wait for a database created on the primary to reach the replica."""
        deadline = time.monotonic() + timeout
        engine = sa.create_engine(f"{self.replica_url}/postgres", poolclass=sa.NullPool)
        try:
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    if conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                   {"n": name}):
                        return
                time.sleep(0.1)
        finally:
            engine.dispose()
        raise RuntimeError(f"database {name} did not reach the replica")

    def stop_replica(self) -> None:
        if os.path.exists(os.path.join(self.replica_dir, "PG_VERSION")):
            _as_postgres(os.path.join(BIN, "pg_ctl"), "-D", self.replica_dir, "-m", "fast",
                         "-w", "stop", check=False)

    def start_replica(self) -> None:
        if not (self._start(self.replica_dir) and self.wait_streaming()):
            raise RuntimeError("replica did not come back")

    def stop(self) -> None:
        self.stop_replica()
        _as_postgres(os.path.join(BIN, "pg_ctl"), "-D", self.primary_dir, "-m", "fast", "-w",
                     "stop", check=False)
