"""A throwaway Citus cluster for test/citus: a coordinator and two workers.

Three data directories under one temporary directory, each server on loopback only
(127.0.0.1) with its Unix socket in that directory, trust authentication for local
connections, shared_preload_libraries = citus.  Nothing here builds or installs Citus:
it must already be installed in the PostgreSQL whose pg_config is on PATH (or named by
PG_CONFIG); installed() says whether it is.

    c = Cluster(base_port=55431); c.start(); ...; c.stop()

Ports: R4_CITUS_PORT (default 55431) for the coordinator, +1 and +2 for the workers.
"""

import os
import shutil
import subprocess
import tempfile

NODES = ("coordinator", "worker1", "worker2")


def pg_bindir():
    pgc = os.environ.get("PG_CONFIG") or shutil.which("pg_config") or "pg_config"
    return subprocess.run([pgc, "--bindir"], capture_output=True, text=True, check=True).stdout.strip()


def installed():
    """True when citus.so and citus.control are in the installation pg_config names."""
    pgc = os.environ.get("PG_CONFIG") or shutil.which("pg_config")
    if not pgc:
        return False
    def cfg(opt):
        return subprocess.run([pgc, opt], capture_output=True, text=True, check=True).stdout.strip()
    return (os.path.exists(os.path.join(cfg("--pkglibdir"), "citus.so")) and
            os.path.exists(os.path.join(cfg("--sharedir"), "extension", "citus.control")))


def _as_owner(cmd, **kw):
    """Run a server command as postgres when we are root (the server refuses root)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", "env", "PATH=" + env["PATH"], "OPENBLAS_NUM_THREADS=1"] + (
            ["OPENBLAS_CORETYPE=" + env["OPENBLAS_CORETYPE"]] if env.get("OPENBLAS_CORETYPE") else []) + cmd
    return subprocess.run(cmd, env=env, capture_output=True, text=True, **kw)


class Cluster:
    def __init__(self, base_port=None, base_dir=None):
        self.base_port = int(base_port or os.environ.get("R4_CITUS_PORT", "55431"))
        self.ports = {n: self.base_port + i for i, n in enumerate(NODES)}
        self.own_dir = base_dir is None
        self.dir = base_dir
        self.bindir = pg_bindir()

    def dsn(self, node="coordinator", dbname="postgres"):
        return "host=%s port=%d user=postgres dbname=%s" % (self.dir, self.ports[node], dbname)

    def start(self):
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="rai4eo-citus.")
        os.chmod(self.dir, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        for n in NODES:
            data = os.path.join(self.dir, n)
            if not os.path.exists(os.path.join(data, "PG_VERSION")):
                r = _as_owner([os.path.join(self.bindir, "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
                               "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
                if r.returncode != 0:
                    raise RuntimeError("initdb %s failed: %s%s" % (n, r.stdout, r.stderr))
            opts = ("-c listen_addresses=127.0.0.1 -k %s -p %d -c shared_preload_libraries=citus "
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                    "-c max_worker_processes=16 -c max_connections=100 -c max_prepared_transactions=50 "
                    "-c citus.show_shards_for_app_name_prefixes='' -c wal_level=logical"
                    % (self.dir, self.ports[n]))
            r = _as_owner([os.path.join(self.bindir, "pg_ctl"), "-D", data, "-w", "-l",
                           os.path.join(self.dir, n + ".log"), "-o", opts, "start"])
            if r.returncode != 0:
                log = open(os.path.join(self.dir, n + ".log")).read()[-3000:]
                raise RuntimeError("starting %s failed: %s%s%s" % (n, r.stdout, r.stderr, log))

    def stop(self):
        if self.dir is None:
            return
        for n in NODES:
            data = os.path.join(self.dir, n)
            if os.path.exists(os.path.join(data, "postmaster.pid")):
                _as_owner([os.path.join(self.bindir, "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"])
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
