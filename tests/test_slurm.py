"""profiles/slurm on a real one-node SLURM (tests/slurm_cluster.py): the ci DAG's training rules
(its full and subset models, and what they need) run through snakemake-executor-plugin-slurm; a
subset-model training job cancelled mid-run is retried, resumes its saved state and ends bit for
bit the model a local run trains, as do the full models. Every other rule runs through the same
executor and script path; which rules ask the GPU partition is checked on the whole DAG's dry
run. Skips, saying why, only where SLURM cannot run here.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from slurm_cluster import ACTIVE, SlurmCluster, SlurmJob, SlurmUnavailable, start_cluster

from stepattr.workflow.configs import load_config

PROFILE = Path(__file__).resolve().parents[1] / "profiles" / "slurm" / "profile.yaml"
SLOTS = 6  # jobs at once on 2 cores: ci jobs often start Python or wait for a status check
SUBSET_JOB = re.compile(r"rule_retrain_wildcards_(\d+)_(\d+)")
SUBSET_STEPS = 300  # ~10 s of training per subset model: time to catch one past a checkpoint
RUN_TIMEOUT_S = 3600  # generous: a loaded 2-core machine takes several times as long
# The rules the SLURM run goes up to: training, the part that checkpoints and resumes. The whole
# ci DAG on SLURM took 21 min on 2 cores, nearly all of it per-job start-up (test_workflow.py
# runs all 122 jobs locally); these are 10.
UNTIL = ("train", "retrain")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A one-node SLURM for the session, or a skip that says why there is none."""
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"), cpus=SLOTS)
    except SlurmUnavailable as err:
        pytest.skip(f"no SLURM cluster on this machine: {err}")
    yield cluster
    cluster.stop()


