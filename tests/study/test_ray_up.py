"""`cluster/onprem.yaml` brought up for real by Ray's cluster launcher, over SSH to this machine.

A throwaway user with a key of its own, OpenSSH's server on 127.0.0.1:22 (the launcher has no
port setting), and the file with this site's values filled in (the user, the key, the shared
folder, free ports; one machine, so the head offers its CPUs to trials). Every set-up command then
runs through Ray's own command runner, its ``bash --login -c -i`` wrapper included:
``cluster/setup.sh`` installs the project into the user's environment, starts PostgreSQL and the
MLflow server; ``ray job submit`` runs a tiny study on the cluster; ``ray exec ... study status``
reports it; ``cluster/down.sh`` dumps the record and takes the cluster down. Then the head is
"replaced" (its processes ended, its record folder deleted, as a terminated instance loses its
disk) and ``ray up`` again restores the record from the shared folder: ``study report`` and
``study resume`` find the same study, and MLflow lists its runs.

Needs root (a user, sshd) and OpenSSH's server, rsync and PostgreSQL's programs; skips otherwise,
saying which. ``.ci/run`` installs them.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, tiny_base
from tests.servers import free_port

pytestmark = pytest.mark.slow

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SYSTEM_PYTHON = "/usr/bin/python3"  # the user's interpreter: one a user other than root can run


def missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a throwaway user and an sshd)"
    if not Path(SSHD).is_file():
        return "needs OpenSSH's server (apt-get install openssh-server)"
    if not shutil.which("rsync"):
        return "needs rsync (Ray's launcher copies file_mounts with it)"
    version = subprocess.run([SYSTEM_PYTHON, "-c", "import sys, venv; print(*sys.version_info[:2])"],
                             capture_output=True, text=True)  # fmt: skip
    if version.stdout.split() != [str(v) for v in sys.version_info[:2]]:
        return (
            f"needs {SYSTEM_PYTHON} (with venv) at this Python's version, {sys.version_info[0]}.{sys.version_info[1]}"
        )
    if not (shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))):
        return "needs PostgreSQL's programs (apt-get install postgresql)"
    return None


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def run(command: list[str], timeout: float = 600, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload, no-any-return]


def ray(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return run([str(Path(sys.executable).parent / "ray"), *args], timeout=timeout)


def ok(done: subprocess.CompletedProcess[str], what: str) -> str:
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout + done.stderr


class Site:
    """A throwaway user reachable over SSH on loopback, with a Python environment of its own."""

    def __init__(self, tmp: Path) -> None:
        self.user = f"bss{secrets.token_hex(3)}"
        self.tmp = tmp
        self.key = tmp / "key"
        self.sshd: subprocess.Popen | None = None

    @property
    def home(self) -> Path:
        return Path(pwd.getpwnam(self.user).pw_dir)

    def as_user(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run(["runuser", "-u", self.user, "--", "bash", "--login", "-c", "-i", command], timeout=timeout)

    def create(self) -> None:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", self.user], check=True)
        subprocess.run(["usermod", "-p", "*", self.user], check=True)  # no password, but not locked: keys work
        home, info = self.home, pwd.getpwnam(self.user)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        ssh = home / ".ssh"
        ssh.mkdir(mode=0o700)
        shutil.copy(self.key.with_suffix(".pub"), ssh / "authorized_keys")
        # the user's Python: the distribution's python3 (this process's own lives in root's home) with a
        # copy of this checkout's packages by hard links (no download, no space), its directories the
        # user's so pip can install into it; the scripts pointed at the copy
        venv = home / "venv"
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
        (site,) = venv.glob("lib/python3.*/site-packages")
        site.rmdir()
        (ours,) = Path(sys.prefix).glob("lib/python3.*/site-packages")
        subprocess.run(["cp", "-al", str(ours), str(site)], check=True)
        for script in (Path(sys.prefix) / "bin").iterdir():
            if script.is_file() and not script.is_symlink() and not (venv / "bin" / script.name).exists():
                text = script.read_bytes()
                if text.startswith(f"#!{sys.prefix}/".encode()):
                    copy = venv / "bin" / script.name
                    copy.write_bytes(text.replace(f"#!{sys.prefix}/".encode(), f"#!{venv}/".encode(), 1))
                    copy.chmod(0o755)
        for path in [home, *home.rglob("*")]:
            if path.is_dir() or path.is_relative_to(ssh) or path.parent == venv / "bin" or path.parent == venv:
                os.chown(path, info.pw_uid, info.pw_gid, follow_symlinks=False)
        (ssh / "authorized_keys").chmod(0o600)
        # what a lab puts in ~/.bashrc: its environment first on PATH (the launcher's login shells read it)
        bashrc = home / ".bashrc"
        bashrc.write_text(
            f"export PATH={venv}/bin:$PATH\n"
            f"export RAY_TMPDIR={home}/rt\n"  # not the root-owned /tmp/ray of this machine's other tests
            "export RAY_AUTH_MODE=disabled\nexport RAY_DEDUP_LOGS=0\n"
            "export PIP_DISABLE_PIP_VERSION_CHECK=1\n" + bashrc.read_text()
        )
        os.chown(bashrc, info.pw_uid, info.pw_gid)

    def start_sshd(self) -> None:
        if port_open(22):
            return  # this machine's own sshd on loopback takes the user's key as any sshd does
        Path("/run/sshd").mkdir(exist_ok=True)
        host_key = self.tmp / "host_key"
        self.log = open(self.tmp / "sshd.log", "w")  # noqa: SIM115 (closed in remove())
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
        self.sshd = subprocess.Popen(
            [SSHD, "-D", "-e", "-p", "22", "-o", "ListenAddress=127.0.0.1", "-o", f"HostKey={host_key}",
             "-o", f"PidFile={self.tmp / 'sshd.pid'}", "-o", "PasswordAuthentication=no", "-o", "UsePAM=no"],
            stdout=subprocess.DEVNULL, stderr=self.log, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not port_open(22):
            assert self.sshd.poll() is None, (self.tmp / "sshd.log").read_text()
            assert time.monotonic() < deadline, "sshd did not listen"
            time.sleep(0.2)

    def end_processes(self) -> None:
        subprocess.run(["pkill", "-KILL", "-u", self.user], check=False)
        time.sleep(1)

    def remove(self) -> None:
        self.end_processes()
        if shutil.which("crontab"):
            subprocess.run(["crontab", "-r", "-u", self.user], capture_output=True, check=False)
        subprocess.run(["userdel", "-r", self.user], capture_output=True, check=False)
        if self.sshd is not None:
            os.killpg(self.sshd.pid, signal.SIGTERM)
            self.sshd.wait(timeout=30)
            self.log.close()


@pytest.fixture()
def site(tmp_path: Path) -> Iterator[Site]:
    reason = missing()
    if reason:
        pytest.skip(reason)
    tmp_path.chmod(0o755)
    made = Site(tmp_path)
    made.create()
    try:
        made.start_sshd()
        yield made
    finally:
        made.remove()


def site_config(site: Site, ports: dict[str, int]) -> Path:
    """cluster/onprem.yaml with this site's values: its user and key, its shared folder and ports,
    and one machine whose head runs the trials (it offers its 2 CPUs)."""
    config = yaml.safe_load((REPO / "cluster" / "onprem.yaml").read_text())
    config["cluster_name"] = f"bss-up-{site.user}"
    config["auth"] = {"ssh_user": site.user, "ssh_private_key": str(site.key)}
    config["file_mounts"] = {remote: str(REPO / local) for remote, local in config["file_mounts"].items()}
    settings = f"BSS_SHARED={site.home}/shared BSS_PG_PORT={ports['pg']} BSS_MLFLOW_PORT={ports['mlflow']}"
    config["setup_commands"][0] = f"bash ~/bss-study/cluster/setup.sh settings {settings}"
    config["head_start_ray_commands"] = [
        "ray stop",
        f"ulimit -n 65536; ray start --head --port={ports['gcs']} --dashboard-host=127.0.0.1 "
        f"--dashboard-port={ports['dashboard']} --dashboard-agent-listen-port={ports['agent']} "
        f"--ray-client-server-port={ports['client']} --metrics-export-port={ports['metrics']} "
        "--num-cpus=2 --num-gpus=0 "
        "--autoscaling-config=~/ray_bootstrap_config.yaml",
    ]
    # the file's own values differ only in what is this site's: the set-up steps are the deployed ones
    deployed = yaml.safe_load((REPO / "cluster" / "onprem.yaml").read_text())
    assert config["setup_commands"][1:] == deployed["setup_commands"][1:]
    assert config["head_setup_commands"] == deployed["head_setup_commands"]
    path = site.tmp / "onprem.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_ray_up_runs_a_study_and_the_record_outlives_the_head(site: Site) -> None:
    names = ("pg", "mlflow", "gcs", "dashboard", "agent", "client", "metrics")
    ports: dict[str, int] = {}
    while len(set(ports.values())) < len(names):  # free now and distinct (not Ray's defaults, which a Ray
        ports = {name: free_port() for name in names}  # of this machine's other tests may hold)
    config = site_config(site, ports)
    shared = site.home / "shared"
    assert site.as_user(f"mkdir -p {shared}").returncode == 0  # the lab's shared folder, mounted already

    up = ok(ray("up", "-y", "--no-config-cache", str(config), timeout=900), "ray up")
    assert "the MLflow server answers on 127.0.0.1" in up and "role bss, databases mlflow and optuna" in up
    assert port_open(ports["mlflow"]) and port_open(ports["pg"])

    name, out = "upstudy", shared / "studies" / "upstudy"
    spec = {
        "name": name,
        "output_dir": str(out),
        "search_space": "demo",
        "num_samples": 2,
        "max_concurrent": 2,
        "scheduler": {"name": "fifo"},
        "resources": {"cpu": 1},
        "tracking_uri": f"http://127.0.0.1:{ports['mlflow']}",
        "optuna_storage": f"postgresql://bss@127.0.0.1:{ports['pg']}/optuna",
        "base": tiny_base(),
    }
    spec_file = shared / "upstudy.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    os.chown(spec_file, pwd.getpwnam(site.user).pw_uid, -1)
    deadline = time.monotonic() + 120
    while True:  # the head's job agent comes up some seconds after `ray start` returns
        job = ray(
            "job", "submit", "--address", f"http://127.0.0.1:{ports['dashboard']}", "--",
            "study", "launch", str(spec_file), timeout=900,
        )  # fmt: skip
        if "No available agent to submit job" not in job.stderr or time.monotonic() > deadline:
            break
        time.sleep(3)
    if job.returncode != 0:  # what the head's Ray said, for the failure's message
        logs = site.as_user(
            "tail -n 20 ~/rt/session_latest/logs/dashboard_agent.log ~/rt/session_latest/logs/raylet.out"
        )
        job.stderr += f"\n--- the head's logs ---\n{logs.stdout}{logs.stderr}"
    ok(job, "ray job submit (study launch)")
    assert "best config:" in job.stdout and "succeeded" in job.stdout

    status = ok(ray("exec", str(config), f"study status {out}"), "ray exec study status")
    assert f"study {name}: 2/2 trials ended" in status and "complete" in status

    ok(run(["bash", str(REPO / "cluster" / "down.sh"), str(config)], timeout=300), "cluster/down.sh")
    assert (shared / "record" / "mlflow.dump").is_file() and (shared / "record" / "optuna.dump").is_file()

    # a new head: nothing of the old one's processes or disk is left but the shared folder
    site.end_processes()
    assert site.as_user("rm -rf ~/bss-record ~/.pgpass ~/rt").returncode == 0
    assert not port_open(ports["pg"])

    again = ok(ray("up", "-y", "--no-config-cache", str(config), timeout=900), "ray up (a new head)")
    assert "restored mlflow from" in again and "restored optuna from" in again
    report = ok(ray("exec", str(config), f"study report {out}"), "ray exec study report")
    assert "report.md" in report
    resumed = ok(ray("exec", str(config), f"study resume {out}"), "ray exec study resume")
    assert "already complete" in resumed

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"http://127.0.0.1:{ports['mlflow']}")
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len([r for r in runs if "mlflow.parentRunId" in r.data.tags]) == 2

    ok(run(["bash", str(REPO / "cluster" / "down.sh"), str(config)], timeout=300), "cluster/down.sh")
