"""FISOR through the authors' own code (ZhengYinan-AIR/FISOR, JAX), behind the common interface.

`bench run --methods FISOR --set implementation=official` (config implementation="official") builds
this class instead of the native port. The user provides the code and its environment:
    FISOR_HOME    a checkout of the official repository
    FISOR_PYTHON  the interpreter of an environment where it runs (its requirements.txt)

Why not the official launcher itself: launcher/examples/train_offline.py takes the task as an
index into env/env_list.py, loads the official DSRL file through dsrl's env.get_dataset(),
logs to wandb and evaluates unseeded environments every 250k steps. The harness needs our
task names, our data files and our evaluation protocol, so algorithms/fisor_driver.py (run
with FISOR_PYTHON, importing nothing of the harness) does what the launcher's call_main does
with the official functions: the config from configs/train_config.py:fisor, the data through
jaxrl5's DSRLDataset and normalize_returns, FISOR.create, FISOR.update for every step,
FISOR.save. It differs in what it reads (the arrays the harness read from the job's file,
handed over as an .npz) and in what it does not do (wandb, evaluation).

Evaluation stays the harness's: after training the driver is started again to `serve` the
saved agent, and this class's act() sends the observations of the harness's seeded vector
envs to it and returns FISOR.eval_actions (N candidates, the lowest Qc) for each. So the
official model meets exactly the episodes, seeds, action clipping and cost accounting of
every other method, and reset() reseeds its JAX key from the harness's seed. The official
model is kept in the checkpoint (its pickle, as bytes), so a resumed evaluation needs no
retraining.

Progress: the driver's log lines become the run's curve.csv (the official stat names, the
value at the logged step) and a line on stderr; everything the subprocess prints goes to
official/train.log in the run folder. A failing subprocess is an OfficialFISORError with
the tail of its output. Settings that the official code hard-codes cannot be changed here
(an error says so). One of them differs between the official branches: the floor of the
infeasible states' weights (jnp.clip(cost_exp_adv, floor, cost_ub) in update_actor), 0 on
master and 1 on metadrive_imitation, which the paper's MetaDrive runs used. It is read from the
checkout's jaxrl5/agents/fisor/fisor.py, and a job whose min_cost_weight differs (1.0 on the
MetaDrive tasks, 0.0 elsewhere) is refused before it trains, naming the branch to check out;
records say the floor that ran (official_min_cost_weight), the checkout's commit and branch,
and the versions (Python, jax, jaxlib, flax, optax, numpy) it ran with:
scripts/setup_fisor_official.sh builds the environment with jax 0.4.13, as PyPI no longer has
requirements.txt's jaxlib 0.4.9.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import weakref
from collections import deque
from pathlib import Path

import numpy as np
import torch

from algorithms.base import ConfigError, OfflineMethod
from algorithms.fisor import OTHER_IMPLEMENTATIONS, Config

DRIVER = Path(__file__).with_name("fisor_driver.py")
PREFIX = "FISOR-DRIVER "
ENTRY = "launcher/examples/train_offline.py"
#: what the driver imports; the entry script shows the folder is the official checkout
REQUIRED = (ENTRY, "configs/train_config.py", "jaxrl5/agents/fisor/fisor.py",
            "jaxrl5/data/dsrl_datasets.py")
REPOSITORY = "https://github.com/ZhengYinan-AIR/FISOR"
TAIL = 25

#: harness config field -> (section of the official config, its key); "" is the top level
OFFICIAL_KEYS = {
    "batch_size": ("", "batch_size"),
    "actor_lr": ("agent_kwargs", "actor_lr"),
    "lr_decay_steps": ("agent_kwargs", "decay_steps"),
    "critic_lr": ("agent_kwargs", "critic_lr"),
    "value_lr": ("agent_kwargs", "value_lr"),
    "gamma": ("agent_kwargs", "discount"),
    "polyak_tau": ("agent_kwargs", "tau"),
    "actor_ema": ("agent_kwargs", "actor_tau"),
    "reward_expectile": ("agent_kwargs", "critic_hyperparam"),
    "feasibility_expectile": ("agent_kwargs", "cost_critic_hyperparam"),
    "reward_temperature": ("agent_kwargs", "reward_temperature"),
    "cost_temperature": ("agent_kwargs", "cost_temperature"),
    "max_cost_weight": ("agent_kwargs", "cost_ub"),
    "cost_scale": ("dataset_kwargs", "cost_scale"),
    "critic_hidden": ("agent_kwargs", "critic_hidden_dims"),
    "diffusion_steps": ("agent_kwargs", "T"),
    "time_dim": ("agent_kwargs", "time_dim"),
    "actor_blocks": ("agent_kwargs", "actor_num_blocks"),
    "actor_dropout": ("agent_kwargs", "actor_dropout_rate"),
    "candidates": ("agent_kwargs", "N"),
    "sampling_temperature": ("agent_kwargs", "ddpm_temperature"),
    "pick": ("agent_kwargs", "extract_method"),
}
PICK = {"min_qh": "minqc", "max_qr": "maxq"}
#: what the official code hard-codes: these fields must keep these values
FIXED = {"critic_batch_size": 256, "max_reward_weight": 100.0, "normalize_rewards": True,
         "action_clip": 1e-5, "time_hidden": (128, 128), "actor_hidden": 256}


class OfficialFISORError(RuntimeError):
    """The official code is missing, broken or failed; the message names the fix."""


#: the official file whose update_actor hard-codes the floor of the infeasible weights
AGENT_FILE = "jaxrl5/agents/fisor/fisor.py"
_FLOOR = re.compile(r"unsafe_weights\s*=\s*unsafe_condition\s*\*\s*jnp\.clip\(\s*"
                    r"cost_exp_adv\s*,\s*([-+0-9.eE]+)\s*,")
#: which official branch clips the infeasible weights at which floor
FLOOR_BRANCHES = {0.0: "master", 1.0: "metadrive_imitation"}


def official_min_cost_weight(home: Path) -> float:
    """The floor the checkout's update_actor clips the infeasible states' weights at, under the
    `fisor` config's actor_objective "feasibility": 0 on master, 1 on metadrive_imitation."""
    path = Path(home) / AGENT_FILE
    try:
        text = path.read_text()
    except OSError as err:
        raise OfficialFISORError(f"cannot read {path}: {err}") from None
    start = text.find('actor_objective == "feasibility"')
    found = _FLOOR.search(text, max(start, 0))
    if start < 0 or found is None:
        raise OfficialFISORError(
            f"{path}: no `unsafe_weights = unsafe_condition * jnp.clip(cost_exp_adv, FLOOR, "
            "...)` under actor_objective \"feasibility\", so the floor of the infeasible "
            "weights that would run is unknown; use a checkout of the official branches "
            f"({', '.join(FLOOR_BRANCHES.values())})")
    return float(found.group(1))


