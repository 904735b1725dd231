"""Atomic writes (stfpm_lib.io): failed writes said in words, write probes, stale temporary files."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time

import pytest
import torch

from stfpm_lib import io
from stfpm_lib.io import (
    OutputError,
    atomic_save,
    atomic_write_text,
    check_writable,
    clean_stale_tmp,
    relative_posix,
    tmp_name,
)


def test_full_disk_is_said_in_words_and_leaves_nothing(tmp_path):
    """torch.save into a file object on a full device (/dev/full answers every write with ENOSPC)."""
    target = tmp_path / "checkpoint.pt"

    def write(tmp):
        with open(tmp, "wb") as handle, open("/dev/full", "wb") as full:
            handle.write(b"partial")
            torch.save({"w": torch.zeros(1000)}, full)

    with pytest.raises(OutputError, match=r"cannot write .*checkpoint.pt: disk full \(no space left on device\)"):
        atomic_save(target, write)
    assert list(tmp_path.iterdir()) == []  # neither the target nor the temporary file


@pytest.mark.parametrize("code, words", [(errno.EROFS, "read-only file system"), (errno.EACCES, "permission denied"),
                                         (errno.EDQUOT, "disk quota exceeded")])
def test_write_errors_name_the_file(tmp_path, code, words):
    def write(tmp):
        raise OSError(code, os.strerror(code))

    with pytest.raises(OutputError, match=f"{tmp_path / 'x.npz'}: {words}"):
        atomic_save(tmp_path / "x.npz", write)


def test_other_errors_pass_through(tmp_path):
    def write(tmp):
        raise FileNotFoundError(errno.ENOENT, "No such file", "/some/input.png")

    with pytest.raises(FileNotFoundError):
        atomic_save(tmp_path / "x.npz", write)


def test_check_writable(tmp_path):
    assert check_writable(tmp_path / "new" / "dir") == tmp_path / "new" / "dir"
    assert list((tmp_path / "new" / "dir").iterdir()) == []  # the probe is gone
    blocker = tmp_path / "file"
    blocker.write_text("x")
    # (tests run as root, where chmod does not stop writes: a file in the way does)
    with pytest.raises(OutputError, match=f"output folder {blocker / 'out'} is not writable: a parent of it is a file"):
        check_writable(blocker / "out")
    with pytest.raises(OutputError, match="a parent of it is a file"):
        atomic_write_text(blocker / "out" / "metrics.json", "{}")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_clean_stale_tmp_removes_only_files_whose_writer_is_gone(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        dead = _dead_pid()
        stale = [tmp_path / f".checkpoint.tmp{dead}.pt", tmp_path / f".02_train.tmp{dead}.ipynb",
                 tmp_path / f".write-probe.tmp{dead}"]
        reused = tmp_path / f".metrics.tmp{os.getpid()}.json"  # our pid, but written before we started
        live = [tmp_path / f".history.tmp{sleeper.pid}.csv",  # another live writer, started before the file
                tmp_name(tmp_path / "predictions_test.npz"),  # ours, now
                tmp_path / "checkpoint.pt", tmp_path / ".lock", tmp_path / f"notes.tmp{dead}.txt"]
        for path in stale + [reused] + live:
            path.write_text("x")
        os.utime(reused, (time.time() - 10 * 86400,) * 2)
        removed = clean_stale_tmp(tmp_path)
        assert sorted(removed) == sorted(stale + [reused])
        assert sorted(tmp_path.iterdir()) == sorted(live)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert clean_stale_tmp(tmp_path / "missing") == []


def test_process_start_time_is_ours():
    started = io._process_start_time(os.getpid())
    assert started is not None and started <= time.time()


def test_relative_posix(tmp_path):
    (tmp_path / "cat" / "good").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "cat")
    inside = tmp_path / "cat" / "good" / "000.png"
    assert relative_posix(inside, tmp_path / "cat") == "good/000.png"
    assert relative_posix(str(tmp_path / "link" / "good" / ".." / "good" / "000.png"), tmp_path / "link") == "good/000.png"
    assert relative_posix(tmp_path / "link" / "good" / "000.png", tmp_path / "cat") == "good/000.png"  # both resolved
    outside = tmp_path / "other" / "x.png"
    assert relative_posix(outside, tmp_path / "cat") == str(outside.resolve())
    assert relative_posix(outside, tmp_path / "cat", default="x.png") == "x.png"
