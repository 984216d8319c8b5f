"""What /proc tells about processes and the machine: peak memory, children, CPU used by others."""

from __future__ import annotations

import os
from pathlib import Path


def vm_kib(pid: int | str, field: str = "VmHWM") -> int:
    """A `Vm*` line of /proc/PID/status in KiB (VmHWM: peak resident set); 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak(pid: int | str) -> bool:
    """Start VmHWM again from the current resident set (`5` to /proc/PID/clear_refs, Linux >= 4.0),
    so that the next `vm_kib(pid)` is the peak of what came after; False if the kernel refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def tree_size(root: Path, skip_suffixes: tuple[str, ...] = (), only_suffixes: tuple[str, ...] = ()) -> int:
    """Bytes of the files under `root` (what a worker keeps on disk), some suffixes left out (or only
    some counted). Safe on a live worker's directory: what RocksDB removes meanwhile counts 0."""
    total = 0
    for folder, _, names in os.walk(root):  # os.walk skips a folder that vanished
        for name in names:
            if name.endswith(skip_suffixes) or (only_suffixes and not name.endswith(only_suffixes)):
                continue
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total


def children(pid: int | str = "self") -> list[int]:
    """Direct children of a process (from /proc/PID/task/*/children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def child_running(binary: str) -> int | None:
    """The pid of this process's child running `binary`, if any (the embedded broker)."""
    target = os.path.realpath(binary)
    for pid in children():
        try:
            if os.path.realpath(f"/proc/{pid}/exe") == target:
                return pid
        except OSError:
            continue
    return None


def busy_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user
    return total - idle, total


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have ended (workers are waited for)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def live_children_cpu_seconds() -> float:
    """CPU seconds of this process's children still running (the broker), from /proc/PID/stat."""
    hz = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in children():
        try:
            parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(parts[11]) + int(parts[12])) / hz  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total