def check_min_cost_weight(wanted: float, floor: float, home: Path, task: str = "") -> None:
    """An OfficialFISORError unless the config's min_cost_weight is the checkout's floor (the
    record's config must be what ran)."""
    if wanted == floor:
        return
    branch = FLOOR_BRANCHES.get(wanted)
    fix = (f"check out the official branch that clips at {wanted:g} (git -C {home} checkout "
           f"{branch}), or " if branch else "")
    where = f" on {task}" if task else ""
    raise OfficialFISORError(
        f"FISOR min_cost_weight={wanted:g}{where}, but the official checkout in FISOR_HOME "
        f"clips the infeasible weights at {floor:g} ({AGENT_FILE}, as on branch "
        f"{FLOOR_BRANCHES.get(floor, 'unknown')}): {fix}--set min_cost_weight={floor:g} to "
        "run the checkout as it is")


def official_setup() -> tuple[Path, str]:
    """(FISOR_HOME, FISOR_PYTHON) checked, or one OfficialFISORError saying what to set."""
    fix = (f"set FISOR_HOME to a checkout of {REPOSITORY} and FISOR_PYTHON to the python of "
           "an environment where it runs (bash scripts/setup_fisor_official.sh builds both)")
    home_text = os.environ.get("FISOR_HOME", "")
    if not home_text:
        raise OfficialFISORError(f"FISOR_HOME is not set: {fix}")
    home = Path(home_text).expanduser()
    missing = [path for path in REQUIRED if not (home / path).is_file()]
    if missing:
        raise OfficialFISORError(f"FISOR_HOME={home} is not a checkout of the official FISOR "
                                 f"code (no {', '.join(missing)}): {fix}")
    python_text = os.environ.get("FISOR_PYTHON", "")
    if not python_text:
        raise OfficialFISORError(f"FISOR_PYTHON is not set: {fix}")
    python = shutil.which(python_text)
    if python is None:
        raise OfficialFISORError(f"FISOR_PYTHON={python_text} is not an executable: {fix}")
    return home.resolve(), python


