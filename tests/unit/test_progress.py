"""Progress records written by a kernel's helpers and shown by the runner, live or as plain lines."""

from __future__ import annotations

import io
import json

from stfpm_lib.runner.notebook_steps import epoch_logger, figures_progress
from stfpm_lib.runner.progress import PROGRESS_ENV, ProgressMonitor, describe, read_progress, report_progress


def test_describe_reads_like_a_status_line():
    assert describe("bottle", {"step": "02_train", "epoch": 5, "epochs": 20, "loss": 0.0123456, "eta_s": 3725}) == \
        "bottle 02_train: epoch 5/20, loss 0.01235, ETA 1:02:05"
    assert describe("(run)", {"step": "05_figures", "done": 40, "total": 130}) == "(run) 05_figures: 40/130 figures"
    assert describe("bottle", {"step": "03_evaluate"}) == "bottle 03_evaluate: running"
    assert describe("bottle", None) == "bottle: starting"


def test_nothing_is_written_outside_the_runner(tmp_path, monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    report_progress(step="02_train", epoch=1)
    assert list(tmp_path.iterdir()) == []


def test_the_training_and_figure_helpers_report_epoch_loss_eta_and_counts(tmp_path, monkeypatch):
    path = tmp_path / ".progress.json"
    monkeypatch.setenv(PROGRESS_ENV, str(path))
    log = epoch_logger("bottle", 4, printer=lambda line: None)
    for epoch, seconds in ((1, 2.0), (2, 4.0)):
        log({"epoch": epoch, "train_loss": 0.5 / epoch, "val_loss": 0.1, "val_map": 0.2, "epoch_time_s": seconds})
    record = read_progress(path)
    assert {k: record[k] for k in ("step", "epoch", "epochs", "loss", "eta_s")} == \
        {"step": "02_train", "epoch": 2, "epochs": 4, "loss": 0.25, "eta_s": 6.0}  # mean 3 s x 2 epochs left
    figures_progress(7, 20)
    assert {k: read_progress(path)[k] for k in ("step", "done", "total")} == {"step": "05_figures", "done": 7, "total": 20}


def _write(path, **fields):
    path.write_text(json.dumps({**fields, "time": 4e9}))  # a time after the monitor started


def test_plain_lines_at_each_step_and_quarter_only(tmp_path):
    path, out = tmp_path / ".progress.json", io.StringIO()
    monitor = ProgressMonitor([("bottle", path)], stream=out, live=False)
    with monitor:
        for fields in ({"step": "02_train"}, *({"step": "02_train", "epoch": k, "epochs": 8, "loss": 1.0 / k}
                                                for k in range(1, 9)), {"step": "03_evaluate"}):
            _write(path, **fields)
            monitor.poll()
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "bottle 02_train: running", "bottle 02_train: epoch 1/8", "bottle 02_train: epoch 2/8",
        "bottle 02_train: epoch 4/8", "bottle 02_train: epoch 6/8", "bottle 02_train: epoch 8/8",
        "bottle 03_evaluate: running"]
    assert "\r" not in out.getvalue()


def test_live_lines_on_a_terminal_and_none_when_disabled(tmp_path):
    path, out = tmp_path / ".progress.json", io.StringIO()
    with ProgressMonitor([("bottle", path)], stream=out, live=True) as monitor:
        _write(path, step="02_train", epoch=3, epochs=10, loss=0.5, eta_s=70)
        monitor.poll()
        assert "bottle 02_train: epoch 3/10, loss 0.5, ETA 1:10" in out.getvalue()
    silent = io.StringIO()
    with ProgressMonitor([("bottle", path)], stream=silent, enabled=False) as monitor:
        _write(path, step="02_train", epoch=4, epochs=10)
        monitor.poll()
    assert silent.getvalue() == ""
