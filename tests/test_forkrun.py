"""tests/forkrun.py, the preloaded interpreter the reliability tests fork their commands from:
each command must behave as the process ``python script.py`` would start (argv, folder,
environment, output, exit code, signals)."""

import os
import signal
import subprocess
import textwrap
import time

import pytest

from forkrun import Zygote

SCRIPT = textwrap.dedent("""
    import os, sys, time
    print("argv", sys.argv[1:], "cwd", os.getcwd(), "var", os.environ.get("FORKRUN_VAR"))
    print("to stderr", file=sys.stderr)
    if sys.argv[1:] == ["sleep"]:
        print("sleeping", file=sys.stderr, flush=True)
        time.sleep(60)
    if sys.argv[1:] == ["fail"]:
        raise ValueError("boom")
    sys.exit(int(sys.argv[1]) if sys.argv[1:] and sys.argv[1].isdigit() else 0)
""")


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """A zygote that preloads nothing: the mechanics without torch's start-up."""
    z = Zygote(dict(os.environ), tmp_path_factory.mktemp("bare"), preload=())
    yield z
    z.close()


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "script.py"
    path.write_text(SCRIPT)
    return path


def test_argv_folder_environment_output_and_exit_code(bare, script, tmp_path):
    r = bare.run([script, "7"], cwd=tmp_path, env={**os.environ, "FORKRUN_VAR": "x1"})
    assert r.returncode == 7 and r.stderr == "to stderr\n"
    assert r.stdout == f"argv ['7'] cwd {tmp_path} var x1\n"
    r = bare.run([script], cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "FORKRUN_VAR"})
    assert r.returncode == 0 and r.stdout.endswith("var None\n")


def test_an_uncaught_exception_is_a_traceback_and_exit_1(bare, script):
    r = bare.run([script, "fail"])
    assert r.returncode == 1 and "Traceback" in r.stderr and "ValueError: boom" in r.stderr


def test_modules_run_as_with_python_m(bare, tmp_path):
    (tmp_path / "data.json").write_text('{"b": 1}')
    r = bare.run(["-m", "json.tool", "data.json"], cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == '{\n    "b": 1\n}\n'


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGKILL, -signal.SIGKILL),
                                       (signal.SIGINT, -signal.SIGINT)])
def test_signals_end_the_process_as_they_end_python(bare, script, tmp_path, sig, code):
    """SIGINT: Python's KeyboardInterrupt, then death by the signal (as the interpreter does)."""
    log = tmp_path / "err.txt"
    p = bare.popen([script, "sleep"], stderr=log, new_session=True)
    assert log.exists()  # at once, as a file given to Popen
    deadline = time.monotonic() + 30
    while "sleeping" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert p.poll() is None and os.getpgid(p.pid) == p.pid  # its own process group
    os.killpg(p.pid, sig)
    assert p.wait(30) == code and p.returncode == code
    p.kill()  # ended: no signal to a pid that may be reused


def test_close_ends_leftover_commands(tmp_path, script):
    z = Zygote(dict(os.environ), tmp_path, preload=())
    p = z.popen([script, "sleep"])
    with pytest.raises(subprocess.TimeoutExpired):
        p.wait(0.1)
    z.close()
    assert p.wait(10) == -signal.SIGKILL


def test_it_is_a_real_process_of_its_own(bare, tmp_path):
    code = tmp_path / "pid.py"
    code.write_text("import os; print(os.getpid(), os.getppid())")
    r = bare.run([code])
    pid, parent = map(int, r.stdout.split())
    assert pid not in (os.getpid(), parent) and parent != os.getpid()  # the zygote's child
