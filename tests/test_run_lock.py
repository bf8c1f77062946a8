"""One writer per run directory: the lock (files.RunLock), readers that leave a writer's
files alone, and two real processes on one run directory through the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scratchllm.cli import main
from scratchllm.files import LOCK_FILE, RunInUseError, lock_holder, run_lock

SRC = str(Path(__file__).resolve().parents[1] / "src")
_HOLDER = """
import sys, time
from scratchllm.files import run_lock
run_lock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


def _spawn(*args: str, script: str = _HOLDER) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True, env=env
    )


@pytest.fixture
def holder(tmp_path):
    """A live process holding the lock of tmp_path/run."""
    run = tmp_path / "run"
    proc = _spawn(str(run))
    try:
        assert proc.stdout.readline().strip() == "held"
        yield run, proc
    finally:
        proc.kill()
        proc.wait()


def test_a_second_writer_is_refused_with_the_holders_pid(holder):
    run, proc = holder
    with pytest.raises(RunInUseError, match=f"run in use by pid {proc.pid} ") as e:
        run_lock(run).acquire()
    assert e.value.holder["pid"] == proc.pid and "sample, eval and" in str(e.value)
    assert lock_holder(run)["pid"] == proc.pid


def test_a_dead_writers_lock_is_taken_over_with_a_note(holder):
    run, proc = holder
    proc.send_signal(signal.SIGKILL)  # no cleanup: the lock file stays behind
    proc.wait()
    assert json.loads((run / LOCK_FILE).read_text())["pid"] == proc.pid
    assert lock_holder(run) is None  # readers see no writer at work
    with run_lock(run) as lock:
        assert f"from pid {proc.pid}" in lock.note and "no longer running" in lock.note
        assert lock_holder(run)["pid"] == os.getpid()
    assert not (run / LOCK_FILE).exists()  # released: the file goes with it


def test_the_same_process_nests(tmp_path):
    with run_lock(tmp_path) as outer:
        with run_lock(tmp_path):  # train_run -> Trainer.train on one directory
            pass
        assert lock_holder(tmp_path)["pid"] == os.getpid()  # still held by the outer one
        assert outer.note is None
    assert lock_holder(tmp_path) is None


def test_a_directory_made_for_the_lock_goes_with_it_when_nothing_was_written(tmp_path):
    with run_lock(tmp_path / "new"):  # e.g. a train whose settings are then refused
        pass
    assert not (tmp_path / "new").exists()
    with run_lock(tmp_path / "used"):
        (tmp_path / "used" / "train.toml").write_text("")
    assert (tmp_path / "used").is_dir()
    (tmp_path / "mine").mkdir()  # there before: left as it was
    with run_lock(tmp_path / "mine"):
        pass
    assert (tmp_path / "mine").is_dir()


def test_readers_leave_a_save_in_progress_alone(holder, tmp_path):
    """Mid-swap (last/ renamed to .last.old/, .last.tmp/ being written) while the writer
    lives: a reader reads .last.old/ and deletes nothing; once the writer is dead, the
    next reader finishes the swap."""
    from scratchllm.checkpoint import load_checkpoint, save_checkpoint
    from scratchllm.models import GPT, GPTConfig
    from scratchllm.tokenizers import CharTokenizer

    run, proc = holder
    tok = CharTokenizer.train("abcdef")
    save_checkpoint(run / ".last.old", GPT(GPTConfig(vocab_size=6, n_layer=1, n_head=1,
                    n_embd=8, block_size=8)), tok, state={"step": 3})  # fmt: skip
    (run / ".last.tmp").mkdir()
    (run / ".last.tmp" / "config.json").write_text("{")  # the writer's save, half done
    assert load_checkpoint(run).step == 3
    assert (run / ".last.tmp").is_dir() and not (run / "last").exists()
    proc.kill()
    proc.wait()
    assert load_checkpoint(run).step == 3
    assert (run / "last").is_dir() and not (run / ".last.tmp").exists()


# -- two real processes through the CLI ---------------------------------------------------------

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32",
        "--batch-size", "4", "--device", "cpu", "--quiet"]  # fmt: skip
_TRAIN = """
import sys
from scratchllm.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_one_writer_many_readers_while_a_run_trains(tmp_path, capsys):
    data = tmp_path / "cats.txt"
    data.write_text("".join(f"the cat {i % 7} sat on the mat {i % 5}.\n" for i in range(300)))
    run = tmp_path / "run"
    argv = ["train", "--data", str(data), *TINY, "--max-iters", "100000", "--eval-interval",
            "2", "--eval-iters", "1", "--log-interval", "1", "--out", str(run)]  # fmt: skip
    writer = _spawn(*argv, script=_TRAIN)
    try:
        deadline = time.monotonic() + 120
        while not (run / "last" / "trainer_state.json").is_file():
            assert writer.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.2)
        in_use = f"run in use by pid {writer.pid} "
        for other in (
            ["train", "--out", str(run), "--resume"],
            ["train", "--data", str(data), *TINY, "--out", str(run), "--force"],
            ["demo", "--quick", "--out", str(run), "--force"],
        ):
            assert main(other) == 2, other
            assert in_use in capsys.readouterr().err, other
        # Readers read while it writes (it saves every 2 steps).
        for reader in (
            ["sample", str(run), "--prompt", "the", "--max-new-tokens", "5"],
            ["eval", str(run), "--data", str(data), "--json"],
            ["inspect", str(run), "--out", str(tmp_path / "look"), "--text", "the cat"],
        ):
            assert main(reader) == 0, (reader, capsys.readouterr().err)
        capsys.readouterr()
        assert writer.poll() is None  # it never noticed the others
    finally:
        writer.send_signal(signal.SIGKILL)  # dies holding the lock
        writer.wait()
    step = json.loads((run / "last" / "trainer_state.json").read_text())["step"]
    code = main(["train", "--out", str(run), "--resume", "--max-iters", str(step + 2), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and f"from pid {writer.pid}" in out and "no longer running" in out
    assert not (run / LOCK_FILE).exists()
