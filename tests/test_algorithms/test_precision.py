"""--precision bf16: every method trains, saves, resumes and acts in it, by the one rule of
algorithms/nets.py ("Precision"); the fp32 path computes what it always did; a bf16 job is a
job of its own, and a resumed one writes the records of an unbroken one."""

import json

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from algorithms import BUILT_IN, METHODS
from algorithms.base import ConfigError
from bench.cli import main
from tasks.samplers import make_sampler
from helpers import SPEC, build, fake_arrays

aten = torch.ops.aten
#: the matmuls, with their multiply-adds from the shapes of (input, weight)
MATMULS = {
    aten.mm.default: lambda a, b: (a, a.shape[0] * a.shape[1] * b.shape[1]),
    aten.addmm.default: lambda c, a, b, **k: (a, a.shape[0] * a.shape[1] * b.shape[1]),
    aten.bmm.default: lambda a, b: (a, a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]),
    aten.baddbmm.default: lambda c, a, b, **k: (a, a.shape[0] * a.shape[1] * a.shape[2]
                                                * b.shape[2]),
}


class Arithmetic(TorchDispatchMode):
    """Multiply-adds of the matmuls by dtype, and every dtype any operation produced."""

    def __init__(self):
        super().__init__()
        self.matmul: dict[torch.dtype, int] = {}
        self.produced: set[torch.dtype] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in MATMULS:
            a, macs = MATMULS[func](*args, **(kwargs or {}))
            self.matmul[a.dtype] = self.matmul.get(a.dtype, 0) + macs
        for value in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(value, torch.Tensor):
                self.produced.add(value.dtype)
        return out

    def share(self, dtype) -> float:
        return self.matmul.get(dtype, 0) / sum(self.matmul.values())


def trained(name, precision, steps=3, seed=0, device="cpu"):
    torch.manual_seed(seed)
    method = build(name, seed=seed, device=device)
    method.set_precision(precision)
    sampler = make_sampler(method, method.training_data(fake_arrays()), 32, seed=0,
                           device=device)
    for _ in range(steps):
        stats = method.train_step(sampler.sample())
        assert stats and all(np.isfinite(float(v)) for v in stats.values())
    return method, sampler


def fp32_state(method):
    """Every tensor of the state dict (weights, targets, optimizer moments) is fp32."""
    def walk(value):
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                yield from walk(item)
    return {t.dtype for t in walk(method.state_dict()) if t.is_floating_point()} <= {
        torch.float32}


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_method_trains_saves_resumes_and_acts_in_bf16(name, tmp_path, device):
    method, sampler = trained(name, "bf16", device=device)
    assert method.precision == "bf16"
    with Arithmetic() as seen:  # the step's matmuls run in bf16 ...
        stats = method.train_step(sampler.sample())
    assert seen.share(torch.bfloat16) > 0.9, seen.matmul
    assert all(v.dtype == torch.float32 for v in stats.values()
               if isinstance(v, torch.Tensor))  # ... its losses and weights are fp32
    assert fp32_state(method)  # master weights and optimizer state stay fp32
    obs = np.random.default_rng(1).normal(size=(5, SPEC.obs_dim)).astype(np.float32)
    method.reset(5)
    torch.manual_seed(7)
    actions = method.act(obs)
    assert actions.dtype == np.float32 and actions.shape == (5, SPEC.act_dim)
    assert np.all(np.abs(actions) <= 1.0)
    torch.save(method.state_dict(), tmp_path / "state.pt")
    other = build(name, seed=1, device=device)
    other.set_precision("bf16")
    other.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=False))
    other.reset(5)
    torch.manual_seed(7)
    np.testing.assert_array_equal(other.act(obs), actions)
    batch = sampler.sample()
    torch.manual_seed(4)
    first = {k: float(v) for k, v in method.train_step(batch).items()}
    torch.manual_seed(4)
    assert {k: float(v) for k, v in other.train_step(batch).items()} == first


@pytest.mark.parametrize("name", BUILT_IN)
def test_fp32_produces_no_bf16_tensor_at_all(name):
    """fp32 is the path it always was: no autocast region, no cast, not one bf16 tensor
    (the same records as before precision existed: scripts/same_records.py checks that
    across commits)."""
    method, sampler = trained(name, "fp32", steps=1)
    with Arithmetic() as seen:
        method.train_step(sampler.sample())
        method.reset(3)
        method.act(np.zeros((3, SPEC.obs_dim), np.float32))
    assert torch.bfloat16 not in seen.produced and seen.share(torch.float32) == 1.0


