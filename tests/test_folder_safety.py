"""The checkpoint folder kept safe: rotation that counts only usable files, Drive's trash, the run's
lock, the sweep of temporaries, a damaged best pair found at resume, a folder that cannot be
written, and errors that name the file the user asked for."""

import errno
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import readonly_fs
import torch

import helpers.checkpoints.lock as lock
import helpers.fileio as fileio
from conftest import TINY, tiny_full_ckpt
from helpers.checkpoints.format import to_deployment
from helpers.checkpoints.lock import LOCK_NAME, FolderLock, LockError, hold_folder
from helpers.checkpoints.policy import BEST, BEST_FULL, PeriodicFiles, periodic_checkpoints, periodic_path, save_best
from helpers.checkpoints.resume import check_best
from helpers.checkpoints.storage import load_checkpoint, save_checkpoint
from helpers.errors import OutputError
from helpers.fileio import (
    HOST,
    atomic_torch_save,
    atomic_write_bytes,
    check_writable,
    finish_replacements,
    remove_stale_temporaries,
    write_folder,
)
from helpers.model import GPTConfig


def steps_in(folder):
    return [s for s, _ in periodic_checkpoints(folder)]


def truncated(path):
    save_checkpoint(tiny_full_ckpt(step=999), path)
    path.write_bytes(path.read_bytes()[:1000])  # a damaged file, or a half-synced Drive copy
    return path


def test_rotation_counts_only_files_it_can_resume_from(tmp_path, capsys):
    """Once, an unloadable model_step_999.pt made keep_last=1 delete every new file right after writing it."""
    bad = truncated(tmp_path / "model_step_999.pt")
    other = save_checkpoint(
        tiny_full_ckpt(step=3, model_config=GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=32)),
        tmp_path / "model_step_3.pt",
    )
    periodic = PeriodicFiles(tmp_path, keep_last=1, expected=TINY)
    for step in (5, 10):
        path, deleted = periodic.save(tiny_full_ckpt(step=step))
        assert path.exists()  # the file just written stays
    assert deleted == [tmp_path / "model_step_5.pt"]
    assert steps_in(tmp_path) == [3, 10, 999]  # the two unusable files are left to the user
    reports = capsys.readouterr().out.splitlines()
    assert len(reports) == 2  # each reported once, not at every save
    assert any(str(bad) in r and "truncated" in r for r in reports)
    assert any(str(other) in r and "different model size" in r for r in reports)
    # keep_last=2: two files it can resume from, not one and an unusable one
    periodic.keep_last = 2
    for step in (15, 20):
        periodic.save(tiny_full_ckpt(step=step))
    assert steps_in(tmp_path) == [3, 15, 20, 999]
    assert capsys.readouterr().out == ""


def test_rotation_leaves_files_of_later_steps_alone(tmp_path):
    """A usable file ahead of this run (a longer run's, or one after the file it resumed from) is not its to delete."""
    save_checkpoint(tiny_full_ckpt(step=50), tmp_path / "model_step_50.pt")
    periodic = PeriodicFiles(tmp_path, keep_last=2, expected=TINY)
    for step in (5, 10, 15):
        periodic.save(tiny_full_ckpt(step=step))
    assert steps_in(tmp_path) == [10, 15, 50]


class Trash:
    """Google Drive's trash, as the mount fills it: every file deleted, or replaced by a rename, with its size then."""

    def __init__(self, monkeypatch, drive_root):
        self.root, self.sizes = str(drive_root), []
        real_unlink, real_replace = os.unlink, os.replace

        def unlink(path, *args, **kwargs):
            self._record(path)
            return real_unlink(path, *args, **kwargs)

        def replace(src, dst, *args, **kwargs):
            self._record(dst)
            return real_replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "unlink", unlink)
        monkeypatch.setattr(os, "replace", replace)

    def _record(self, path):
        path = os.path.realpath(path)
        if path.startswith(self.root) and os.path.isfile(path):
            self.sizes.append((os.path.basename(path), os.path.getsize(path)))


@pytest.fixture
def drive_folder(fake_colab, tmp_path):
    """A checkpoint folder on the stand-in Drive, mounted at tmp_path/content/drive."""
    mount = tmp_path / "content" / "drive"
    fake_colab.drive.mount(str(mount))
    folder = mount / "MyDrive" / "gpt2" / "checkpoints" / "ci-2m"
    folder.mkdir(parents=True)
    return folder


