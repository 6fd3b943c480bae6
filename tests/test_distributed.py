"""torchrun with 2 gloo processes on CPU: same result as one process with twice the batch."""

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fast_nst.io.checkpoint import read_checkpoint

from conftest import REPO, run_cli

TORCHRUN = Path(sys.executable).with_name("torchrun")
pytestmark = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed next to python")


def torchrun(*args: str, cwd: Path):
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(TORCHRUN), "--nproc_per_node=2", "--standalone",
                           str(REPO / "train.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def test_two_processes_equal_one_process_with_double_batch(tiny_config, tmp_path):
    # With the stability term: each photo's random motion depends on its index in the global
    # batch, so the two halves draw what the double batch does.
    common = dict(max_steps=4, checkpoint_every=2, image_log_every=100, stability_weight=100.0, ema_decay=0.9)
    ddp_conf = tiny_config("ddp", batch_size=2, **common)
    single_conf = tiny_config("single", batch_size=4, **common)
    with ThreadPoolExecutor(2) as pool:  # independent runs: side by side
        single = pool.submit(run_cli, "train.py", "-c", str(single_conf), "--no_progress", cwd=tmp_path,
                             env={"OMP_NUM_THREADS": "1"})
        # Two steps, then resumed to the config's four: a resumed 2-process run continues from
        # the saved step as if it had not stopped.
        first = torchrun("-c", str(ddp_conf), "--set", "max_steps=2", "--no_progress", cwd=tmp_path)
        assert first.returncode == 0, first.stderr[-3000:]
        assert "batch 2 x 2 processes = global batch 4" in first.stderr
        r = torchrun("-c", str(ddp_conf), "--resume", "--no_progress", cwd=tmp_path)
        s = single.result()
    assert r.returncode == 0, r.stderr[-3000:]
    assert "steps 2 -> 4" in r.stderr and r.stderr.count("Done: 2 steps") == 1  # only rank 0 reports
    assert s.returncode == 0, s.stderr
    models = tmp_path / "models"
    events = [p.name for p in (models / "ddp").iterdir() if p.name.startswith("events")]
    assert len(events) == 2, events  # one per run: only rank 0 writes them
    assert [p.name for p in models.glob("ddp/*.pth")] == ["ddp.pth"]
    a = read_checkpoint(models / "ddp" / "ddp.pth")["model_state"]
    b = read_checkpoint(models / "single" / "single.pth")["model_state"]
    # DDP averages the two half-batch gradients = the full-batch mean gradient, but the float
    # summation order differs, and Adam divides each gradient by its own running magnitude, so
    # rounding-level gradient differences become differences of a small fraction of lr (1e-3)
    # per step: bit equality is impossible. Measured after 4 steps: on torch 2.14 max 2e-4 and no
    # weight off by more than 2e-4; on 2.6 (other CPU kernels, run-to-run varying) max 6e-4 to
    # 2.2e-3 with 0.05 % of weights past 2e-4. Training on one rank's half batch alone (no
    # gradient sync) differs by up to 8e-3, with 91 % of weights past 2e-4.
    diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    assert (diff > 2e-4).float().mean() < 0.01 and diff.max() < 4e-3, (diff.max(), (diff > 2e-4).float().mean())
    # logged losses are the global mean, so the curves match too (within 1e-4 on torch 2.14, 1.6e-4
    # on 2.6; one rank's own half-batch loss would be off by far more)
    la = EventAccumulator(str(models / "ddp")).Reload().Scalars("loss/total")
    lb = EventAccumulator(str(models / "single")).Reload().Scalars("loss/total")
    assert [e.step for e in la] == [e.step for e in lb]
    for ea, eb in zip(la, lb):
        assert ea.value == pytest.approx(eb.value, rel=1e-3)



def test_adain_two_processes_equal_one_process_with_double_batch(tiny_config, train_dir, tmp_path):
    """An arbitrary-style network under torchrun: DDP wraps the decoder (the encoder is frozen),
    the paintings are sharded like the photos, the warm-up follows the global step, and the
    decoder-only checkpoint matches a one-process run with twice the batch."""
    adain = dict(model_type="adain", style_image="", style_dir=str(train_dir), style_weight=10.0, tv_weight=0.0,
                 model_args={"encoder_layer": "relu2_1"}, style_layers=["relu1_1", "relu2_1"],
                 style_warmup_steps=2, max_steps=3, checkpoint_every=3, image_log_every=100, num_samples=0)
    with ThreadPoolExecutor(2) as pool:  # independent runs: side by side
        single = pool.submit(run_cli, "train.py", "-c", str(tiny_config("ada_one", batch_size=4, **adain)),
                             "--no_progress", cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
        r = torchrun("-c", str(tiny_config("ada_ddp", batch_size=2, **adain)), "--no_progress", cwd=tmp_path)
        s = single.result()
    assert r.returncode == 0, r.stderr[-3000:]
    assert "batch 2 x 2 processes = global batch 4" in r.stderr
    assert s.returncode == 0, s.stderr
    a = read_checkpoint(tmp_path / "models" / "ada_ddp" / "ada_ddp.pth")
    b = read_checkpoint(tmp_path / "models" / "ada_one" / "ada_one.pth")["model_state"]
    assert a["step"] == 3 and list(a["model_state"]) == list(b) and all(k.startswith("decoder.") for k in b)
    # The tolerance of the Johnson test above, for the same reasons (summation order, Adam).
    diff = torch.cat([(a["model_state"][k] - b[k]).abs().flatten() for k in b])
    assert (diff > 2e-4).float().mean() < 0.01 and diff.max() < 4e-3, (diff.max(), (diff > 2e-4).float().mean())


def test_errors_stop_every_rank(tiny_config, tmp_path):
    conf = tiny_config("broken", train_dir=str(tmp_path / "nope"))
    r = torchrun("-c", str(conf), cwd=tmp_path)
    assert r.returncode != 0
    assert "train_dir" in r.stderr and "does not exist" in r.stderr
    assert not (tmp_path / "models" / "broken" / "broken.pth").exists()


def start_torchrun(conf: Path, cwd: Path, log=None):
    """A 2-process torchrun training in its own process group (to signal it as a terminal does);
    its stderr goes to ``log`` (an open file) when given, to be read while it runs."""
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(REPO / "train.py"),
                             "-c", str(conf), "--no_progress"], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=log or subprocess.PIPE, start_new_session=True)


