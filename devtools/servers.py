"""Real PostgreSQL (the binaries bundled by pgserver) and moto servers on local TCP ports.

Used by `make run` and the test suite; never shipped in the container image.
"""

import contextlib
import http.client
import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import psutil

with warnings.catch_warnings():
    # pgserver resolves a runtime directory at import time and warns when XDG_RUNTIME_DIR is
    # unset (root in a container); we never use that directory.
    warnings.simplefilter("ignore")
    from pgserver._commands import POSTGRES_BIN_PATH, initdb, pg_ctl
    from pgserver.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

HOST = "127.0.0.1"
PG_USER = "postgres"
# postgres refuses to run as root; pgserver's convention is this system user.
_PG_SYSTEM_USER = "pgserver"
# sun_path is 104 bytes on macOS and 108 on Linux, trailing NUL included.
_SOCKET_PATH_MAX = 100
_PG_TIMEOUT_S = 60
_MOTO_START_TIMEOUT_S = 30.0
_MOTO_STOP_TIMEOUT_S = 5.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether 127.0.0.1:`port` can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _postgres_process_owner() -> dict[str, Any]:
    """subprocess.run() arguments that make initdb/pg_ctl/postgres run as a non-root user."""
    if os.geteuid() != 0:
        return {}
    ensure_user_exists(_PG_SYSTEM_USER)
    entry = pwd.getpwnam(_PG_SYSTEM_USER)
    read = stat.S_IRGRP | stat.S_IROTH
    execute = stat.S_IXGRP | stat.S_IXOTH
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH, read | execute)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