def test_drive_rotation_and_the_best_pair_put_no_full_copy_in_the_trash(drive_folder, tmp_path, monkeypatch):
    trash = Trash(monkeypatch, tmp_path / "cloud")
    periodic = PeriodicFiles(drive_folder, keep_last=2, expected=TINY)
    for step in (5, 10, 15, 20):
        save_best(drive_folder, tiny_full_ckpt(step=step))
        periodic.save(tiny_full_ckpt(step=step))
    assert steps_in(drive_folder) == [15, 20]
    assert (
        load_checkpoint(drive_folder / BEST_FULL)["step"] == 20 and load_checkpoint(drive_folder / BEST)["step"] == 20
    )
    deleted = [name for name, _ in trash.sizes]
    assert "model_step_5.pt" in deleted and "model_step_10.pt" in deleted and deleted.count(BEST_FULL) == 3
    assert [size for _, size in trash.sizes] == [0] * len(trash.sizes)  # all of them emptied first
    assert not [p for p in drive_folder.iterdir() if p.name.startswith(".")]
    # the same writes off Drive trash nothing, and replace with a plain rename
    local = tmp_path / "local"
    save_best(local, tiny_full_ckpt(step=1))
    save_best(local, tiny_full_ckpt(step=2))
    assert trash.sizes == [(n, 0) for n in deleted] and load_checkpoint(local / BEST_FULL)["step"] == 2


class Crash(BaseException):
    """The runtime going away at this instant."""


@pytest.mark.parametrize("crash_at", ["rename to staged", "truncate", "rename over"])
def test_drive_replacement_leaves_old_or_new_at_every_moment(drive_folder, monkeypatch, crash_at):
    target = atomic_write_bytes(drive_folder / "model_best.pt", b"old" * 1000)
    real = {"replace": os.replace, "truncate": os.truncate}
    calls = {"replace": 0}

    def replace(src, dst):
        calls["replace"] += 1
        if (crash_at == "rename to staged" and calls["replace"] == 1) or (
            crash_at == "rename over" and ".new-" in str(src)
        ):
            raise Crash
        return real["replace"](src, dst)

    def truncate(path, length):
        if crash_at == "truncate" and str(path) == str(target):
            real["truncate"](path, length)
            raise Crash  # just after emptying the old file
        return real["truncate"](path, length)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "truncate", truncate)
    with pytest.raises(Crash):
        atomic_write_bytes(target, b"new" * 1000)
    monkeypatch.undo()
    content = target.read_bytes()
    assert content in (b"old" * 1000, b"new" * 1000, b"")
    repaired = finish_replacements(drive_folder)  # what the next start does first
    remove_stale_temporaries(drive_folder)
    assert target.read_bytes() == (b"old" * 1000 if crash_at == "rename to staged" else b"new" * 1000)
    assert repaired == ([] if crash_at == "rename to staged" else [target])
    assert [p.name for p in drive_folder.iterdir()] == ["model_best.pt"]


def lock_record(folder, host, pid, age_s):
    now = time.time()
    record = {"host": host, "pid": pid, "started": now - age_s - 60, "heartbeat": now - age_s, "id": "0123456789abcdef"}
    atomic_write_bytes(folder / LOCK_NAME, lock.json.dumps(record).encode())