def dry_run_jobs(text: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job a dry run prints."""
    jobs = re.findall(r"^\s*rule (\w+):\n(?:\s+\w+: .*\n)*?\s+resources: (.*)$", text, re.M)
    return [(rule, dict(kv.split("=", 1) for kv in res.split(", "))) for rule, res in jobs]


def test_profile_sends_torch_rules_to_gpus(run_snakemake, tmp_path: Path) -> None:
    """Exactly the rules that declare a GPU get the GPU partition and type of set-resources."""
    profile = yaml.safe_load(PROFILE.read_text())
    gpu_rules = set(profile["set-resources"])
    listed = run_snakemake("--list-rules")
    assert listed.returncode == 0, listed.stderr
    unknown = gpu_rules - set(listed.stdout.split())
    assert not unknown, f"set-resources names rules that do not exist: {unknown}"
    proc = run_snakemake(
        "-n", "--workflow-profile", str(PROFILE.parent),
        "--configfile", "config/ci.yaml", "--config", f"outdir={tmp_path}/results", "device=cuda",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = dry_run_jobs(proc.stdout)
    assert len(jobs) > 50, proc.stdout[-3000:]
    cpu_partition = profile["default-resources"]["slurm_partition"]
    for rule, resources in jobs:
        wants_gpu = resources.get("gpu") == "1"
        assert wants_gpu == (rule in gpu_rules), (rule, resources)
        expected = (
            profile["set-resources"][rule] if wants_gpu else {"slurm_partition": cpu_partition}
        )
        assert {key: resources.get(key) for key in expected} == expected, (rule, resources)
        assert wants_gpu or "gpu_model" not in resources, (rule, resources)


def cluster_profile(cluster: SlurmCluster, root: Path) -> Path:
    """profiles/slurm, adapted to the test cluster: its partition, no GPUs, no slurmdbd."""
    profile = yaml.safe_load(PROFILE.read_text())
    del profile["set-resources"]  # GPU partition and type: this node has neither
    profile["default-resources"]["slurm_partition"] = cluster.partition
    profile |= {
        "slurm-status-command": "squeue",  # sacct needs slurmdbd; squeue shows jobs for MinJobAge
        # ci jobs take seconds: check 1 s after a job ended (the plugin adds 10 s per idle check)
        "slurm-init-seconds-before-status-checks": 1,
        "seconds-between-status-checks": 1,
        "slurm-logdir": str(root / "slurm_logs"),
        "slurm-keep-successful-logs": True,
        "latency-wait": 5,
    }
    (root / "profile").mkdir()
    (root / "profile" / "profile.yaml").write_text(yaml.safe_dump(profile))
    return root / "profile"


def model_of(job: SlurmJob) -> str | None:
    """The subset model a retrain job writes, from the comment the plugin gives the job."""
    match = SUBSET_JOB.fullmatch(job.comment)
    return f"subset_{match[1]}_s{match[2]}" if match else None


def cancel_subset_training(
    cluster: SlurmCluster, outdir: Path, run: subprocess.Popen
) -> SlurmJob | None:
    """scancel the first subset-model job seen running with a saved state (past a checkpoint).

    Returns the cancelled job (one that finished before scancel reached it does not count), or
    None if the run ended first.
    """
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while run.poll() is None and time.monotonic() < deadline:
        saved = {path.stem for path in (outdir / ".train_state").glob("*.pt")}
        for job in cluster.jobs() if saved else []:
            if job.state == "RUNNING" and model_of(job) in saved:
                cluster.run("scancel", job.job_id)
                if final_state(cluster, job.job_id) == "CANCELLED":
                    return job
        time.sleep(0.05)
    return None


def final_state(cluster: SlurmCluster, job_id: str) -> str:
    """The job's state once it has ended (squeue keeps ended jobs for MinJobAge)."""
    for _ in range(600):
        states = {job.job_id: job.state for job in cluster.jobs()}
        if states.get(job_id) not in ACTIVE:
            return states.get(job_id, "GONE")
        time.sleep(0.1)
    return "STILL RUNNING"


def assert_same_weights(model_dir: Path, reference_dir: Path) -> None:
    """The two model.safetensors hold the same tensors, byte for byte."""
    from safetensors.numpy import load_file

    ours = load_file(model_dir / "model.safetensors")
    theirs = load_file(reference_dir / "model.safetensors")
    assert ours.keys() == theirs.keys(), model_dir
    for name, weights in ours.items():
        assert weights.tobytes() == theirs[name].tobytes(), (model_dir, name)


@pytest.mark.slurm
def test_ci_dag_on_slurm_survives_a_cancelled_job(
    slurm_cluster: SlurmCluster,
    snakemake_exe: str,
    run_snakemake,
    repo: Path,
    tmp_path: Path,
) -> None:
    outdir = tmp_path / "results"
    profile = cluster_profile(slurm_cluster, tmp_path)
    # Subset models train SUBSET_STEPS steps instead of ci.yaml's 20 (under a second), so that
    # one is caught running past a checkpoint; every other setting is ci.yaml's.
    slower = tmp_path / "slower_subsets.yaml"
    slower.write_text(yaml.safe_dump({"subsets": {"train_steps": SUBSET_STEPS}}))
    configs = ["--configfile", "config/ci.yaml", str(slower)]
    common = ["--workflow-profile", str(profile), *configs, "--config", f"outdir={outdir}",
              "--until", *UNTIL]  # fmt: skip
    log = tmp_path / "snakemake.log"
    start = time.monotonic()
    with open(log, "w") as out:
        run = subprocess.Popen(
            [snakemake_exe, *common], cwd=repo, env=slurm_cluster.env, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            cancelled = cancel_subset_training(slurm_cluster, outdir, run)
            returncode = run.wait(timeout=RUN_TIMEOUT_S)
        finally:
            if run.poll() is None:
                run.kill()
    text = log.read_text()
    print(f"ci DAG's training on SLURM: {time.monotonic() - start:.0f} s")
    assert cancelled, "no subset model seen training past a checkpoint to cancel:\n" + text[-6000:]
    assert returncode == 0, text[-6000:] + slurm_cluster.logs()

    # the cancelled job failed as CANCELLED, Snakemake resubmitted it, and the retry resumed
    assert f"SLURM-job '{cancelled.job_id}' failed, SLURM status is: 'CANCELLED'" in text
    retries = [job for job in slurm_cluster.jobs() if job.comment == cancelled.comment]
    retries.sort(key=lambda job: int(job.job_id))
    assert [job.state for job in retries] == ["CANCELLED", "COMPLETED"], retries
    model = model_of(cancelled)
    train_log = (outdir / "logs" / "retrain" / f"{model}.log").read_text()
    assert "resumed from" in train_log, train_log

    # the resumed model and the full models are bit for bit what the same rules train locally,
    # uninterrupted
    reference = tmp_path / "reference"
    full = sorted(path.name for path in outdir.glob("models/full_*"))
    assert len(full) == 2, full  # ci.yaml's ensemble
    targets = [f"{reference}/models/{name}/model.safetensors" for name in [model, *full]]
    local = run_snakemake(
        "--cores", "2", *configs, "--config", f"outdir={reference}", "--", *targets
    )
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    for name in [model, *full]:
        assert_same_weights(outdir / "models" / name, reference / "models" / name)
    subsets = load_config([repo / "config/ci.yaml"])["subsets"]  # 4 scored + 2 held out, x seeds
    models = (subsets["count"] + subsets["heldout"]) * subsets["seeds"]
    assert len(list(outdir.glob("models/subset_*"))) == models

    # every output up to the training rules is there and up to date
    again = run_snakemake("-n", *common, env=slurm_cluster.env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    # (with --until, Snakemake reports an empty job table rather than "Nothing to be done")
    assert re.search(r"^total\s+0$", again.stdout, re.M), again.stdout[-3000:]