def official_overrides(config: Config) -> dict:
    """The harness config as values of the official config; a hard-coded one that differs is
    an error (the record's config must be what ran)."""
    changed = [f"{name}={getattr(config, name)!r} (the official code has {value!r})"
               for name, value in FIXED.items() if getattr(config, name) != value]
    if changed:
        raise OfficialFISORError("the official FISOR code cannot change " + ", ".join(changed)
                                 + "; the native port can (--set implementation=native)")
    overrides: dict = {}
    for name, (section, key) in OFFICIAL_KEYS.items():
        value = getattr(config, name)
        value = PICK.get(value, value) if name == "pick" else value
        value = list(value) if isinstance(value, tuple) else value
        if section:
            overrides.setdefault(section, {})[key] = value
        else:
            overrides[key] = value
    return overrides


def check_official(timeout: float = 300.0) -> dict:
    """The variables checked and the official modules imported once by FISOR_PYTHON (before a
    run plans hours of jobs); returns the driver's report (Python, jax/flax/optax versions)."""
    home, python = official_setup()
    with tempfile.TemporaryDirectory(prefix="fisor-check-") as tmp:
        job = Path(tmp) / "check.json"
        job.write_text(json.dumps({"home": str(home)}))
        try:
            done = subprocess.run([python, str(DRIVER), "check", str(job)], cwd=tmp,
                                  capture_output=True, text=True, timeout=timeout, env=_env())
        except (OSError, subprocess.TimeoutExpired) as err:
            raise OfficialFISORError(f"FISOR_PYTHON={python} could not run the driver: {err}")
    output = (done.stdout + done.stderr).splitlines()
    reports = [_message(line) for line in done.stdout.splitlines()]
    reports = [r for r in reports if r is not None and r.get("event") == "ok"]
    if done.returncode != 0 or not reports:
        raise OfficialFISORError(_failure(
            f"FISOR_PYTHON={python} cannot import the official code in FISOR_HOME={home}",
            done.returncode, output[-TAIL:]))
    return reports[0]


@functools.lru_cache(maxsize=4)
def _checked_home(home: str, python: str) -> Path:
    """check_official once per (FISOR_HOME, FISOR_PYTHON) a process; the checkout's path."""
    check_official()
    return official_setup()[0]