def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_second_run_on_a_held_folder_refuses_in_one_line(tmp_path, monkeypatch, capsys):
    held = hold_folder(tmp_path)
    assert hold_folder(tmp_path) is held  # the notebook run again in its kernel keeps its lock
    with pytest.raises(LockError) as info:  # another process on this machine: the fcntl lock says no
        FolderLock(tmp_path.absolute()).acquire()
    message = str(info.value)
    assert message.startswith(f"{tmp_path.absolute()}: in use by another run (process {os.getpid()} on host {HOST}")
    assert "choose another checkpoint_dir" in message and "\n" not in message
    held.release()
    assert not (tmp_path / LOCK_NAME).exists()
    # another machine (a second Colab runtime on the same Drive) whose heartbeat goes on while this run watches
    monkeypatch.setattr(lock, "POLL_S", 0.01)
    lock_record(tmp_path, "other-runtime", 4242, age_s=20)
    beat = threading.Timer(0.2, lock_record, (tmp_path, "other-runtime", 4242, 0))
    beat.start()
    capsys.readouterr()
    with pytest.raises(LockError) as info:
        hold_folder(tmp_path)
    beat.join()
    reports = capsys.readouterr().out.splitlines()
    assert reports[0].startswith(f"{tmp_path.absolute()} is held by process 4242 on host other-runtime, started")
    assert "last heartbeat 20 s ago: waiting until" in reports[0]
    message = str(info.value)
    assert message.startswith(f"{tmp_path.absolute()}: in use by another run (process 4242 on host other-runtime")
    assert "whose heartbeat goes on" in message and "Disconnect and delete runtime" in message and "\n" not in message


@pytest.mark.parametrize(
    "host,age_s,why",
    [
        (HOST, 5, "its process is gone"),  # a crashed run of this machine
        ("reset-runtime", 600, "no heartbeat for 10 min"),  # another machine's, long silent
        ("reset-runtime", lock.STALE_AFTER_S - 0.3, "no heartbeat for 3 min"),  # silent while this run watched it
    ],
)
def test_a_stale_lock_is_taken_over_loudly(tmp_path, monkeypatch, capsys, host, age_s, why):
    monkeypatch.setattr(lock, "POLL_S", 0.01)
    lock_record(tmp_path, host, dead_pid(), age_s)
    held = hold_folder(tmp_path)
    reports = capsys.readouterr().out.splitlines()
    assert reports[-1].startswith(f"TAKING OVER the lock of {tmp_path.absolute()} from process")
    assert reports[-1].endswith(why) and len(reports) == (2 if age_s < lock.STALE_AFTER_S and host != HOST else 1)
    assert lock._read(tmp_path / LOCK_NAME)["pid"] == os.getpid()
    held.release()


def test_a_heartbeat_from_the_future_is_taken_as_now(tmp_path, monkeypatch, capsys):
    """A heartbeat an hour ahead (another runtime's clock, an edited file) once meant waiting an hour and more."""
    monkeypatch.setattr(lock, "POLL_S", 0.01)
    monkeypatch.setattr(lock, "STALE_AFTER_S", 0.5)
    lock_record(tmp_path, "clock-ahead", 4242, age_s=-3600)
    taken = []
    worker = threading.Thread(target=lambda: taken.append(hold_folder(tmp_path)), daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(timeout=30)
    assert taken, "still waiting for a heartbeat an hour in the future"
    assert time.monotonic() - started >= 0.5  # one grace period, watching whether that run beats
    said = capsys.readouterr().out.splitlines()
    assert "last heartbeat 3600 s in the future" in said[0] and "waiting until" in said[0]
    assert said[-1].startswith(f"TAKING OVER the lock of {tmp_path.absolute()} from process 4242 on host clock-ahead")
    assert said[-1].endswith("(its heartbeat was 3600 s in the future, taken as now)")
    taken[0].release()


def test_a_lock_file_that_is_a_folder_or_unreadable_is_one_line(tmp_path, monkeypatch):
    (tmp_path / LOCK_NAME).mkdir()
    with pytest.raises(LockError) as info:
        hold_folder(tmp_path)
    assert str(info.value) == (
        f"{tmp_path.absolute() / LOCK_NAME}: is a folder, not a lock file; move it out of the checkpoint folder, "
        "then run again"
    )
    (tmp_path / LOCK_NAME).rmdir()
    lock_record(tmp_path, "other-runtime", 4242, age_s=0)
    real = Path.read_bytes
    monkeypatch.setattr(
        Path,
        "read_bytes",
        lambda p: (
            (_ for _ in ()).throw(PermissionError(errno.EACCES, "Permission denied"))
            if p.name == LOCK_NAME
            else real(p)
        ),
    )
    with pytest.raises(LockError) as info:
        hold_folder(tmp_path)
    assert str(info.value) == (
        f"{tmp_path.absolute() / LOCK_NAME}: cannot be read (Permission denied); if no other run uses this "
        "folder, delete it, then run again"
    )
    assert (tmp_path / LOCK_NAME).exists()  # nothing taken over, nothing deleted


def test_a_run_whose_lock_was_taken_over_stops_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "HEARTBEAT_S", 3600)  # the test beats by hand: no race with the thread's beat
    held = hold_folder(tmp_path)
    periodic = PeriodicFiles(tmp_path, keep_last=2, expected=TINY)
    periodic.save(tiny_full_ckpt(step=1))
    lock_record(tmp_path, "other-runtime", 4242, age_s=0)  # it decided this run's heartbeat was stale
    assert held.beat() is False
    with pytest.raises(LockError, match="this run's lock was taken over by process 4242 on host other-runtime"):
        periodic.save(tiny_full_ckpt(step=2))
    assert steps_in(tmp_path) == [1]
    held.release()
    assert (tmp_path / LOCK_NAME).exists()  # the other run's lock, left alone