@pytest.mark.parametrize("name", BUILT_IN)
def test_a_bf16_network_gives_fp32_outputs(name):
    """The heads run in fp32: every output of every network a method names is fp32."""
    method, sampler = trained(name, "bf16", steps=1)
    outputs = []

    def keep(module, args, out):
        outputs.extend(v for v in (out if isinstance(out, tuple) else (out,))
                       if isinstance(v, torch.Tensor))

    import operator

    hooks = [operator.attrgetter(path)(method).register_forward_hook(keep)
             for path in method.bf16_networks]
    method.train_step(sampler.sample())
    for hook in hooks:
        hook.remove()
    assert outputs and {out.dtype for out in outputs if out.is_floating_point()} == {
        torch.float32}


def test_each_method_declares_its_bf16_networks_once():
    # the shipped methods; a plugin may leave bf16 out (it then trains in fp32 only, below),
    # and whether one is loaded depends on which test ran first
    for name in BUILT_IN:
        cls = METHODS[name]
        assert cls.bf16_networks, f"{name} names no bf16 networks"
        method = build(name)
        method.set_precision("bf16")  # every name resolves to a network with a compute dtype
    with pytest.raises(ConfigError, match="unknown precision 'fp16'"):
        build("BC-All").set_precision("fp16")


def test_a_method_without_a_declaration_trains_in_fp32_only():
    from algorithms.bc import BCAll

    class Plain(BCAll):
        bf16_networks = ()

    method = Plain(SPEC, build("BC-All").config, None, 0)
    method.set_precision("fp32")
    with pytest.raises(ConfigError, match="Plain trains in fp32 only"):
        method.set_precision("bf16")


def test_fisor_official_refuses_bf16_before_anything_trains():
    import dataclasses

    from algorithms.fisor import FISOR

    official = dataclasses.replace(FISOR.Config(), implementation="official")
    FISOR.check_precision(FISOR.Config(), "bf16")  # the native port can
    with pytest.raises(ConfigError, match="official.*fp32"):
        FISOR.check_precision(official, "bf16")


def test_cdt_attention_is_fp32_inside_bf16_blocks(monkeypatch):
    """Softmax of the attention in fp32 even where the projections around it are bf16."""
    import algorithms.cdt as cdt

    seen = []
    real = torch.softmax

    def softmax(x, *args, **kwargs):
        seen.append(x.dtype)
        return real(x, *args, **kwargs)

    monkeypatch.setattr(torch, "softmax", softmax)
    method, sampler = trained("CDT", "bf16", steps=1)
    assert seen and set(seen) == {torch.float32}
    assert cdt.CDT.bf16_networks == ("net",)


# ---- jobs, hashes, records -----------------------------------------------------------------
def _jobs(tmp_path, local_ballrun, precision="fp32", **kw):
    from bench.plan import plan_jobs
    from tasks.registry import get_task

    return plan_jobs([get_task("BallRun")], ["BC-All", "LSPC"], [0], "smoke", tmp_path,
                     "local", precision=precision, **kw)


def test_fp32_jobs_keep_their_hashes_and_bf16_jobs_have_their_own(local_ballrun, tmp_path):
    import dataclasses

    from bench.plan import _payload
    from bench.records import config_hash

    fp32, bf16 = _jobs(tmp_path, local_ballrun), _jobs(tmp_path, local_ballrun, "bf16")
    for job in fp32:  # an fp32 payload has no precision field
        assert job.job_hash == config_hash({
            "method": job.method, "config": job.config, "steps": job.steps,
            "eval_episodes": job.eval_episodes, "data_arrays_sha256": job.data_arrays_sha256,
            "train_threshold": job.train_threshold})
        assert "precision" not in _payload([job])[0]  # plans saved as before, too
    for a, b in zip(fp32, bf16):
        assert a.job_hash != b.job_hash and a.record_path(10.0) != b.record_path(10.0)
        assert dataclasses.replace(b, precision="fp32", job_hash=a.job_hash) == a
        assert b.label.startswith(f"{b.method} bf16 ") and "bf16" not in a.label
        assert _payload([b])[0]["precision"] == "bf16"


