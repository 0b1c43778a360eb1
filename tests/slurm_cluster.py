"""A throwaway one-node SLURM (munged, slurmctld, slurmd) for tests/test_slurm.py.

Debian's slurm-wlm and munge (.ci/install-slurm.sh) without systemd: the daemons run in the
foreground as children of the test, as root, with every config, key, socket, state and log in
one directory, so nothing under /etc is read or written and nothing outlives the session.
Accounting has no slurmdbd, so `sacct` has nothing; job states come from `squeue`, which keeps
finished jobs for MinJobAge seconds. Jobs may overrun their time limit (OverTimeLimit): on a
loaded test machine a slow job must not turn into a TIMEOUT.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "sinfo", "scancel", "scontrol")
PARTITION = "ci"
NODE = "localhost"
ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED")
MIN_JOB_AGE_S = 3600  # squeue reports ended jobs this long: the plugin's status source

# The node's CPUs are job slots and may exceed the cores slurmd detects (config_overrides lets it
# register anyway); its RealMemory is what slurmd detects.
SLURM_CONF = """\
ClusterName=stepattr-ci
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
PlugStackConfig={root}/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge={min_job_age}
OverTimeLimit=UNLIMITED
KillWait=5
MessageTimeout=30
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName={partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""

# The jobstep plugin drops SLURM_* (SLURM_CONF too) from the environment of the `srun` it runs
# inside each job; a real cluster keeps slurm.conf under /etc, this one in its own directory.
SRUN_WRAPPER = """\
#!/bin/sh
SLURM_CONF='{conf}' exec '{srun}' "$@"
"""


class SlurmUnavailable(RuntimeError):
    """SLURM cannot run on this machine; the message says why."""


@dataclass(frozen=True)
class SlurmJob:
    """One row of squeue: the plugin names the job's rule and wildcards in its comment."""

    job_id: str
    state: str
    comment: str


@dataclass
class SlurmCluster:
    """A running cluster: the environment its clients need, and the daemons this test started."""

    root: Path
    env: dict[str, str]
    partition: str = PARTITION
    procs: list[subprocess.Popen] = field(default_factory=list)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """A SLURM client command against this cluster."""
        return subprocess.run(
            args, env=self.env, capture_output=True, text=True, timeout=60, check=check
        )

    def jobs(self) -> list[SlurmJob]:
        """Every job slurmctld still knows, ended ones included (none while it does not answer)."""
        out = self.run("squeue", "--states=all", "--noheader", "--format=%i|%T|%k", check=False)
        lines = out.stdout.splitlines() if out.returncode == 0 else []
        return [SlurmJob(*line.split("|", 2)) for line in lines if line.strip()]

    def logs(self, lines: int = 30) -> str:
        """The daemons' log and output tails, for failure messages."""
        paths = [*self.root.glob("*.log"), *self.root.glob("*.out"), *self.root.glob("munge/*.log")]
        return "\n".join(
            f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            for path in sorted(paths)
        )

    def stop(self) -> None:
        """Cancel what is left and let slurmd end it, then end the daemons this session started."""
        if len(self.procs) == len(DAEMONS):
            self.run("scancel", f"--partition={self.partition}", check=False)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and any(job.state in ACTIVE for job in self.jobs()):
                time.sleep(0.5)
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def free_port() -> int:
    """A TCP port nothing listens on, so a SLURM already on this machine is left alone."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def detected_memory_mb() -> int:
    """RealMemory as slurmd detects it (`slurmd -C`): the node may not claim more."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30).stdout
    match = re.search(r"RealMemory=(\d+)", out)
    if not match:
        raise SlurmUnavailable(f"`slurmd -C` reports no RealMemory:\n{out}")
    return int(match.group(1))


def start_cluster(root: Path, cpus: int, timeout_s: float = 60) -> SlurmCluster:
    """Configure and start a one-node cluster in `root`; SlurmUnavailable if it cannot run.

    `cpus` job slots on the node (config_overrides lets it exceed the cores slurmd detects).
    """
    missing = [name for name in DAEMONS + CLIENTS if not shutil.which(name)]
    if missing:
        raise SlurmUnavailable(
            f"not installed: {', '.join(missing)} (.ci/install-slurm.sh installs slurm-wlm, munge)"
        )
    if os.geteuid() != 0:
        raise SlurmUnavailable("the SLURM and munge daemons run as root here; this user is not")
    (root / "munge").mkdir(mode=0o700)
    for name in ("state", "spool", "bin"):
        (root / name).mkdir()
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = root / "slurm.conf"
    conf.write_text(
        SLURM_CONF.format(
            root=root,
            node=NODE,
            partition=PARTITION,
            ctld_port=free_port(),
            slurmd_port=free_port(),
            cpus=cpus,
            memory=detected_memory_mb(),
            min_job_age=MIN_JOB_AGE_S,
        )
    )
    (root / "plugstack.conf").write_text("")
    srun = root / "bin" / "srun"
    srun.write_text(SRUN_WRAPPER.format(conf=conf, srun=shutil.which("srun")))
    srun.chmod(0o755)
    env = os.environ | {"SLURM_CONF": str(conf), "PATH": f"{srun.parent}:{os.environ['PATH']}"}
    cluster = SlurmCluster(root=root, env=env)
    munge = root / "munge"
    commands = [
        # --force: munged refuses a socket in a directory that not everyone may enter
        ["munged", "--foreground", "--force", f"--key-file={key}", f"--socket={munge}/munge.socket",
         f"--pid-file={munge}/munged.pid", f"--log-file={munge}/munged.log",
         f"--seed-file={munge}/munged.seed"],
        ["slurmctld", "-D", "-f", str(conf)],
        ["slurmd", "-D", "-f", str(conf), "-N", NODE],
    ]  # fmt: skip
    try:
        for command in commands:
            with open(root / f"{command[0]}.out", "w") as out:
                proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
            cluster.procs.append(proc)
            wait_until_up(cluster, proc, command[0], timeout_s)
    except SlurmUnavailable:
        cluster.stop()
        raise
    return cluster


def wait_until_up(
    cluster: SlurmCluster, proc: subprocess.Popen, name: str, timeout_s: float
) -> None:
    """Until the daemon answers (munge socket, controller ping, node idle) or it has failed."""
    checks = {
        "munged": lambda: (cluster.root / "munge" / "munge.socket").exists(),
        "slurmctld": lambda: cluster.run("scontrol", "ping", check=False).stdout.endswith(
            "is UP\n"
        ),
        "slurmd": lambda: (
            cluster.run("sinfo", "-h", "-N", "-o", "%t", check=False).stdout.strip() == "idle"
        ),
    }
    deadline = time.monotonic() + timeout_s
    while not checks[name]():
        if proc.poll() is not None or time.monotonic() > deadline:
            why = f"exited with {proc.returncode}" if proc.poll() is not None else "timed out"
            raise SlurmUnavailable(f"{name} did not come up ({why}):\n{cluster.logs()}")
        time.sleep(0.5)