def test_the_sweep_removes_only_temporaries_of_no_living_run(tmp_path):
    living = subprocess.Popen(["sleep", "60"])
    try:
        names = {
            f".model_step_5.pt.tmp-{HOST}-{living.pid}-abc123": True,  # a living process of this machine: kept
            f".model_step_5.pt.tmp-{HOST}-{dead_pid()}-abc123": False,  # of a process gone
            ".model_step_5.pt.tmp-otherhost-77-abc123": False,  # of another machine (this run holds the lock)
            ".model_step_5.pt.tmp-k2j4h5": False,  # of an older version, who knows whose
            f".model_step_5.pt.tmp-{HOST}-{os.getpid()}-abc123": False,  # this process's, from an earlier cell run
        }
        for name in names:
            (tmp_path / name).write_bytes(b"x")
        removed = remove_stale_temporaries(tmp_path)
        assert sorted(p.name for p in removed) == sorted(n for n, kept in names.items() if not kept)
        assert [p.name for p in tmp_path.iterdir()] == [n for n, kept in names.items() if kept]
    finally:
        living.kill()
        living.wait()


def best_folder(tmp_path, steps=(2, 4, 6), best_step=4):
    """Periodic files of steps, the best at best_step, as a run leaves them; the resume file (the last) and its dict."""
    for step in steps:
        ckpt = tiny_full_ckpt(
            step=step, seed=step, best_step=best_step, best_val_loss=1.5, val_loss=1.5 if step == best_step else 2.0
        )
        save_checkpoint(ckpt, periodic_path(tmp_path, step))
    save_best(
        tmp_path, tiny_full_ckpt(step=best_step, seed=best_step, best_step=best_step, best_val_loss=1.5, val_loss=1.5)
    )
    truncated(tmp_path / BEST_FULL)  # damaged after the crash
    resume = periodic_path(tmp_path, steps[-1])
    return resume, load_checkpoint(resume, mmap=False)


