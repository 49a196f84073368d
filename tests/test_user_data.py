"""A user's files are safe whatever the bundle: identifiers never become paths, leftovers of killed jobs are removed
and nothing else, written files get the umask's permissions, a full disk leaves the last checkpoint, settings and
tracking stores are checked before work; every failure one line."""

from __future__ import annotations

import errno
import os
import stat
import time

import pytest
import torch
from bundle_cases import user_error

from gan_core.config import check_settings
from gan_core.fileio import (
    acquire_lock,
    atomic_path,
    atomic_torch_save,
    release_lock,
    remove_leftovers,
)
from gan_core.io.names import safe_name


@pytest.mark.parametrize("identifier", ["../../escaped", "..", ".", "a/b\\c", "x\x00y", "R01-001 ", "é" * 200, ""])
def test_safe_name_never_gives_a_path(identifier):
    name = safe_name(identifier)
    assert name and "/" not in name and "\\" not in name and ".." not in name and not name.startswith((".", "-"))
    assert name.isprintable() and len(name) <= 64
    assert safe_name("R01-001") == "R01-001"
    assert safe_name("a/b") != safe_name("a_b")  # a changed name carries a hash of the original


def test_the_joint_warp_settings_are_checked_by_their_rules():
    check_settings({"warp_prob": 1.0, "warp_magnitude": 0.05, "warp_smoothness": 0.125})
    for key, bad in (("warp_prob", 1.5), ("warp_magnitude", 1.0), ("warp_smoothness", 0.0), ("warp_prob", True)):
        error = user_error(check_settings, {key: bad})
        assert error.field == key and repr(bad) in str(error)


def test_every_config_checks_only_settings_it_has_rules_for():
    with pytest.raises(ValueError, match="no rule"):
        check_settings({"surprise": 1})


def test_leftovers_of_killed_jobs_are_removed_and_nothing_else(tmp_path):
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    torn = out / "checkpoints" / ".checkpoint_latest.pt.ab12cd_9.tmp.pt"
    torn.write_bytes(b"half")
    work = out / ".inference.partial-123-abcdef12"
    work.mkdir()
    sibling = tmp_path / ".out.old-123-abcdef12"
    sibling.mkdir()
    keep = [out / "checkpoints" / "checkpoint_latest.pt", out / ".hidden_by_user", out / "notes.tmp.txt"]
    for path in keep:
        path.write_text("keep")
    acquire_lock(out)
    try:
        removed = remove_leftovers(out)
    finally:
        release_lock(out)
    assert set(removed) == {torn, work, sibling}
    assert all(p.exists() for p in keep) and not torn.exists() and not work.exists() and not sibling.exists()


def test_written_files_get_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.json") as tmp:
            tmp.write_text("{}")
        atomic_torch_save({"x": torch.zeros(1)}, tmp_path / "b.pt")
    finally:
        os.umask(old)
    for name in ("a.json", "b.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644


def test_a_full_disk_is_one_error_line_and_leaves_the_last_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint_latest.pt"
    atomic_torch_save({"iteration": 1}, target)
    before = target.read_bytes()

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(torch, "save", full_disk)
    error = user_error(atomic_torch_save, {"iteration": 2}, target)
    assert "no space left" in str(error) and str(target) in str(error)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_an_unreachable_or_unwritable_tracking_store_is_refused_within_seconds(tmp_path):
    from gan_core.engines.tracking import check_tracking_store

    start = time.monotonic()
    error = user_error(check_tracking_store, "http://127.0.0.1:9")
    assert error.field == "tracking_uri" and time.monotonic() - start < 10
    assert "file store" in str(user_error(check_tracking_store, str(tmp_path / "mlruns")))
    check_tracking_store(f"sqlite:///{tmp_path}/new/mlruns.db")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    try:
        if not os.access(readonly, os.W_OK):  # root writes anywhere: the check cannot be shown as root
            user_error(check_tracking_store, f"sqlite:///{readonly}/mlruns.db")
    finally:
        readonly.chmod(0o700)
