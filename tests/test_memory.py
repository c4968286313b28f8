"""The host memory figure behind the real-run pre-check (lazyspec.memory): the smaller of
MemAvailable and the room under the process's cgroup limit, read from a fake /proc and /sys tree.

Inside a container or a CI runner limited to a few GB, MemAvailable shows the whole machine; a run
sized by it would be killed by the kernel (exit 137, no message) instead of refused with LS306.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lazyspec import memory
from lazyspec.cli import main

GIB, MIB = 2**30, 2**20
V2_MOUNT = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n"
V1_MOUNT = "35 31 0:32 {root} /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
OTHER_MOUNTS = ("22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
                "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n")


def fake_root(tmp_path: Path, *, mem_available: int | None = 64 * GIB, cgroup: str = "",
              mountinfo: str | None = OTHER_MOUNTS, files: dict[str, str] | None = None) -> Path:
    """A folder holding proc/meminfo, proc/self/cgroup, proc/self/mountinfo and cgroup files."""
    root = tmp_path / "root"
    (root / "proc/self").mkdir(parents=True)
    if mem_available is not None:
        (root / "proc/meminfo").write_text(f"MemTotal:       99999999 kB\nMemAvailable:   "
                                           f"{mem_available // 1024} kB\n", encoding="ascii")
    (root / "proc/self/cgroup").write_text(cgroup, encoding="ascii")
    if mountinfo is not None:
        (root / "proc/self/mountinfo").write_text(mountinfo, encoding="ascii")
    for path, text in (files or {}).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="ascii")
    return root


def v2(tmp_path: Path, path: str, **levels: tuple[str, int, int]) -> Path:
    """A cgroup v2 tree: the process in `path`; levels: folder -> (memory.max, current, cache)."""
    files = {}
    for folder, (limit, current, cache) in levels.items():
        base = "sys/fs/cgroup/" + folder.replace("__", "/")
        files[f"{base}/memory.max"] = f"{limit}\n"
        files[f"{base}/memory.current"] = f"{current}\n"
        files[f"{base}/memory.stat"] = f"anon 1\nfile 5\ninactive_file {cache}\n"
    return fake_root(tmp_path, cgroup=f"0::{path}\n", mountinfo=OTHER_MOUNTS + V2_MOUNT,
                     files=files)


def test_v2_limit_wins_over_mem_available(tmp_path: Path) -> None:
    root = v2(tmp_path, "/ci/job", ci__job=(str(2 * GIB), 512 * MIB, 0))
    figures = memory.memory_figures(root)
    assert figures.mem_available == 64 * GIB
    assert [c.limit for c in figures.cgroups] == [2 * GIB]
    assert memory.available_memory(root) == 2 * GIB - 512 * MIB


def test_v2_page_cache_the_kernel_can_drop_is_room(tmp_path: Path) -> None:
    root = v2(tmp_path, "/ci/job", ci__job=(str(2 * GIB), 1 * GIB, 256 * MIB))
    assert memory.available_memory(root) == 2 * GIB - 1 * GIB + 256 * MIB


def test_v2_max_means_no_limit(tmp_path: Path) -> None:
    root = v2(tmp_path, "/ci/job", ci__job=("max", 512 * MIB, 0))
    assert memory.memory_figures(root).cgroups == ()
    assert memory.available_memory(root) == 64 * GIB


def test_v2_a_parent_limit_counts_too(tmp_path: Path) -> None:
    root = v2(tmp_path, "/ci/job", ci__job=("max", 100 * MIB, 0),
              ci=(str(1 * GIB), 900 * MIB, 0))
    assert memory.available_memory(root) == 124 * MIB


def test_v2_in_a_cgroup_namespace_reads_the_mount_point(tmp_path: Path) -> None:
    # In a container with its own cgroup namespace, /proc/self/cgroup says `0::/`.
    root = v2(tmp_path, "/", **{"": (str(3 * GIB), 1 * GIB, 0)})
    assert memory.available_memory(root) == 2 * GIB


def test_mem_available_wins_when_it_is_smaller(tmp_path: Path) -> None:
    root = v2(tmp_path, "/ci/job", ci__job=(str(8 * GIB), 0, 0))
    (root / "proc/meminfo").write_text("MemAvailable:   1048576 kB\n", encoding="ascii")
    assert memory.available_memory(root) == 1 * GIB


def v1(tmp_path: Path, path: str, mount_root: str, folder: str, limit: int,
       usage: int, cache: int = 0) -> Path:
    base = "sys/fs/cgroup/memory/" + folder
    files = {f"{base}/memory.limit_in_bytes": f"{limit}\n",
             f"{base}/memory.usage_in_bytes": f"{usage}\n",
             f"{base}/memory.stat": f"cache 1\ntotal_inactive_file {cache}\n"}
    return fake_root(tmp_path, cgroup=f"5:devices:/\n4:memory:{path}\n0::/\n",
                     mountinfo=OTHER_MOUNTS + V1_MOUNT.format(root=mount_root), files=files)


def test_v1_limit(tmp_path: Path) -> None:
    root = v1(tmp_path, "/runner/job", "/", "runner/job", 4 * GIB, 1 * GIB, 512 * MIB)
    assert memory.available_memory(root) == 3 * GIB + 512 * MIB


def test_v1_sentinel_means_no_limit(tmp_path: Path) -> None:
    root = v1(tmp_path, "/runner/job", "/", "runner/job", 9223372036854771712, 1 * GIB)
    assert memory.memory_figures(root).cgroups == ()
    assert memory.available_memory(root) == 64 * GIB


def test_v1_mounted_at_the_containers_own_cgroup(tmp_path: Path) -> None:
    # Docker without a cgroup namespace: the path names the host's cgroup, and the mount shows
    # that same cgroup as its root.
    root = v1(tmp_path, "/docker/abc", "/docker/abc", "", 3 * GIB, 1 * GIB)
    assert memory.available_memory(root) == 2 * GIB


def test_without_mountinfo_the_usual_mount_points_are_read(tmp_path: Path) -> None:
    root = fake_root(tmp_path, cgroup="0::/\n", mountinfo=None,
                     files={"sys/fs/cgroup/memory.max": f"{GIB}\n",
                            "sys/fs/cgroup/memory.current": "0\n"})
    assert memory.available_memory(root) == GIB


def test_nothing_readable_is_none(tmp_path: Path) -> None:
    root = fake_root(tmp_path, mem_available=None, mountinfo=None)
    assert memory.available_memory(root) is None


def test_unreadable_values_are_no_limit(tmp_path: Path) -> None:
    root = v2(tmp_path, "/ci/job", ci__job=("lots", 0, 0))
    assert memory.available_memory(root) == 64 * GIB


def test_the_real_run_pre_check_sees_the_cgroup_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """`--device cpu` on a runner limited to 64 MiB, on a machine with 64 GiB free: refused with
    LS306 (exit 2) instead of started (and, with a larger input, killed by the kernel)."""
    root = v2(tmp_path, "/ci/job", ci__job=(str(64 * MIB), 0, 0))
    monkeypatch.setattr(memory, "ROOT", root)
    spec = tmp_path / "m.yaml"
    spec.write_text("layers:\n  - LazyLinear(256)\n  - ReLU\n  - LazyLinear(10)\n",
                    encoding="utf-8")
    with pytest.raises(SystemExit) as info:  # ~200 MiB of activations and inputs
        main(["infer", str(spec), "--device", "cpu", "--input", "100000,20"])
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "error[LS306]" in err and "but 64.0 MiB is free" in err, err