class OfficialFISOR(OfflineMethod):
    """The authors' FISOR as a harness method: trains as a subprocess, acts through one."""

    Config = Config
    threshold_agnostic = True
    trains_itself = True

    @classmethod
    def check_environment(cls, config, task):
        """FISOR_HOME and FISOR_PYTHON set, the official modules importing there (checked once
        a process), the checkout's floor of the infeasible weights equal to the config's, and
        nothing set that the official code hard-codes."""
        try:
            home = _checked_home(os.environ.get("FISOR_HOME", ""),
                                 os.environ.get("FISOR_PYTHON", ""))
            check_min_cost_weight(config.min_cost_weight, official_min_cost_weight(home), home,
                                  task)
            official_overrides(config)
        except OfficialFISORError as err:
            raise ConfigError(str(err)) from None

    def __init__(self, spec, config, threshold, seed, device="cpu"):
        super().__init__(spec, config, threshold, seed, device)
        self.home, self.python = official_setup()
        self.overrides = official_overrides(config)
        self.revision = _git_revision(self.home)
        # the floor of the infeasible weights the checkout's code hard-codes; None: unreadable
        # (an error when it trains; a reloaded model says what trained it)
        try:
            self.min_cost_weight: float | None = official_min_cost_weight(self.home)
        except OfficialFISORError:
            self.min_cost_weight = None
        self.versions: dict | None = None  # python, jax, jaxlib, flax, optax, numpy that ran
        self._checkpoint: bytes | None = None
        self._workdir: Path | None = None
        self._server: subprocess.Popen | None = None
        self._stop = None

    def record_fields(self):
        return {"implementation": "official", "official_commit": self.revision["commit"],
                "official_branch": self.revision["branch"],
                "official_min_cost_weight": self.min_cost_weight,
                "official_versions": self.versions}

    def _job(self, **fields) -> dict:
        spec = self.spec
        task = {"name": spec.name, "obs_dim": spec.obs_dim, "act_dim": spec.act_dim,
                "max_episode_steps": spec.max_episode_steps, "reward_max": spec.reward_max,
                "reward_min": spec.reward_min, "cost_max": spec.cost_max}
        return {"home": str(self.home), "task": task, "overrides": self.overrides,
                "seed": self.seed, **fields}

    # ---- training: one subprocess, its progress streamed --------------------------------
    def train_step(self, batch):
        raise TypeError("the official FISOR trains in its own process, as a whole (fit)")

    def fit(self, arrays, steps, seed, log_every, workdir):
        # what runs is the checkout's code: the config must say the floor it hard-codes
        self.revision = _git_revision(self.home)
        self.min_cost_weight = official_min_cost_weight(self.home)
        check_min_cost_weight(self.config.min_cost_weight, self.min_cost_weight, self.home,
                              self.spec.name)
        workdir = Path(workdir).resolve() / "official"
        workdir.mkdir(parents=True, exist_ok=True)
        data = workdir / "data.npz"
        np.savez(data, **arrays)
        job = self._job(seed=seed, steps=steps, log_every=log_every, data=str(data),
                        out=str(workdir))
        checkpoint = None
        try:
            for message in self._run("train", job, workdir):
                if message.get("event") == "log":
                    print(f"FISOR (official) {self.spec.name} seed {seed}: step "
                          f"{message['step']}/{steps}", file=sys.stderr, flush=True)
                    yield message["step"], message["stats"]
                elif message.get("event") == "done":
                    checkpoint = workdir / message["checkpoint"]
                    self.versions = message.get("versions")
        finally:
            data.unlink(missing_ok=True)
        if checkpoint is None or not checkpoint.is_file():
            raise OfficialFISORError(f"official FISOR training ended without saving a model "
                                     f"(see {workdir / 'train.log'})")
        self._checkpoint = checkpoint.read_bytes()
        self._workdir = workdir
        self._close_server()

    def _run(self, command: str, job: dict, workdir: Path):
        """Run the driver; yield its messages as they come; raise with the output's tail."""
        job_path = workdir / f"{command}.json"
        job_path.write_text(json.dumps(job))
        log_path = workdir / f"{command}.log"
        tail: deque[str] = deque(maxlen=TAIL)
        with open(log_path, "w") as log, subprocess.Popen(
                [self.python, str(DRIVER), command, str(job_path)], cwd=workdir, text=True,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env()) as proc:
            try:
                for line in proc.stdout:
                    log.write(line)
                    log.flush()
                    tail.append(line.rstrip("\n"))
                    message = _message(line)
                    if message is not None:
                        yield message
            finally:
                if proc.poll() is None:  # the consumer stopped early: stop the training too
                    proc.kill()
            status = proc.wait()
        if status != 0:
            raise OfficialFISORError(_failure(f"official FISOR {command} on {self.spec.name}",
                                              status, tail, log_path))

    # ---- acting: the saved agent served to the harness's evaluation loop -------------------
    def reset(self, num_envs, threshold=None):
        # the harness seeds torch before every evaluation: the official key follows from it
        self._ask({"seed": int(torch.randint(2**31 - 1, ()).item())}, "seeded")

    def act(self, obs):
        obs = np.asarray(obs, np.float32)
        reply = self._ask({"obs": obs.tolist()}, "actions")
        return np.asarray(reply["actions"], np.float32).reshape(len(obs), self.spec.act_dim)

    def _ask(self, request: dict, expected: str) -> dict:
        server = self._serve()
        try:
            server.stdin.write(json.dumps(request) + "\n")
            server.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died: the read below reports why
        return self._receive(expected)

    def _serve(self) -> subprocess.Popen:
        if self._server is not None and self._server.poll() is None:
            return self._server
        if self._checkpoint is None:
            raise OfficialFISORError("the official FISOR model is neither trained nor loaded")
        workdir, scratch = self._workdir, None
        if workdir is None or not workdir.is_dir():
            workdir = scratch = Path(tempfile.mkdtemp(prefix="fisor-official-"))
        checkpoint = workdir / "served.pickle"
        checkpoint.write_bytes(self._checkpoint)
        job_path = workdir / "serve.json"
        job_path.write_text(json.dumps(self._job(checkpoint=str(checkpoint))))
        self._server_log = workdir / "serve.log"
        log = open(self._server_log, "w")
        self._server = subprocess.Popen(
            [self.python, str(DRIVER), "serve", str(job_path)], cwd=workdir, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=_env())
        self._stop = weakref.finalize(self, _stop_server, self._server, log, scratch)
        self._receive("ready")
        return self._server

    def _receive(self, expected: str) -> dict:
        while True:
            line = self._server.stdout.readline()
            if not line:
                status = self._server.wait()
                self._stop()
                tail = self._server_log.read_text().splitlines()[-TAIL:]
                raise OfficialFISORError(_failure(f"official FISOR server for {self.spec.name}",
                                                  status, tail, self._server_log))
            message = _message(line)
            if message is not None and message.get("event") == expected:
                return message

    def _close_server(self):
        if self._stop is not None:
            self._stop()
        self._server, self._stop = None, None

    def state_dict(self):
        if self._checkpoint is None:
            raise OfficialFISORError("the official FISOR model is neither trained nor loaded")
        return {"official_pickle": self._checkpoint, "revision": self.revision,
                "versions": self.versions, "overrides": self.overrides,
                "min_cost_weight": self.min_cost_weight}

    def load_state_dict(self, state):
        self._close_server()
        self._checkpoint = state["official_pickle"]
        self.revision = state["revision"]  # the code that trained it, and its environment
        self.versions = state.get("versions")
        self.min_cost_weight = state.get("min_cost_weight", self.min_cost_weight)