def test_ctrl_c_stops_every_rank_at_the_same_step(tiny_config, tmp_path):
    import os
    import signal
    import time

    conf = tiny_config("sig", max_steps=100000, checkpoint_every=100000, image_log_every=100000,
                       log_every=100000)
    log_file = tmp_path / "stderr.log"
    with open(log_file, "w") as log:
        p = start_torchrun(conf, tmp_path, log)
        run_dir = tmp_path / "models" / "sig"
        deadline = time.time() + 300
        # Rank 0 logs its first step ("step 1/100000: ..."): a step is trained, however slowly.
        while "step 1/" not in log_file.read_text() and p.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        p.communicate(timeout=120)
    err = log_file.read_text()
    assert p.returncode != 0
    saved = sorted((run_dir / "checkpoints").glob("step_*.pth"))
    assert len(saved) == 1
    step = read_checkpoint(saved[0])["step"]
    assert err.count("Stopped (SIGINT)") == 1  # rank 0 explains, rank 1 stops silently
    assert f"at step {step}/" in err and str(saved[0]) in err
    assert f"Resume with: torchrun --nproc_per_node=2 {REPO / 'train.py'} -c" in err  # not python train.py
    # (A torchrun --resume from a saved step: test_two_processes_equal_one_process_with_double_batch.)


def test_more_processes_than_gpus_is_a_clear_error(monkeypatch):
    from fast_nst.training.distributed import init_distributed
    from fast_nst.core.errors import FastNSTError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(FastNSTError, match="LOCAL_RANK=1.*only 1 CUDA device.*--nproc_per_node to at most 1"):
        init_distributed("auto")


def test_a_killed_process_stops_the_others_with_one_line(tiny_config, tmp_path):
    """kill -9 of one rank: the other ends with one message (no traceback of ours, no hang) and
    the checkpoints written so far are kept."""
    import os
    import signal
    import time

    conf = tiny_config("kill9", max_steps=100000, checkpoint_every=2, image_log_every=100000,
                       log_every=100000)
    p = start_torchrun(conf, tmp_path)
    run_dir = tmp_path / "models" / "kill9"
    deadline = time.time() + 120
    while not list((run_dir / "checkpoints").glob("step_*.pth")) and time.time() < deadline:
        time.sleep(0.2)

    def local_rank(pid: str) -> str:
        try:
            env_vars = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return ""
        return next((v.split(b"=", 1)[1].decode() for v in env_vars if v.startswith(b"LOCAL_RANK=")), "")

    victims = [pid for pid in os.listdir("/proc") if pid.isdigit() and local_rank(pid) == "1"
               and f"{run_dir.name}.yml" in Path(f"/proc/{pid}/cmdline").read_text(errors="ignore")]
    assert victims, "rank 1 not found"
    os.kill(int(victims[0]), signal.SIGKILL)
    _, err = p.communicate(timeout=120)
    assert p.returncode != 0
    assert "another training process stopped without a word" in err and "--resume" in err
    ours = err.split("another training process stopped")[0]
    assert "fast_nst/training" not in ours  # no traceback through our code before the message
    assert list((run_dir / "checkpoints").glob("step_*.pth"))