def test_a_bf16_run_records_beside_fp32_and_reports_say_which(local_ballrun, tmp_path, capsys):
    from helpers import run

    results = tmp_path / "results"
    assert run(results, "--methods", "BC-All") == 0
    assert run(results, "--methods", "BC-All", "--precision", "bf16") == 0
    records = [json.loads(p.read_text()) for p in sorted(results.rglob("thr*-seed*.json"))]
    fp32 = [r for r in records if "precision" not in r]  # as every record before precision
    bf16 = [r for r in records if r.get("precision") == "bf16"]
    assert len(fp32) == len(bf16) == 3
    assert {r["config_hash"] for r in fp32}.isdisjoint(r["config_hash"] for r in bf16)
    capsys.readouterr()
    assert run(results, "--methods", "BC-All", "--precision", "bf16") == 0  # recorded: skipped
    assert "0 to run, 1 already recorded" in capsys.readouterr().out
    assert main(["report", "--results", str(results)]) == 0
    table = capsys.readouterr().out
    assert "| BC-All reward" in table and "| BC-All [bf16] reward" in table  # both columns
    assert "Precision: bf16 and fp32 (a column says one other than fp32)" in table
    assert main(["status", "--results", str(results)]) == 0
    assert "BC-All bf16" in capsys.readouterr().out
    # a folder of bf16 records only (a study made in bf16): the paper's names, so that its
    # columns meet the paper's and the claims find their methods; the notes say bf16
    only_bf16 = tmp_path / "only-bf16"
    for path in results.rglob("thr*-seed*.json"):
        if json.loads(path.read_text()).get("precision") == "bf16":
            (only_bf16 / path.relative_to(results)).parent.mkdir(parents=True, exist_ok=True)
            (only_bf16 / path.relative_to(results)).write_text(path.read_text())
    assert main(["report", "--results", str(only_bf16)]) == 0
    table = capsys.readouterr().out
    assert "| BC-All reward" in table and "[bf16]" not in table and "Precision: bf16." in table
    assert main(["claims", "--results", str(only_bf16), "--format", "json"]) == 0
    claims = {c["id"]: c for c in json.loads(capsys.readouterr().out)}
    assert claims["C6"]["holds"] is not None  # "BC-All is unsafe": found and evaluated