def test_a_damaged_best_pair_is_found_at_resume_and_a_way_out_taken(tmp_path, capsys):
    reports = []

    def said() -> None:
        reports.extend(capsys.readouterr().out.splitlines())

    # 1. the periodic file of the best step is there: the pair is rewritten from it now
    resume, ckpt = best_folder(tmp_path / "a")
    assert check_best(tmp_path / "a", resume, ckpt, TINY) == (resume, ckpt)
    said()
    assert (
        "model_best_full.pt: not a torch checkpoint, or truncated" in reports[-1]
        and "rewriting the best pair from model_step_4.pt" in reports[-1]
    )
    rebuilt, exact = load_checkpoint(tmp_path / "a" / BEST_FULL), load_checkpoint(periodic_path(tmp_path / "a", 4))
    assert all(torch.equal(rebuilt["model_state_dict"][k], v) for k, v in exact["model_state_dict"].items())
    # 2. only a file before the best step: resume from there and train the best step again
    resume, ckpt = best_folder(tmp_path / "b", steps=(2, 6))
    path, earlier = check_best(tmp_path / "b", resume, ckpt, TINY)
    said()
    assert path == periodic_path(tmp_path / "b", 2) and earlier["step"] == 2
    assert "RESUMING FROM model_step_2.pt (step 2) INSTEAD of step 6" in reports[-1]
    # 3. nothing before it: model_best.pt's weights with the resume file's training state, said loudly
    resume, ckpt = best_folder(tmp_path / "c", steps=(6,))
    assert check_best(tmp_path / "c", resume, ckpt, TINY) == (resume, ckpt)
    said()
    assert "THE FINAL PAIR WILL HOLD THE WEIGHTS OF STEP 4 (MODEL_BEST.PT), TRAINING STATE OF STEP 6" in reports[-1]
    rebuilt, weights = load_checkpoint(tmp_path / "c" / BEST_FULL), load_checkpoint(tmp_path / "c" / BEST)
    assert rebuilt["step"] == 4 and "training state of step 6" in rebuilt["best_state_note"]
    assert all(torch.equal(rebuilt["model_state_dict"][k], v) for k, v in weights["model_state_dict"].items())
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            rebuilt["optimizer_state_dict"]["state"][0].values(), ckpt["optimizer_state_dict"]["state"][0].values()
        )
    )
    # 4. model_best.pt damaged too: the best is lost, and the run says so rather than failing at the end
    resume, ckpt = best_folder(tmp_path / "d", steps=(6,))
    truncated(tmp_path / "d" / BEST)
    path, forgot = check_best(tmp_path / "d", resume, ckpt, TINY)
    said()
    assert path == resume and forgot["best_step"] is None and forgot["best_val_loss"] == float("inf")
    assert "THE BEST STATE (STEP 4) IS LOST" in reports[-1]
    assert len(reports) == 4 and all("\n" not in r for r in reports)
    # an intact pair: nothing said, nothing written
    resume, ckpt = best_folder(tmp_path / "e")
    save_best(tmp_path / "e", load_checkpoint(periodic_path(tmp_path / "e", 4), mmap=False))
    before = (tmp_path / "e" / BEST_FULL).stat().st_mtime_ns
    assert check_best(tmp_path / "e", resume, ckpt, TINY) == (resume, ckpt)
    said()
    assert len(reports) == 4 and (tmp_path / "e" / BEST_FULL).stat().st_mtime_ns == before
    # nor is a best newer than the resume file (a crash between the best pair and the periodic
    # file): training passes that step again
    save_best(tmp_path / "e", tiny_full_ckpt(step=8))
    assert check_best(tmp_path / "e", resume, ckpt, TINY) == (resume, ckpt)
    said()
    assert len(reports) == 4


def test_a_folder_that_cannot_be_made_or_written(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OutputError) as info:
        check_writable(tmp_path / "a-file" / "checkpoints")
    assert str(info.value).startswith(f"{tmp_path / 'a-file' / 'checkpoints'}: cannot be created (Not a directory)")
    folder = tmp_path / "ro"
    folder.mkdir()
    undo = readonly_fs.install(folder)
    try:
        assert check_writable(folder) == "Read-only file system"
    finally:
        undo()
    assert check_writable(folder) is None and list(folder.iterdir()) == []  # the test file is gone again


def test_errors_name_the_target_not_its_temporary(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    undo = readonly_fs.install(folder)
    try:
        with pytest.raises(OSError) as info:
            atomic_torch_save({"x": 1}, folder / "model_final.pt")
        assert info.value.errno == errno.EROFS and info.value.filename == str(folder / "model_final.pt")
        with pytest.raises(OSError) as info:
            write_folder(folder / "hf", lambda tmp: (tmp / "config.json").write_text("{}"))
        assert info.value.filename == str(folder / "hf")
    finally:
        undo()


def test_an_interrupt_inside_torch_save_stays_an_interrupt(tmp_path):
    """Ctrl-C inside torch.save came out as `RuntimeError: ... unexpected pos`, which nothing recovers as Ctrl-C."""
    target = save_checkpoint(to_deployment(tiny_full_ckpt()), tmp_path / "model_final.pt")
    before = target.read_bytes()

    class Interrupted:
        def __init__(self, f):
            self.f, self.writes = f, 0

        def write(self, data):
            self.writes += 1
            if self.writes == 3:
                raise KeyboardInterrupt  # as the SIGINT handler raises it, mid-write
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

    with pytest.raises(KeyboardInterrupt):
        fileio.atomic_write(target, lambda f: torch.save(tiny_full_ckpt(step=2), Interrupted(f)))
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model_final.pt"]
