"""A throw-away one-node SLURM cluster for tests, built from Debian's `slurm-wlm` and `munge`.

Everything lives in one private folder: the munge key and socket, `slurm.conf`, `gres.conf`,
the controller state, the slurmd spool and the daemons' logs. Clients (`sbatch`, `squeue`,
Snakemake's SLURM executor) find the cluster through the `SLURM_CONF` variable in
`SlurmCluster.env`. One thing lives outside: the symlink `/run/slurm/conf` to the folder of
`slurm.conf`, the place where SLURM clients look when neither `SLURM_CONF` nor
/etc/slurm/slurm.conf is there. It is needed because snakemake-executor-plugin-slurm-jobstep
(0.6) drops `SLURM_CONF` from the environment of the `srun` it starts inside each job. The link
is made only where no SLURM configuration exists, and removed on stop. The daemons (`munged`, `slurmctld -D`,
`slurmd -D`) are started in the foreground as our own children and stopped by their PIDs.

The node is pinned to 127.0.0.1 and declares `gpus` fake GPUs of model `GPU_MODEL` (default 1): a
GRES backed by dummy device files in the cluster folder (`dev/gpu0`, `dev/gpu1`, ...: character
devices with /dev/null's numbers where mknod is allowed, else empty files), listed in gres.conf with
`File=`, so `sbatch --gpus=4` is accepted, and a job granted GPUs gets them as SLURM grants real
ones (`CUDA_VISIBLE_DEVICES`, `SLURM_JOB_GPUS`, `SLURM_GPUS_ON_NODE`). `cpus` declares more CPUs than
the machine has (with `SlurmdParameters=config_overrides`), for jobs that ask for several CPUs per GPU.
Job status is read with `squeue` (there is no accounting daemon, so `sacct` has nothing to
say); `MinJobAge` keeps finished jobs visible to `squeue` for `min_job_age` seconds.

Usage::

    reason = skip_reason()          # None when this machine can run the cluster
    with SlurmCluster.started() as cluster:
        subprocess.run(["sbatch", "--wrap", "true"], env=cluster.env)

Run as a script (`python tests/slurm_cluster.py`) it starts the cluster, submits one job,
waits for it and stops again: a quick manual check of an installation.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

DAEMONS = ("munged", "slurmctld", "slurmd")
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
CLIENT_CONF_LINK = Path("/run/slurm/conf")
CLIENTS = ("sbatch", "squeue", "sinfo", "scancel", "scontrol")
PARTITION = "debug"
GPU_MODEL = "testgpu"
NODE = "localhost"


def skip_reason(env: dict[str, str] | None = None) -> str | None:
    """Why the SLURM tests cannot run here, or None when they can.

    They run only as root (the daemons must own their key and spool), where the Debian binaries
    are installed (`.ci/install-slurm.sh`), and only in CI (`CI=true`) or when asked for with
    `TXTRAYALIGN_SLURM_TESTS=1`, since they start system daemons and take half a minute.
    """
    env = os.environ if env is None else env
    wanted = env.get("CI", "").lower() in ("1", "true", "yes") or env.get("TXTRAYALIGN_SLURM_TESTS") == "1"
    if not wanted:
        return "SLURM tests run in CI only (CI=true) or with TXTRAYALIGN_SLURM_TESTS=1"
    if os.geteuid() != 0:
        return "SLURM tests need root to run munged/slurmctld/slurmd"
    missing = [name for name in DAEMONS + CLIENTS if _which(name) is None]
    if missing:
        return (
            f"SLURM binaries not found: {', '.join(missing)} (install them with `bash .ci/install-slurm.sh`)"
        )
    if SYSTEM_CONF.exists():
        return (
            f"this machine has a SLURM configuration ({SYSTEM_CONF}); jobs of the test cluster would use it"
        )
    _remove_stale_link()
    if CLIENT_CONF_LINK.exists() or CLIENT_CONF_LINK.is_symlink():
        return f"{CLIENT_CONF_LINK} exists (a configless slurmd or another test cluster is running here)"
    return None


def _remove_stale_link() -> None:
    """Remove a /run/slurm/conf link left by a test cluster that was killed before its teardown."""
    if CLIENT_CONF_LINK.is_symlink():
        target = Path(os.readlink(CLIENT_CONF_LINK))
        if (
            target.name == "etc"
            and target.parent.name.startswith("txtrayalign-slurm-")
            and not target.exists()
        ):
            CLIENT_CONF_LINK.unlink()


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_hardware() -> str:
    """The node's hardware as slurm.conf words (CPUs, sockets, cores, threads, RealMemory in MB).

    Taken from what `slurmd -C` detects, so that slurmd agrees with the configuration; the memory
    is declared a little below the detected total so the node is never drained for having less
    memory than configured.
    """
    out = subprocess.run([_which("slurmd") or "slurmd", "-C"], capture_output=True, text=True, timeout=30)
    found = dict(
        re.findall(r"\b(CPUs|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)=(\d+)", out.stdout)
    )
    if out.returncode != 0 or "CPUs" not in found or "RealMemory" not in found:
        raise RuntimeError(f"`slurmd -C` did not report CPUs/RealMemory: {out.stdout!r} {out.stderr!r}")
    words = [f"CPUs={found['CPUs']}"]
    if {"SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore"} <= found.keys():
        words += [
            f"Sockets={found['SocketsPerBoard']}",
            f"CoresPerSocket={found['CoresPerSocket']}",
            f"ThreadsPerCore={found['ThreadsPerCore']}",
        ]
    words.append(f"RealMemory={int(int(found['RealMemory']) * 0.95)}")
    return " ".join(words)


@dataclass
class SlurmCluster:
    """A one-node cluster rooted in `root`; `start()` / `stop()`, or the `started()` context."""

    root: Path
    min_job_age: int = 300
    gpus: int = 1
    cpus: int | None = None  # None: the CPUs slurmd detects
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge" / "munge.socket"

    @property
    def env(self) -> dict[str, str]:
        """The environment for SLURM clients (and Snakemake) talking to this cluster."""
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/sbin"
        for name in list(env):  # a job context of an outer cluster would confuse sbatch
            if name.startswith("SLURM_") and name != "SLURM_CONF":
                del env[name]
        return env

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    @contextlib.contextmanager
    def started(cls, timeout: float = 60, **kwargs) -> Iterator[SlurmCluster]:
        """Start a cluster in a fresh private folder; stop it and remove the folder on exit.

        While it runs, SIGTERM (what `timeout` and CI runners send) raises KeyboardInterrupt in
        the main thread, so the daemons are still stopped when the test run is cut short.
        """
        # munged insists that every folder above its socket is world-executable, which rules
        # out pytest's 0700 tmp_path; a 0755 folder of our own under /tmp satisfies it.
        root = Path(tempfile.mkdtemp(prefix="txtrayalign-slurm-"))
        root.chmod(0o755)
        cluster = cls(root=root, **kwargs)
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            cluster.start(timeout=timeout)
            yield cluster
        finally:
            cluster.stop()
            shutil.rmtree(root, ignore_errors=True)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def start(self, timeout: float = 60) -> None:
        """Write the configuration, start munged, slurmctld and slurmd, wait for an idle node."""
        self._write_config()
        self._link_client_config()
        self._start_munged()
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-f", str(self.conf)])
        self._spawn("slurmd", [_which("slurmd"), "-D", "-N", NODE, "-f", str(self.conf)])
        self._wait_for_idle_node(timeout)
        log.info("SLURM cluster up in %s", self.root)

    def stop(self) -> None:
        """Cancel every job of this cluster, then stop the daemons we started, newest first."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            with contextlib.suppress(Exception):
                subprocess.run(
                    ["scancel", "--full", "--partition", PARTITION],
                    env=self.env,
                    capture_output=True,
                    timeout=15,
                )
                self._wait_until(
                    lambda: not self.job_ids(active_only=True), timeout=15, what="cancelled jobs to end"
                )
        for name in reversed(list(self.processes)):
            proc = self.processes.pop(name)
            if proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM; killing it", name, proc.pid)
                proc.kill()
                proc.wait(timeout=15)
        if CLIENT_CONF_LINK.is_symlink() and Path(os.readlink(CLIENT_CONF_LINK)) == self.conf.parent:
            CLIENT_CONF_LINK.unlink()

    # ---------------------------------------------------------------- queries

    def _squeue(self, *args: str) -> str:
        out = subprocess.run(
            ["squeue", "--noheader", *args], env=self.env, capture_output=True, text=True, timeout=15
        )
        if out.returncode != 0:
            raise RuntimeError(f"squeue failed: {out.stderr.strip()}")
        return out.stdout

    def job_ids(self, active_only: bool = False) -> list[str]:
        """Ids of the jobs squeue knows: pending, running or recently finished (or only the first two)."""
        states = [] if active_only else ["--states=all"]
        return self._squeue(*states, "--format=%i").split()

    def job_states(self) -> dict[str, str]:
        """Job id -> state (COMPLETED, FAILED, ...) for every job squeue still knows."""
        return dict(line.split("|", 1) for line in self._squeue("--states=all", "--format=%i|%T").split())

    def logs(self) -> str:
        """The daemons' logs, for failure messages."""
        parts = []
        for path in sorted((self.root / "log").glob("*.log")):
            text = path.read_text(errors="replace")
            parts.append(f"==> {path.name} <==\n{text[-4000:]}")
        return "\n".join(parts)

    # ---------------------------------------------------------------- internals

    def _write_config(self) -> None:
        for sub in ("etc", "munge", "state", "spool", "log"):
            (self.root / sub).mkdir(mode=0o755, exist_ok=True)
        hardware = node_hardware()
        overrides = []
        detected = int(re.search(r"CPUs=(\d+)", hardware).group(1))
        if self.cpus is not None and self.cpus > detected:  # declared, not detected: slurmd must trust slurm.conf
            hardware = " ".join([f"CPUs={self.cpus}", *(w for w in hardware.split() if w.startswith("RealMemory="))])
            overrides = ["SlurmdParameters=config_overrides"]
        gres = f" Gres=gpu:{GPU_MODEL}:{self.gpus}" if self.gpus else ""
        self.conf.write_text(
            "\n".join(
                [
                    "# one-node test cluster written by tests/slurm_cluster.py",
                    "ClusterName=txtrayalign",
                    f"SlurmctldHost={NODE}(127.0.0.1)",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={self.munge_socket}",
                    f"StateSaveLocation={self.root / 'state'}",
                    f"SlurmdSpoolDir={self.root / 'spool'}",
                    f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
                    f"SlurmdPidFile={self.root / 'slurmd.pid'}",
                    f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={self.root / 'log' / 'slurmd.log'}",
                    f"PlugStackConfig={self.root / 'etc' / 'plugstack.conf'}",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core_Memory",
                    "SchedulerType=sched/builtin",
                    "AccountingStorageType=accounting_storage/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "JobCompType=jobcomp/none",
                    "MpiDefault=none",
                    "ReturnToService=2",
                    f"MinJobAge={self.min_job_age}",
                    "SlurmctldTimeout=30",
                    "SlurmdTimeout=60",
                    "GresTypes=gpu",
                    *overrides,
                    f"NodeName={NODE} NodeAddr=127.0.0.1 {hardware}{gres} State=UNKNOWN",
                    f"PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        (self.root / "etc" / "plugstack.conf").write_text("")
        (self.root / "etc" / "gres.conf").write_text(
            f"NodeName={NODE} Name=gpu Type={GPU_MODEL} File={self._gpu_files()}\n" if self.gpus else ""
        )

    def _gpu_files(self) -> str:
        """Make the dummy GPU device files; their gres.conf `File=` expression (dev/gpu[0-3])."""
        folder = self.root / "dev"
        folder.mkdir(mode=0o755, exist_ok=True)
        null = os.stat("/dev/null").st_rdev
        for i in range(self.gpus):
            path = folder / f"gpu{i}"
            try:
                os.mknod(path, 0o666 | stat.S_IFCHR, null)
            except (PermissionError, OSError):  # no mknod in this container: a plain file is enough for slurmd
                path.touch()
        return str(folder / ("gpu0" if self.gpus == 1 else f"gpu[0-{self.gpus - 1}]"))

    def _link_client_config(self) -> None:
        if CLIENT_CONF_LINK.exists() or CLIENT_CONF_LINK.is_symlink():
            raise RuntimeError(f"{CLIENT_CONF_LINK} exists already; refusing to replace it")
        CLIENT_CONF_LINK.parent.mkdir(parents=True, exist_ok=True)
        CLIENT_CONF_LINK.symlink_to(self.conf.parent, target_is_directory=True)

    def _start_munged(self) -> None:
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._spawn(
            "munged",
            [
                _which("munged"),
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self.root / 'munge' / 'munged.pid'}",
                f"--log-file={self.root / 'log' / 'munged.log'}",
                f"--seed-file={self.root / 'munge' / 'munged.seed'}",
            ],
        )
        self._wait_until(self.munge_socket.exists, timeout=15, what="the munge socket")

    def _spawn(self, name: str, cmd: list[str | None]) -> None:
        if None in cmd:
            raise RuntimeError(f"{name} is not installed (run `bash .ci/install-slurm.sh`)")
        out = open(self.root / "log" / f"{name}.out.log", "wb")  # noqa: SIM115 - owned by the process
        try:
            self.processes[name] = subprocess.Popen(
                [str(c) for c in cmd],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        finally:
            out.close()

    def _wait_for_idle_node(self, timeout: float) -> None:
        def idle() -> bool:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}\n{self.logs()}")
            out = subprocess.run(
                ["sinfo", "--noheader", "--format=%t"],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=15,
            )
            return out.returncode == 0 and out.stdout.strip() == "idle"

        self._wait_until(idle, timeout=timeout, what="the node to become idle")

    def _wait_until(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.3)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}\n{self.logs()}")


def main() -> int:
    """Start a cluster, run one job through sbatch, print its output, stop."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    reason = skip_reason({**os.environ, "TXTRAYALIGN_SLURM_TESTS": "1"})
    if reason:
        print(f"cannot start a cluster: {reason}")
        return 1
    with SlurmCluster.started() as cluster:
        out_file = cluster.root / "hello.out"
        sub = subprocess.run(
            [
                "sbatch",
                "--parsable",
                "--gpus=1",
                "--mem=100",
                f"--output={out_file}",
                "--wrap",
                "echo job $SLURM_JOB_ID on $(hostname)",
            ],
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if sub.returncode != 0:
            print(f"sbatch failed: {sub.stderr}\n{cluster.logs()}")
            return 1
        job = sub.stdout.strip().split(";")[0]
        cluster._wait_until(lambda: cluster.job_states().get(job) == "COMPLETED", 60, f"job {job}")
        print(out_file.read_text().strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