def test_a_resumed_bf16_job_writes_the_records_of_an_unbroken_one(local_ballrun, tmp_path):
    """SIGKILL in mid-training, then the same command: the records an unbroken bf16 run
    writes (test_scheduler's check, in bf16)."""
    import os
    import signal

    from helpers import RUN, bench, records, wait_for_step

    # a batch of 128: a processor without bf16 arithmetic emulates it, 20x slower than fp32
    run = [*RUN, "--precision", "bf16", "--set", "batch_size=128"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    first = bench(*run, "--results", str(whole))
    assert first.wait(timeout=300) == 0, first.stdout.read()
    proc = bench(*run, "--results", str(killed))
    wait_for_step(killed, 20, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not records(killed)
    again = bench(*run, "--results", str(killed))
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0 and "resumed from step" in out, out
    assert records(killed) == records(whole)
    assert {r["precision"] for r in records(whole).values()} == {"bf16"}


def test_run_transfer_and_speed_take_the_precision(local_ballrun, tmp_path, capsys):
    from bench.cli import build_parser
    from bench.estimate import read_cache
    from helpers import run

    for command in (["run", "--tasks", "BallRun"], ["transfer", "--from", "easysparse"],
                    ["speed"]):
        assert build_parser().parse_args(command).precision == "fp32"
        assert build_parser().parse_args([*command, "--precision", "bf16"]).precision == "bf16"
        with pytest.raises(SystemExit):
            build_parser().parse_args([*command, "--precision", "fp16"])
    capsys.readouterr()
    # a dry run times a bf16 job by bf16 speeds, measured now and kept apart from fp32's
    assert run(tmp_path / "r", "--methods", "BC-All", "--precision", "bf16", "--dry-run") == 0
    assert "estimated:" in capsys.readouterr().out
    assert list(read_cache()) == ["BC-All|BallRun|cpu|bf16"]


def test_the_equivalence_script_on_a_smoke_budget(local_ballrun, tmp_path, capsys):
    """scripts/precision_equivalence.py: both precisions' jobs, the side-by-side table and the
    tracking of LSPC's steps, on a smoke budget."""
    import importlib.util

    from helpers import ROOT

    spec = importlib.util.spec_from_file_location(
        "precision_equivalence", ROOT / "scripts" / "precision_equivalence.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    results = tmp_path / "eq"
    assert script.main([str(results), "--budget", "smoke", "--jobs", "1", "--quiet",
                        "--track-steps", "20"]) == 0
    page = (results / "precision-equivalence.md").read_text()
    for method in ("LSPC-S", "LSPC-O", "BC-Safe", "COptiDICE"):
        for metric in ("reward", "cost"):
            assert f"| BallRun | {method} | {metric} |" in page
    assert "| loss/q |" in page and "| weights/cost_mean |" in page
    recorded = [json.loads(p.read_text()) for p in results.rglob("thr*-seed*.json")]
    coptidice = [r for r in recorded if r["method"] == "COptiDICE"]
    assert {r["threshold"] for r in coptidice} == {20.0} and len(coptidice) == 4  # 2 seeds x 2
    assert sorted({r.get("precision", "fp32") for r in recorded}) == ["bf16", "fp32"]
    tracks = sorted((results / "precision-tracking").glob("*.csv"))
    assert len(tracks) == 2
    rows = tracks[0].read_text().splitlines()
    assert len(rows) == 21 and rows[0].startswith("step,loss/v")
    # rendered again from what is recorded, nothing trained
    capsys.readouterr()
    out = tmp_path / "precision.md"
    assert script.main([str(results), "--budget", "smoke", "--report-only",
                        "--track-steps", "20", "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("| BallRun |") == 8
    # the page names the command that trains it, with no path of this machine in it
    assert "python scripts/precision_equivalence.py RESULTS --budget smoke --track-steps 20\n" \
        in out.read_text()
    assert str(tmp_path) not in out.read_text()


@pytest.mark.parametrize("threads", [1, 2])
def test_an_fp32_ensemble_computes_the_batched_matmuls_bit_for_bit(threads):
    """fp32 keeps the numbers it always had: an ensemble's output and every gradient (weights
    and input, 4 members, 1024 rows) equal the plain baddbmm chain's exactly. A member-by-member
    forward gives the same outputs but sums some gradients in another order."""
    from algorithms.nets import EnsembleMLP

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        net = EnsembleMLP(41, 1, (256, 256), 4)
        x = torch.randn(1024, 41, requires_grad=True)
        ours = net(x)
        ours.square().sum().backward()
        grads = [p.grad.clone() for p in net.parameters()] + [x.grad.clone()]
        net.zero_grad()
        x.grad = None

        h = x.expand(4, *x.shape)
        for i, (w, b) in enumerate(zip(net.weights, net.biases)):
            h = torch.baddbmm(b, h, w)
            if i < len(net.weights) - 1:
                h = torch.relu(h)
        h.square().sum().backward()
        assert torch.equal(ours, h)
        for mine, plain in zip(grads, [p.grad for p in net.parameters()] + [x.grad]):
            assert torch.equal(mine, plain)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("members,outputs,shared", [(4, 1, True), (2, 1, False), (2, 3, True)])
def test_a_bf16_ensemble_has_plain_autograds_numbers_bit_for_bit(members, outputs, shared):
    """The bf16 ensemble's members taken by one unbind per stacked weight change no number:
    its output and every gradient (weights, biases and input) equal plain autograd's over
    per-member indexing, addmms and an upcast baddbmm head, exactly."""
    from algorithms.nets import EnsembleMLP, low_precision

    torch.manual_seed(0)
    net = EnsembleMLP(41, outputs, (256, 256), members)
    net.compute_dtype = torch.bfloat16
    x = torch.randn(1024, 41) if shared else torch.randn(members, 1024, 41)

    def plain(x):
        with low_precision(torch.bfloat16, x):
            hidden = []
            for m in range(members):
                h = x if x.dim() == 2 else x[m]
                for w, b in zip(net.weights[:-1], net.biases[:-1]):
                    h = torch.relu(torch.addmm(b[m, 0], h, w[m]))
                hidden.append(h)
        assert hidden[0].dtype == torch.bfloat16
        return torch.baddbmm(net.biases[-1], torch.stack(hidden).float(), net.weights[-1])

    results = []
    for forward in (net, plain):
        net.zero_grad(set_to_none=True)
        leaf = x.clone().requires_grad_()
        out = forward(leaf)
        (out.square().mean() + 0.3 * out.sum()).backward()
        results.append([out, leaf.grad, *(p.grad for p in net.parameters())])
    assert results[0][0].dtype == torch.float32
    for ours, theirs in zip(*results):
        assert torch.equal(ours, theirs)