class _Server:
    """`with start_...() as server:` stops the server on the way out."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedPostgres(_Server):
    """A PostgreSQL cluster in `data_dir`, served on 127.0.0.1:`port` with trust auth.

    Create it with start_postgres(); stop() (or leaving the `with` block) shuts it down.
    """

    def __init__(self, data_dir: Path, port: int, *, durable: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.durable = durable
        self.dsn = self.dsn_for("postgres")
        self.log_path = self.data_dir / "postgres.log"
        self._owner: dict[str, Any] = {}
        self._socket_tmp_dir: Path | None = None
        self._started = False

    def dsn_for(self, database: str) -> str:
        return f"postgresql://{PG_USER}@{HOST}:{self.port}/{quote(database, safe='')}"

    def create_database(self, name: str) -> str:
        """Create database `name` unless it already exists; return its DSN."""
        # \gexec runs each result cell as a statement, so nothing runs if the database exists.
        script = (
            "SELECT format('CREATE DATABASE %I', :'name')"
            " WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name') \\gexec\n"
        )
        command = [str(POSTGRES_BIN_PATH / "psql"), "-X", "-w", "-q", "-v", "ON_ERROR_STOP=1"]
        command += ["-v", f"name={name}", "-d", self.dsn]
        result = subprocess.run(command, input=script, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"could not create database {name!r}: {result.stderr.strip()}")
        return self.dsn_for(name)

    def stop(self) -> None:
        """Fast shutdown (rolls back open transactions) and wait; safe to call twice."""
        if not self._started:
            return
        self._started = False
        postmaster = self._postmaster()
        if postmaster is not None:
            self._shut_down(postmaster)
        if self._socket_tmp_dir is not None:
            shutil.rmtree(self._socket_tmp_dir, ignore_errors=True)
            self._socket_tmp_dir = None

    def _start(self) -> None:
        self._owner = _postgres_process_owner()
        if not (self.data_dir / "PG_VERSION").exists():
            self._init_cluster()
        self._clear_leftover_postmaster()

        options = ["-h", HOST, "-p", str(self.port), "-k", str(self._socket_dir())]
        options += ["-c", "max_connections=200"]
        if not self.durable:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
            options += ["-c", "full_page_writes=off"]
        # pg_ctl pastes -o into a shell command line, hence shlex.
        args = ["-w", "-t", str(_PG_TIMEOUT_S), "-l", str(self.log_path)]
        args += ["-o", shlex.join(options), "start"]
        self._started = True
        try:
            pg_ctl(
                args,
                pgdata=self.data_dir,
                cwd=self.data_dir,
                timeout=_PG_TIMEOUT_S + 10,
                **self._owner,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            self.stop()
            raise RuntimeError(
                f"PostgreSQL did not start on {HOST}:{self.port} ({exc}); "
                f"log {self.log_path}:\n{_tail(self.log_path)}"
            ) from exc
        except BaseException:
            self.stop()
            raise

    def _init_cluster(self) -> None:
        # initdb writes PG_VERSION first: run it in a staging directory renamed into place, so an
        # interrupted initdb cannot leave a half-made cluster that later starts take for a real one.
        staging = self.data_dir.with_name(f".{self.data_dir.name}.initdb")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        if self._owner:
            ensure_prefix_permissions(staging)
            os.chown(staging, self._owner["user"], self._owner["group"])
        # --no-locale: the host's LANG may name a locale that is not installed.
        args = ["--auth=trust", "--encoding=utf8", "--no-locale", "-U", PG_USER]
        initdb(args, pgdata=staging, cwd=staging, **self._owner)
        # Replaces data_dir if it is an empty directory; fails if it holds anything.
        staging.rename(self.data_dir)

    def _socket_dir(self) -> Path:
        if len(os.fsencode(self.data_dir / f".s.PGSQL.{self.port}")) <= _SOCKET_PATH_MAX:
            return self.data_dir
        self._socket_tmp_dir = Path(tempfile.mkdtemp(prefix="pg-"))
        if self._owner:
            os.chown(self._socket_tmp_dir, self._owner["user"], self._owner["group"])
        return self._socket_tmp_dir

    def _postmaster(self) -> psutil.Process | None:
        """The live postmaster serving data_dir, if any.

        postmaster.pid alone is not proof: after a reboot or in a new container its pid may
        belong to an unrelated process. The postmaster chdirs into its data directory.
        """
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
            process = psutil.Process(pid)
            if Path(process.cwd()).resolve() == self.data_dir:
                return process
        except (OSError, ValueError, psutil.Error):
            pass
        return None

    def _clear_leftover_postmaster(self) -> None:
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        postmaster = self._postmaster()
        if postmaster is not None:
            self._shut_down(postmaster)
        else:
            # postgres refuses to start while the recorded pid is alive, even if it was reused.
            pid_file.unlink(missing_ok=True)

    def _shut_down(self, postmaster: psutil.Process) -> None:
        try:
            pg_ctl(
                ["-w", "-t", str(_PG_TIMEOUT_S), "-m", "fast", "stop"],
                pgdata=self.data_dir,
                cwd=self.data_dir,
                timeout=_PG_TIMEOUT_S + 10,
                **self._owner,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            # SIGQUIT is postgres' immediate shutdown: no checkpoint, crash recovery next start.
            with contextlib.suppress(psutil.Error):
                postmaster.send_signal(signal.SIGQUIT)
                postmaster.wait(_PG_TIMEOUT_S)


def start_postgres(data_dir: Path, port: int | None = None, *, durable: bool = True) -> EmbeddedPostgres:
    """Start PostgreSQL on `data_dir` (initialised on first use), listening on 127.0.0.1.

    `durable=False` turns fsync off: for throw-away test clusters only.
    """
    server = EmbeddedPostgres(data_dir, free_port() if port is None else port, durable=durable)
    server._start()
    return server


class MotoServer(_Server):
    """A `moto.server` subprocess (all AWS services in one process) on 127.0.0.1:`port`."""

    def __init__(self, port: int, log_path: Path | None = None) -> None:
        self.port = port
        self.endpoint_url = f"http://{HOST}:{port}"
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def reset(self) -> None:
        """Wipe every resource of every service."""
        status = self._request("POST", "/moto-api/reset", timeout=30)
        if status != 200:
            raise RuntimeError(f"moto reset answered HTTP {status}")

    def stop(self) -> None:
        """Terminate the server (kill it if it lingers) and wait; safe to call twice."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            # start_new_session made the server its own process group leader.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(_MOTO_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def _start(self) -> None:
        if not port_is_free(self.port):
            # Otherwise whatever listens there would answer the readiness probe.
            raise RuntimeError(f"cannot start moto: {HOST}:{self.port} is already in use")
        command = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)]
        with (
            self.log_path.open("ab")
            if self.log_path is not None
            else contextlib.nullcontext(subprocess.DEVNULL)
        ) as output:
            # Own session: the terminal's Ctrl-C must not kill it before its users stop.
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_until_answering(self._process)
        except BaseException:
            self.stop()
            raise

    def _wait_until_answering(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + _MOTO_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                where = f"; log {self.log_path}:\n{_tail(self.log_path)}" if self.log_path else ""
                raise RuntimeError(f"moto exited with code {process.returncode}{where}")
            with contextlib.suppress(OSError):
                self._request("GET", "/moto-api/", timeout=1)
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"moto did not answer on {self.endpoint_url} within {_MOTO_START_TIMEOUT_S} s"
                )
            time.sleep(0.1)

    def _request(self, method: str, path: str, *, timeout: float) -> int:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()


def start_moto(port: int | None = None, log_path: Path | None = None) -> MotoServer:
    """Start a moto server on 127.0.0.1 and return once it answers HTTP."""
    server = MotoServer(free_port() if port is None else port, log_path)
    server._start()
    return server