def _message(line: str) -> dict | None:
    if not line.startswith(PREFIX):
        return None
    try:
        return json.loads(line[len(PREFIX):])
    except json.JSONDecodeError:
        return None


def _failure(what: str, status: int, tail, log_path: Path | None = None) -> str:
    where = f" (full output: {log_path})" if log_path else ""
    lines = "\n".join(f"  | {line}" for line in tail)
    return f"{what} exited with status {status}{where}; last lines:\n{lines}"


def _env() -> dict:
    # unbuffered, so progress streams; JAX not grabbing the GPU's memory (the authors' run.sh);
    # dsrl (imported by the official loader) not warning about simulators the driver never uses
    return {**os.environ, "PYTHONUNBUFFERED": "1", "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
            "DSRL_SUPPRESS_IMPORT_ERROR": "1"}


def _git_revision(home: Path) -> dict:
    out = {}
    for key, args in (("commit", ["rev-parse", "HEAD"]),
                      ("branch", ["rev-parse", "--abbrev-ref", "HEAD"])):
        try:
            done = subprocess.run(["git", "-C", str(home), *args], capture_output=True,
                                  text=True, timeout=10)
            out[key] = done.stdout.strip() if done.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            out[key] = None
    return out


def _stop_server(server: subprocess.Popen, log, scratch: Path | None) -> None:
    """End a serving driver (its stdin closed: it leaves its loop) and tidy up."""
    if server.poll() is None:
        try:
            server.stdin.close()
            server.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            server.kill()
            server.wait()
    for stream in (server.stdout, server.stdin):
        if stream is not None and not stream.closed:
            try:
                stream.close()
            except OSError:
                pass
    log.close()
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)


OTHER_IMPLEMENTATIONS["official"] = OfficialFISOR
