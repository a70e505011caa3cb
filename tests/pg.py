"""A throwaway PostgreSQL server for the storage tests: Debian's ``postgresql`` binaries, a data
directory in a temporary folder, 127.0.0.1 on a free port, trust authentication (plus one role that
needs a password, for the password tests), stopped and deleted at the end of the session.

PostgreSQL refuses to run as root, so as root (CI containers) it runs as the ``postgres`` user the
Debian package creates, in a folder that user owns. ``start_server`` raises ``Unavailable`` with a
one-line reason when no server can be started; the fixture in ``tests/conftest.py`` skips on it.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

#: A role that must log in with a password (scram-sha-256), for the password and masking tests.
PW_USER = "golfsweep_pw"
PW_PASSWORD = "pg-Secret-7f3a9c"  # long enough that any copy of it in a file is found by a plain search
_BINARIES = ("initdb", "pg_ctl", "postgres")


class Unavailable(Exception):
    """No PostgreSQL server can be started here (the message says why, in one line)."""


def find_bin_dir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        folder = Path(os.path.realpath(on_path)).parent
        if all((folder / b).exists() for b in _BINARIES):
            return folder
    def version(p: str) -> float:
        try:
            return float(Path(p).parent.name)
        except ValueError:
            return 0.0
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if all((Path(folder) / b).exists() for b in _BINARIES):
            return Path(folder)
    return None


def server_version(bin_dir: Path) -> str:
    """``postgres --version``, e.g. ``postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)``."""
    out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip() or out.stderr.strip()


@dataclass
class PgServer:
    bin_dir: Path
    root: Path
    port: int
    version: str
    _user: tuple[int, int] | None = None  # (uid, gid) the server runs as, when we are root
    _names: itertools.count = field(default_factory=lambda: itertools.count(1))

    def url(self, database: str = "postgres", *, user: str = "postgres", password: str | None = None) -> str:
        auth = f"{user}:{password}" if password is not None else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> list[tuple]:
        """Run one statement as the superuser (autocommit); returns its rows, if any."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=database,
                             autocommit=True) as conn:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else []

    def new_database(self, owner: str = "postgres") -> str:
        """A fresh, empty database (its name)."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.sql(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        return name

    def stop(self) -> None:
        _run(self, [str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop"],
             check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(server: PgServer, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    kw = {}
    if server._user is not None:
        kw = {"user": server._user[0], "group": server._user[1], "extra_groups": []}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=server.root,
                          stdin=subprocess.DEVNULL, **kw)
    if check and proc.returncode != 0:
        text = (proc.stderr or proc.stdout).strip()
        raise Unavailable(f"{Path(argv[0]).name} failed: {text.splitlines()[0] if text else proc.returncode}")
    return proc


def start_server() -> PgServer:
    """Start a throwaway server; raises ``Unavailable`` with the reason when none can be started."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise Unavailable("no PostgreSQL server binaries found (install Debian's postgresql)")
    user = None
    if os.geteuid() == 0:  # postgres refuses root: run it as the postgres user
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise Unavailable("running as root and there is no 'postgres' user to run the server as") from None
        user = (pw.pw_uid, pw.pw_gid)
    root = Path(tempfile.mkdtemp(prefix="golfsweep-pg-"))  # in /tmp itself: the postgres user can reach it
    if user is not None:
        os.chown(root, *user)
    server = PgServer(bin_dir, root, _free_port(), server_version(bin_dir), user)
    try:
        data = root / "data"
        _run(server, [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                      "--locale=C", "--no-sync"])
        hba = data / "pg_hba.conf"  # the password role first (first match wins), everyone else trusted
        hba.write_text(f"host all {PW_USER} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())  # (in place: same owner)
        options = (f"-h 127.0.0.1 -p {server.port} -k {root} -F -c max_connections=200 "
                   f"-c password_encryption=scram-sha-256")
        _run(server, [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
                      "-o", options, "start"])
        server.sql(f"CREATE ROLE {PW_USER} LOGIN PASSWORD '{PW_PASSWORD}'")
    except BaseException as exc:
        log = root / "server.log"
        detail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        server.stop()
        if isinstance(exc, Unavailable):
            raise Unavailable(f"cannot start PostgreSQL: {exc}{' / ' + detail[0] if detail else ''}") from None
        raise Unavailable(f"cannot start PostgreSQL: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    return server
