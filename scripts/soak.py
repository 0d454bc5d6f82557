"""Soak: the exporter under Prometheus, process churn and config reloads for a
while, then what it leaked and whether it counted exactly.

All on loopback. Runs, for MINUTES:
- the exporter with three programs on the fixture target: `hits` (USDT
  fixture:hit by argument, a hash map) and `mod4` (the same probe by argument
  modulo 4, an array map) on every process named uexp-sl-PID (long-lived)
  or uexp-sc-PID (churn), PID being this driver's, so that two soaks on one
  machine never select each other's processes, and `calls` (a uprobe on
  target_add, by argument) on the long-lived ones only;
- Debian's Prometheus scraping it every second;
- churn: RATE short-lived processes a second that `hits` and `mod4` select
  (each lives 0.3 to 1 s and fires fixture:hit three times);
- LONG long-lived targets, driven over stdin every 100 ms at known rates
  (target i fires fixture:hit 5*(i+1) times with argument i and calls
  target_add i+1 times), so the exact expected counts are known;
- a config reload every RELOAD seconds, alternately `POST /-/reload` and
  SIGHUP, changing only `mod4`'s help text: `mod4` is replaced (its counts
  start afresh: exact per reload epoch, checked before each reload) while
  `hits` and `calls` are kept (exact over the whole run, never reset in
  Prometheus).

Churn processes are not given a perf-event uprobe: the kernel frees one
under a global lock, about 88 ms each on the project's VM, so ten such
detaches a second would be more than it can do, whatever the exporter does
(README, "Stopping").

Reports (JSON in OUT/soak.json, markdown in OUT/soak.md, "## Soak"): failed
and missing scrapes from Prometheus' own `up` and `scrape_duration_seconds`;
the exporter's RSS (and its anonymous part), open fds and instances waiting
to be freed (`userspace_exporter_detaching_instances`), sampled every 5 s;
their least-squares slope per hour in each hour of the run; its fds and the
BPF programs, maps, links and BTF objects it holds (its own, by id, not the
host's: other BPF users may come and go) once churn has stopped against the
same before churn began; whether the kernel freed every object it was seen
holding (looked at every WATCH_EVERY s) after it exited; the host-wide counts,
as information; the long-lived targets' counts against what they fired.
Each sample is also appended to OUT/samples.jsonl as it is taken.

Memory is judged by the end of the run, not by its total: the RSS and fd
slopes over the final window (the last hour, or the last quarter of a run
shorter than four hours) must each be at most a limit (RSS_LIMIT MiB and
FD_LIMIT fds an hour) or less than three standard errors (noise). A final
window shorter than half an hour (a run shorter than two hours) is not
judged: the check is reported as such and fails nothing. At no sample may
more instances wait to be freed than the churn detaches in 2 s. `--window`
scales the hour down to check the report on a short run. Exit status 0 when
every check judged passed.

Usage: python3 scripts/soak.py --exporter EXE --target FIXTURE_TARGET
       --usdt-object usdt_counts.bpf.o --uprobe-object uprobe_counts.bpf.o
       [--minutes 30] [--reload-every 60] [--out target/reliability]
       (--help for the rest)
The fixture target's directory must hold libfixture.so (copies are made there).
"""
import argparse
import ctypes
import json
import os
import platform
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

# Names of this run's own (at most 15 bytes: a pid has at most 7 digits).
LONG_COMM = f"uexp-sl-{os.getpid()}"
CHURN_COMM = f"uexp-sc-{os.getpid()}"
TICK = 0.1  # seconds between rounds of commands to the long-lived targets
PROGRAMS = ("hits", "mod4", "calls")
SAMPLE_EVERY = 5.0  # seconds between RSS / fd samples
HOUR = 3600.0
RSS_LIMIT = 0.5  # MiB an hour: the most RSS may grow in the final window
FD_LIMIT = 60.0  # fds an hour: the most open fds may grow in the final window (one a reload)
MIB = 1024 * 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- BPF objects by id: what the exporter holds (as tests/it/kernel_objects.rs) ---
# Counting every BPF object on the host made the leak checks fail whenever
# anything else loaded BPF (systemd's cgroup programs, a security agent, a
# concurrent test or soak). The checks count what the exporter holds: the ids
# in its fd table (the prog_id/map_id/link_id/btf_id lines of
# /proc/PID/fdinfo/*; a link's also names the program it holds), the program
# attached to each of its perf-event fds (no fdinfo line shows it:
# BPF_TASK_FD_QUERY names it), and the maps and BTF its programs use (from
# each program's info). After it exits, every id it was seen holding must be
# gone: the kernel hands out ids cyclically (idr_alloc_cyclic up to INT_MAX),
# so an id still listed is the same object, not a newcomer. Host-wide counts
# are kept as information only.
_libc = ctypes.CDLL(None, use_errno=True)
_SYS_BPF = {"x86_64": 321, "aarch64": 280}[platform.machine()]
KINDS = ("progs", "maps", "links", "btf")
_NEXT_ID = {"progs": 11, "maps": 12, "links": 31, "btf": 23}  # BPF_*_GET_NEXT_ID
_FDINFO = {"prog_id:": "progs", "map_id:": "maps", "link_id:": "links", "btf_id:": "btf"}
_PROG_GET_FD_BY_ID, _OBJ_GET_INFO_BY_FD, _OBJ_GET, _TASK_FD_QUERY = 13, 15, 7, 20
_PROG_INFO_SIZE = 232  # struct bpf_prog_info: nr_map_ids at 52, map_ids at 56, btf_id at 128
WATCH_EVERY = 0.5  # seconds between looks at what the exporter holds


def _bpf(cmd, attr):
    return _libc.syscall(_SYS_BPF, cmd, ctypes.byref(attr), ctypes.sizeof(attr))


def host_objects():
    """Every BPF object on the host: {kind: set of ids}."""
    out = {}
    for kind, cmd in _NEXT_ID.items():
        ids, start = set(), 0
        while True:
            attr = (ctypes.c_uint32 * 3)(start, 0, 0)  # start_id, next_id, open_flags
            if _bpf(cmd, attr) != 0:
                break
            start = attr[1]
            ids.add(start)
        out[kind] = ids
    return out


def counts(objects):
    """{kind: how many}, from {kind: ids}."""
    return {kind: len(objects[kind]) for kind in KINDS}


def host_counts():
    """Host-wide counts: information only, never a pass/fail criterion."""
    return counts(host_objects())


def _perf_event_program(pid, fd):
    """The program attached to perf event `fd` of `pid` (BPF_TASK_FD_QUERY), or None."""
    buf = ctypes.create_string_buffer(256)
    attr = (ctypes.c_uint8 * 48)()
    struct.pack_into("IIIIQ", attr, 0, pid, fd, 0, len(buf), ctypes.addressof(buf))
    if _bpf(_TASK_FD_QUERY, attr) != 0:
        return None
    prog = struct.unpack_from("I", attr, 24)[0]
    return prog or None


def _program_uses(prog):
    """The map ids and BTF id (0: none) program `prog` uses; None when it is gone."""
    attr = (ctypes.c_uint32 * 3)(prog, 0, 0)
    fd = _bpf(_PROG_GET_FD_BY_ID, attr)
    if fd < 0:
        return None
    try:
        maps = (ctypes.c_uint32 * 256)()
        info = (ctypes.c_uint8 * _PROG_INFO_SIZE)()
        struct.pack_into("IQ", info, 52, len(maps), ctypes.addressof(maps))
        query = (ctypes.c_uint8 * 16)()
        struct.pack_into("IIQ", query, 0, fd, _PROG_INFO_SIZE, ctypes.addressof(info))
        if _bpf(_OBJ_GET_INFO_BY_FD, query) != 0:
            return None
        n = min(struct.unpack_from("I", info, 52)[0], len(maps))
        return list(maps[:n]), struct.unpack_from("I", info, 128)[0]
    finally:
        os.close(fd)


def _fd_objects(pid, fd, into):
    """Adds the objects fd `fd` of `pid` names to `into`."""
    try:
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return
    if not target.startswith("anon_inode:"):
        return  # files, sockets, pipes
    if target == "anon_inode:[perf_event]":
        prog = _perf_event_program(pid, fd)
        if prog:
            into["progs"].add(prog)
        return
    try:
        lines = open(f"/proc/{pid}/fdinfo/{fd}").read().splitlines()
    except OSError:
        return
    for line in lines:
        for field, kind in _FDINFO.items():
            if line.startswith(field):
                into[kind].add(int(line[len(field):]))


def held_by(pid):
    """What process `pid` holds, {kind: set of ids}; None when it is gone."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    held = {kind: set() for kind in KINDS}
    for fd in fds:
        _fd_objects(pid, int(fd), held)
    for prog in list(held["progs"]):
        uses = _program_uses(prog)
        if uses:
            held["maps"].update(uses[0])
            if uses[1]:
                held["btf"].add(uses[1])
    return held


def process_start(pid):
    """The start time of running process `pid` (clock ticks); None when gone or exited."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


class Seen:
    """Every id a process was seen holding, as sparse bitmaps: a 4-hour soak
    sees millions of ids (each churn instance has its own program, maps, link
    and BTF)."""

    def __init__(self):
        self.chunks = {kind: {} for kind in KINDS}  # id >> 16 -> bytearray of 8 KiB
        self.count = {kind: 0 for kind in KINDS}

    def add(self, objects):
        for kind in KINDS:
            chunks = self.chunks[kind]
            for i in objects[kind]:
                chunk = chunks.setdefault(i >> 16, bytearray(8192))
                byte, bit = (i & 0xFFFF) >> 3, 1 << (i & 7)
                if not chunk[byte] & bit:
                    chunk[byte] |= bit
                    self.count[kind] += 1

    def __contains__(self, kind_id):
        kind, i = kind_id
        chunk = self.chunks[kind].get(i >> 16)
        return bool(chunk and chunk[(i & 0xFFFF) >> 3] & (1 << (i & 7)))

    def alive(self):
        """Those the kernel still has, {kind: set of ids}."""
        return {kind: {i for i in ids if (kind, i) in self} for kind, ids in host_objects().items()}


class Watch:
    """Samples what a process holds every WATCH_EVERY seconds until it exits
    (or `stop`), keeping the union in `seen` and the most held at once."""

    def __init__(self, pid):
        self.pid, self.started = pid, process_start(pid)
        self.seen, self.max = Seen(), {kind: 0 for kind in KINDS}
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def now(self):
        """What it holds now (added to `seen`); None when it has exited."""
        if process_start(self.pid) != self.started:
            return None
        held = held_by(self.pid)
        if held is None or process_start(self.pid) != self.started:  # exited (or pid reused) meanwhile
            return None
        with self.lock:
            self.seen.add(held)
            self.max = {kind: max(self.max[kind], len(held[kind])) for kind in KINDS}
        return held

    def _run(self):
        while not self.stop_event.wait(WATCH_EVERY):
            if self.now() is None:
                return

    def steady(self, timeout=30.0):
        """What it holds once that has held still for half a second: the kernel
        frees an instance's objects some RCU grace periods after it is dropped."""
        deadline = time.time() + timeout
        last, since = self.now(), time.time()
        while time.time() - since < 0.5 and time.time() < deadline:
            time.sleep(0.05)
            now = self.now()
            if now != last:
                last, since = now, time.time()
        return last

    def stop(self):
        self.stop_event.set()
        self.thread.join()

    def all_freed(self, timeout=30.0):
        """After the process exited: waits until the kernel has freed every
        object it was seen holding. Returns ({kind: ids left}, seconds waited)."""
        self.stop()
        start = time.time()
        while True:
            left = self.seen.alive()
            if not any(left.values()) or time.time() - start > timeout:
                return left, time.time() - start
            time.sleep(0.05)


def who_keeps(left):
    """Who keeps objects `left` alive: processes holding them, pins on bpffs."""
    said = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (held := held_by(int(entry))):
            theirs = {k: sorted(held[k] & left[k]) for k in KINDS if held[k] & left[k]}
            if theirs:
                comm = open(f"/proc/{entry}/comm").read().strip() if os.path.exists(f"/proc/{entry}/comm") else "?"
                said.append(f"held by pid {entry} ({comm}): {theirs}")
    mounts = [line.split(" - ")[0].split()[4] for line in open("/proc/self/mountinfo")
              if " - " in line and line.split(" - ")[1].split()[0] == "bpf"]
    for mount in mounts:
        for root, _, files in os.walk(mount):
            for name in files:
                path = os.path.join(root, name)
                c_path = ctypes.create_string_buffer(path.encode())
                attr = (ctypes.c_uint8 * 20)()
                struct.pack_into("Q", attr, 0, ctypes.addressof(c_path))
                fd = _bpf(_OBJ_GET, attr)
                if fd < 0:
                    continue
                pinned = {kind: set() for kind in KINDS}
                _fd_objects(os.getpid(), fd, pinned)
                os.close(fd)
                theirs = {k: sorted(pinned[k] & left[k]) for k in KINDS if pinned[k] & left[k]}
                if theirs:
                    said.append(f"pinned at {path}: {theirs}")
    return "; ".join(said) or "no process's fds and no pin hold them"


# --- the exporter process ---
def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def memory_kib(pid):
    """Anonymous memory (the heap, thread stacks) and the rest of the RSS
    (the binary's and libraries' pages), from /proc/PID/smaps_rollup."""
    fields = {}
    for line in open(f"/proc/{pid}/smaps_rollup"):
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB":
            fields[parts[0].rstrip(":")] = int(parts[1])
    anon = fields.get("Anonymous", 0)
    return anon, fields.get("Rss", 0) - anon


def threads(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fit(points):
    """Least-squares line through (seconds, value) points: its slope per
    second and the slope's standard error; None for fewer than 3 points."""
    n = len(points)
    if n < 3:
        return None
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    if not sxx:
        return None
    slope = sum((p[0] - mx) * (p[1] - my) for p in points) / sxx
    residue = sum((p[1] - my - slope * (p[0] - mx)) ** 2 for p in points)
    return slope, (residue / (n - 2) / sxx) ** 0.5


def per_hour(points):
    """fit() of points, as (slope, standard error) per hour; (None, None) if none."""
    f = fit(points)
    return (None, None) if f is None else (f[0] * HOUR, f[1] * HOUR)


def rounded(x, digits):
    return None if x is None else round(x, digits)


def memory(rss, seconds, window, rss_limit, fd_limit, detach_bound):
    """What the samples say of memory, fds and the detach backlog over time.

    Slopes are least-squares fits, per hour, in each `window` seconds of the
    run (an hour unless scaled down) and in the final window: the last
    `window` seconds, or the last quarter of a run shorter than four windows.
    The final slopes are judged when that window is at least half a `window`
    long: each passes when it is at most its limit, or when it cannot be told
    from noise (less than three standard errors). Returns the summary and the
    checks as (name, passed or None when not judged, detail)."""
    def fits(points):
        out = {}
        for key, scale, digits in (("rss", 1 / 1024, 3), ("anon", 1 / 1024, 3), ("fds", 1, 1)):
            field = {"rss": "rss_kib", "anon": "anon_kib", "fds": "fds"}[key]
            slope, error = per_hour([(p["t"], p[field] * scale) for p in points if p.get(field) is not None])
            unit = "mib" if key != "fds" else "fds"
            out[f"{key}_{unit}_per_hour"] = rounded(slope, digits)
            out[f"{key}_{unit}_per_hour_error"] = rounded(error, digits)
        return out

    hours = []
    start = 0.0
    while start < seconds and rss:
        end = min(start + window, seconds)
        points = [p for p in rss if start <= p["t"] < end or (end == seconds and p["t"] >= start)]
        if len(points) >= 3:
            backlog = [p["detaching"] for p in points if p.get("detaching") is not None]
            hours.append({"from_s": round(start), "to_s": round(end), "samples": len(points),
                          "rss_first_mib": round(points[0]["rss_kib"] / 1024, 2),
                          "rss_last_mib": round(points[-1]["rss_kib"] / 1024, 2),
                          **fits(points), "detaching_max": max(backlog) if backlog else None})
        start = end
    length = min(window, seconds / 4)
    final_points = [p for p in rss if p["t"] >= seconds - length]
    final = {"from_s": round(seconds - length), "to_s": round(seconds), "samples": len(final_points),
             **fits(final_points), "judged": length >= window / 2}
    checks = []
    for name, key, limit, unit in (("RSS flat at the end", "rss_mib", rss_limit, "MiB"),
                                   ("fds flat at the end", "fds_fds", fd_limit, "fds")):
        slope, error = final[f"{key}_per_hour"], final[f"{key}_per_hour_error"]
        where = f"t={final['from_s']}..{final['to_s']} s"
        if slope is None:
            checks.append((name, None, f"not judged: too few samples in {where}"))
        elif not final["judged"]:
            checks.append((name, None, f"{slope:+g} ± {error:g} {unit}/h over {where}; not judged: the final"
                           f" window is {length / 60:.1f} min, shorter than half of a {window / 60:g}-min window"
                           f" (a run of at least {2 * window / 60:g} min is judged)"))
        else:
            passed = slope <= limit or slope < 3 * error
            checks.append((name, passed, f"{slope:+g} ± {error:g} {unit}/h over {where} (limit {limit:g} {unit}/h,"
                           " or less than three standard errors)"))
    backlog = [p["detaching"] for p in rss if p.get("detaching") is not None]
    worst = max(backlog) if backlog else None
    checks.append(("detach backlog bounded", worst is not None and worst <= detach_bound,
                   f"at most {worst} instances waiting to be freed in {len(backlog)} samples"
                   f" (bound {detach_bound:g}: those the churn detaches in 2 s)"))
    summary = {"window_s": window, "hours": hours, "final": final, "detaching_max": worst,
               "limits": {"rss_mib_per_hour": rss_limit, "fds_per_hour": fd_limit, "detaching": detach_bound}}
    return summary, checks


def http(url, data=None, timeout=30):
    with urllib.request.urlopen(url, data=data, timeout=timeout) as r:
        return r.status, r.read().decode()


def samples(port):
    """/metrics as {series: value}, series as written (labels in the exporter's order)."""
    out = {}
    for line in http(f"http://127.0.0.1:{port}/metrics")[1].splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


def value(s, metric, /, **labels):
    """The value of the series of `metric` carrying exactly these labels, or None."""
    want = sorted(labels.items())
    for series, v in s.items():
        name, _, rest = series.partition("{")
        if name != metric:
            continue
        have = sorted(tuple(kv.split("=", 1)) for kv in rest.rstrip("}").split(",") if kv)
        if [(k, v2.strip('"')) for k, v2 in have] == [(k, str(v2)) for k, v2 in want]:
            return v
    return None


def config(usdt_object, uprobe_object, version):
    both = f"[{{binary_name: {LONG_COMM}}}, {{binary_name: {CHURN_COMM}}}]"
    return f"""programs:
  - name: hits
    object: {usdt_object}
    metrics:
      counters:
        - name: soak_hits_total
          help: fixture:hit by argument
          table: hits
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    usdt:
      fixture:hit: on_hit
    attachment: {both}
  - name: mod4
    object: {usdt_object}
    metrics:
      counters:
        - name: soak_mod4_total
          help: fixture:hit by argument modulo 4 (config version {version})
          table: hits_mod4
          labels: [{{name: slot, size: 4, decoders: [{{name: uint}}]}}]
    usdt:
      fixture:hit: on_hit
    attachment: {both}
  - name: calls
    object: {uprobe_object}
    metrics:
      counters:
        - name: soak_calls_total
          help: target_add calls by first argument
          table: calls
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    uprobes:
      target_add: on_add_entry
    attachment: {{binary_name: {LONG_COMM}}}
"""


class LongLived:
    """A fixture target driven over stdin, with what it was told to fire."""

    def __init__(self, binary, index):
        self.index = index
        self.proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"
        self.hits = 0  # fixture:hit with argument `index`, whole run
        self.epoch_hits = 0  # the same, since the last reload
        self.calls = 0  # target_add calls with argument `index`, whole run

    def cmd(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        assert reply.startswith("ok"), f"{line}: {reply!r}"

    def tick(self):
        n = 5 * (self.index + 1)
        self.cmd(f"usdt {n} {self.index}")
        self.hits += n
        self.epoch_hits += n
        m = self.index + 1
        self.cmd(f"call {m} {self.index}")
        self.calls += m


def churn(binary, rate, stop, stats):
    """Starts `rate` matching processes a second until `stop`; each fires
    fixture:hit three times and lives 0.3 to 1 s."""
    rng = random.Random(15)
    live = []  # (deadline, Popen)
    next_start = time.time()
    while not stop.is_set():
        now = time.time()
        while next_start <= now:
            p = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
            p.stdin.write(b"usdt 3 99\n")
            p.stdin.flush()
            live.append((now + rng.uniform(0.3, 1.0), p))
            stats["started"] += 1
            next_start += 1.0 / rate
        keep = []
        for deadline, p in live:
            if deadline <= now:
                p.stdin.close()
                p.wait()
            else:
                keep.append((deadline, p))
        live = keep
        time.sleep(0.01)
    for _, p in live:
        p.stdin.close()
        p.wait()


def sampler(pid, port, t0, every, stop, out, watch, journal):
    """Samples the exporter every EVERY seconds into OUT, and appends each
    sample to JOURNAL as a JSON line as it is taken, so that a run cut short
    (a machine shut down in hour three of four) still leaves its slopes."""
    with open(journal, "w") as lines:
        while not stop.wait(every):
            try:
                anon, other = memory_kib(pid)
                detaching = value(samples(port), "userspace_exporter_detaching_instances")
                detaching = None if detaching is None else int(detaching)
                sample = {"t": round(time.time() - t0, 1), "rss_kib": rss_kib(pid), "anon_kib": anon,
                          "file_kib": other, "threads": threads(pid), "fds": fds(pid),
                          "detaching": detaching, "cpu_s": cpu_seconds(pid),
                          "held": counts(watch.now() or {k: () for k in KINDS}), "host": host_counts()}
            except OSError:
                return
            out.append(sample)
            lines.write(json.dumps(sample) + "\n")
            lines.flush()


class Prometheus:
    def __init__(self, exporter_port, workdir):
        self.port = free_port()
        cfg = os.path.join(workdir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global: {scrape_interval: 1s, scrape_timeout: 1s}\nscrape_configs:\n"
                    f"  - job_name: soak\n    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={workdir}/prometheus-data",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, "prometheus.log"), "w"))

    def query(self, promql, at=None):
        """Every sample of an instant query as [(labels, float)]; [] when none or not up yet."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        try:
            _, body = http(f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(params))
        except OSError:
            return []
        return [(r["metric"], float(r["value"][1])) for r in json.loads(body)["data"]["result"]]

    def scalar(self, promql, at=None):
        result = self.query(promql, at)
        return result[0][1] if result else None

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wait_for(timeout, f, step=0.1):
    deadline = time.time() + timeout
    while True:
        v = f()
        if v:
            return v
        if time.time() > deadline:
            return v
        time.sleep(step)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exporter", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--usdt-object", required=True)
    ap.add_argument("--uprobe-object", required=True)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--reload-every", type=float, default=60.0)
    ap.add_argument("--churn-rate", type=float, default=10.0)
    ap.add_argument("--long-lived", type=int, default=4)
    ap.add_argument("--sample-every", type=float, default=SAMPLE_EVERY,
                    help="seconds between RSS / fd samples")
    ap.add_argument("--exporter-env", action="append", default=[], metavar="NAME=VALUE",
                    help="set in the exporter's environment (e.g. MALLOC_ARENA_MAX=2); repeatable")
    ap.add_argument("--window", type=float, default=HOUR,
                    help="seconds in each slope window (default 3600: an hour); the final one is judged")
    ap.add_argument("--rss-limit", type=float, default=RSS_LIMIT,
                    help="MiB an hour RSS may grow in the final window (default %(default)s)")
    ap.add_argument("--fd-limit", type=float, default=FD_LIMIT,
                    help="open fds an hour may grow in the final window (default %(default)s)")
    ap.add_argument("--out", default="target/reliability")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="soak-")
    fixture_dir = os.path.dirname(os.path.abspath(args.target))
    binaries = {}
    for comm in (LONG_COMM, CHURN_COMM):
        binaries[comm] = os.path.join(fixture_dir, comm)
        shutil.copy(args.target, binaries[comm])
    log_path = os.path.join(args.out, "soak-exporter.log")
    config_path = os.path.join(work, "config.yaml")
    version = 0
    with open(config_path, "w") as f:
        f.write(config(args.usdt_object, args.uprobe_object, version))

    checks = {}  # name -> (passed, detail)

    def check(name, passed, detail):
        """Records a check; `passed` None: not judged (the run is too short for it)."""
        checks[name] = {"passed": None if passed is None else bool(passed), "detail": detail}
        said = "--  " if passed is None else "ok  " if passed else "FAIL"
        print(f"soak: {said} {name}: {detail}", file=sys.stderr, flush=True)

    host_before = host_counts()
    longs = [LongLived(binaries[LONG_COMM], i) for i in range(args.long_lived)]
    port = free_port()
    exporter = subprocess.Popen(
        [args.exporter, "--listen-address", f"127.0.0.1:{port}", "-c", config_path, "--web.enable-lifecycle"],
        stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
        env={**os.environ, **dict(kv.split("=", 1) for kv in args.exporter_env)})
    watch = Watch(exporter.pid)
    prometheus = None
    stop = threading.Event()
    threads = []
    try:
        def attached(name):
            try:
                return value(samples(port), "userspace_exporter_processes", name=name, state="attached")
            except OSError:
                return None

        ok = wait_for(60, lambda: all(attached(n) == len(longs) for n in PROGRAMS), 0.2)
        if not ok:
            raise RuntimeError(f"the long-lived targets were never all attached; see {log_path}")
        prometheus = Prometheus(port, work)
        if wait_for(60, lambda: prometheus.scalar('up{job="soak"}') == 1.0, 0.5) is None:
            raise RuntimeError("Prometheus never scraped the exporter")
        prom_start = time.time()
        quiet_fds = fds(exporter.pid)
        quiet_held = counts(watch.steady())
        quiet_host = host_counts()

        t0 = time.time()
        rss = []
        stats = {"started": 0}
        threads = [threading.Thread(target=churn, args=(binaries[CHURN_COMM], args.churn_rate, stop, stats)),
                   threading.Thread(target=sampler, args=(exporter.pid, port, t0, args.sample_every, stop, rss, watch,
                                                          os.path.join(args.out, "samples.jsonl")))]
        for t in threads:
            t.start()
        end = t0 + args.minutes * 60
        next_reload = t0 + args.reload_every
        reloads, epoch_errors = [], []
        while time.time() < end:
            round_start = time.time()
            for t in longs:
                t.tick()
            if round_start >= next_reload:
                # Before: the replaced program counted this epoch exactly.
                s = samples(port)
                for t in longs:
                    got = value(s, "userspace_exporter_soak_mod4_total", slot=t.index % 4, pid=t.proc.pid) or 0
                    if got != t.epoch_hits:
                        epoch_errors.append({"reload": len(reloads), "pid": t.proc.pid, "counted": got, "fired": t.epoch_hits})
                version += 1
                with open(config_path, "w") as f:
                    f.write(config(args.usdt_object, args.uprobe_object, version))
                how = "POST" if version % 2 else "SIGHUP"
                started = time.time()
                if how == "POST":
                    status, _ = http(f"http://127.0.0.1:{port}/-/reload", data=b"")
                    done = status == 200
                else:
                    before = value(samples(port), "userspace_exporter_config_last_reload_success_timestamp_seconds")
                    exporter.send_signal(signal.SIGHUP)
                    done = wait_for(30, lambda: (value(samples(port), "userspace_exporter_config_last_reload_success_timestamp_seconds") or 0) > before, 0.05)
                reloads.append({"how": how, "ok": bool(done), "seconds": round(time.time() - started, 3)})
                for t in longs:
                    t.epoch_hits = 0
                next_reload += args.reload_every
            time.sleep(max(0.0, TICK - (time.time() - round_start)))
        run_end = time.time()
        stop.set()
        for t in threads:
            t.join()

        # Churn is over: back to the long-lived targets alone.
        def quiet():
            s = samples(port)
            return all(value(s, "userspace_exporter_processes", name=n, state="attached") == len(longs)
                       and value(s, "userspace_exporter_processes", name=n, state="failed") == 0
                       for n in PROGRAMS) and fds(exporter.pid) <= quiet_fds
        wait_for(60, quiet, 0.2)
        end_fds = fds(exporter.pid)
        end_held = counts(watch.steady())
        end_host = host_counts()
        check("fds back to the quiet level", end_fds == quiet_fds, f"{end_fds} after churn, {quiet_fds} before")
        # Counts, not ids: each reload replaced mod4's programs by equal ones.
        check("BPF objects held back to the quiet level", end_held == quiet_held,
              f"the exporter holds {end_held} after churn, {quiet_held} before"
              f" (host-wide, for information: {end_host} after, {quiet_host} before)")

        # Exact counts, read from the exporter and through Prometheus.
        s = samples(port)
        wrong = []
        for t in longs:
            hits = value(s, "userspace_exporter_soak_hits_total", arg=t.index, pid=t.proc.pid)
            mod4 = value(s, "userspace_exporter_soak_mod4_total", slot=t.index % 4, pid=t.proc.pid) or 0
            calls = value(s, "userspace_exporter_soak_calls_total", arg=t.index, pid=t.proc.pid)
            if hits != t.hits or mod4 != t.epoch_hits or calls != t.calls:
                wrong.append({"pid": t.proc.pid, "hits": [hits, t.hits], "mod4": [mod4, t.epoch_hits],
                              "calls": [calls, t.calls]})
        fired = sum(t.hits for t in longs)
        called = sum(t.calls for t in longs)
        check("long-lived targets counted exactly", not wrong,
              f"{fired} fixture:hit and {called} target_add calls by {len(longs)} targets"
              + (f"; wrong: {wrong}" if wrong else ""))
        check("replaced program exact in every reload epoch", not epoch_errors,
              f"{len(reloads)} epochs checked" + (f"; wrong: {epoch_errors}" if epoch_errors else ""))
        check("every reload succeeded", reloads and all(r["ok"] for r in reloads),
              f"{len(reloads)} reloads ({sum(r['how'] == 'POST' for r in reloads)} POST, {sum(r['how'] == 'SIGHUP' for r in reloads)} SIGHUP)")
        time.sleep(3)  # a few more scrapes, nothing fired meanwhile
        at = time.time()
        prom_wrong = []
        for t in longs:
            for metric, fired_n in (("hits", t.hits), ("calls", t.calls)):
                sel = f'userspace_exporter_soak_{metric}_total{{job="soak",arg="{t.index}",pid="{t.proc.pid}"}}'
                seen = prometheus.scalar(sel, at)
                resets = prometheus.scalar(f"resets({sel}[{int(at - prom_start) + 1}s])", at)
                if seen != fired_n or resets != 0:
                    prom_wrong.append({"series": sel, "prometheus": seen, "fired": fired_n, "resets": resets})
        check("Prometheus saw the exact counts, never reset", not prom_wrong,
              "the kept programs' series of every long-lived target" + (f"; wrong: {prom_wrong}" if prom_wrong else ""))

        window = int(at - prom_start)
        up = f'up{{job="soak"}}[{window}s]'
        scrapes = prometheus.scalar(f"count_over_time({up})", at) or 0
        succeeded = prometheus.scalar(f"sum_over_time({up})", at) or 0
        durations = f'scrape_duration_seconds{{job="soak"}}[{window}s]'
        scrape = {
            "window_s": window,
            "scrapes": int(scrapes),
            "failed": int(scrapes - succeeded),
            "missing": max(0, window - int(scrapes) - 1),
            "duration_avg_ms": round(1e3 * (prometheus.scalar(f"avg_over_time({durations})", at) or 0), 2),
            "duration_p99_ms": round(1e3 * (prometheus.scalar(f"quantile_over_time(0.99, {durations})", at) or 0), 2),
            "duration_max_ms": round(1e3 * (prometheus.scalar(f"max_over_time({durations})", at) or 0), 2),
            "samples_max": int(prometheus.scalar(f'max_over_time(scrape_samples_scraped{{job="soak"}}[{window}s])', at) or 0),
        }
        check("no failed scrapes", scrape["failed"] == 0,
              f"{scrape['failed']} of {scrape['scrapes']} scrapes failed (Prometheus' up)")
        check("no missing scrapes", scrape["missing"] <= 2,
              f"{scrape['scrapes']} scrapes in {window} s at 1 s")

        self_stats = samples(port)
        attach_count = value(self_stats, "userspace_exporter_attach_duration_seconds_count") or 0
        attach_errors = sum(v for k, v in self_stats.items() if k.startswith("userspace_exporter_attach_errors_total"))
        cpu = cpu_seconds(exporter.pid)

        # Stop the exporter; the kernel must free everything it held.
        stopped = time.time()
        exporter.send_signal(signal.SIGTERM)
        code = exporter.wait(timeout=30)
        exit_s = time.time() - stopped
        exporter = None
        prometheus.stop()
        prometheus = None
        for t in longs:
            t.proc.kill()
            t.proc.wait()
        longs = []
        left, freed_s = watch.all_freed()
        host_after = host_counts()
        check("exporter exited cleanly on SIGTERM", code == 0, f"exit status {code} after {exit_s:.2f} s")
        seen_text = (f"of the {watch.seen.count} it was seen holding (looked at every {WATCH_EVERY:g} s),"
                     f" the kernel still had {counts(left)} {freed_s:.1f} s after it exited")
        check("every BPF object held was freed after exit", not any(left.values()),
              seen_text + ("" if not any(left.values()) else
                           f": {({k: sorted(v)[:10] for k, v in left.items() if v})}; {who_keeps(left)}")
              + f" (host-wide, for information: {host_after} after, {host_before} before it started)")

        # Memory and fds over time: slopes per hour, judged over the final window.
        seconds = run_end - t0
        mem, mem_checks = memory(rss, seconds, args.window, args.rss_limit, args.fd_limit,
                                 detach_bound=4 * args.churn_rate)
        for name, passed, detail in mem_checks:
            check(name, passed, detail)
        warm = min(60.0, args.minutes * 15)
        warmed = [p for p in rss if p["t"] >= warm] or rss
        rss_growth = warmed[-1]["rss_kib"] / 1024 - warmed[0]["rss_kib"] / 1024 if warmed else 0.0

        logs = open(log_path).read().splitlines()
        levels = {lvl: sum(1 for l in logs if f" {lvl} " in l[:60]) for lvl in ("ERROR", "WARN")}
        panics = sum(1 for l in logs if "panicked" in l)
        warn_kinds = {}
        for l in logs:
            if " WARN " in l[:60] or " ERROR " in l[:60]:
                text = l.split(": ", 1)[-1]
                key = "".join("N" if c.isdigit() else c for c in text)[:120]
                warn_kinds[key] = warn_kinds.get(key, 0) + 1
        check("no panic, no error logged", panics == 0 and levels["ERROR"] == 0,
              f"{panics} panics, {levels['ERROR']} errors, {levels['WARN']} warnings")

        summary = {
            "minutes": args.minutes,
            "seconds": round(run_end - t0, 1),
            "reload_every_s": args.reload_every,
            "sample_every_s": args.sample_every,
            "long_lived": args.long_lived,
            "churn_started": stats["started"],
            "churn_per_s": round(stats["started"] / (run_end - t0), 2),
            "attaches": int(attach_count),
            "attach_errors": int(attach_errors),
            "reloads": reloads,
            "fired_hits": fired,
            "fired_calls": called,
            "scrape": scrape,
            "rss_mib": {"first": round(rss[0]["rss_kib"] / 1024, 1) if rss else None,
                        "after_warmup": round(warmed[0]["rss_kib"] / 1024, 1) if warmed else None,
                        "last": round(rss[-1]["rss_kib"] / 1024, 1) if rss else None,
                        "max": round(max(p["rss_kib"] for p in rss) / 1024, 1) if rss else None,
                        "growth_after_warmup": round(rss_growth, 2)},
            "fds": {"quiet_before": quiet_fds, "quiet_after": end_fds,
                    "min": min(p["fds"] for p in rss) if rss else None,
                    "max": max(p["fds"] for p in rss) if rss else None},
            "memory": mem,
            # What the exporter held (the checks), and the host's counts (information only).
            "exporter_objects": {"quiet_before": quiet_held, "quiet_after": end_held, "max_during": watch.max,
                                 "seen": dict(watch.seen.count), "left_after_exit": counts(left),
                                 "watch_every_s": WATCH_EVERY},
            "host_objects": {"before_start": host_before, "quiet_before": quiet_host, "quiet_after": end_host,
                             "after_exit": host_after,
                             "max_during": {k: max(p["host"][k] for p in rss) for k in KINDS} if rss else None},
            "exporter_cpu_s": round(cpu, 2),
            "exit_s": round(exit_s, 3),
            "log": {"errors": levels["ERROR"], "warnings": levels["WARN"], "panics": panics, "kinds": warn_kinds},
            "samples": rss,
            "checks": checks,
            # A check not judged (None) neither passes nor fails the run.
            "passed": all(c["passed"] is not False for c in checks.values()),
        }
    finally:
        stop.set()
        for t in threads:
            t.join()
        if exporter is not None:
            exporter.kill()
            exporter.wait()
        watch.stop()
        if prometheus is not None:
            prometheus.stop()
        for t in longs:
            t.proc.kill()
            t.proc.wait()
        shutil.rmtree(work, ignore_errors=True)
        for binary in binaries.values():
            os.remove(binary)

    with open(os.path.join(args.out, "soak.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(args.out, "soak.md"), "w") as f:
        f.write(markdown(summary))
    print(json.dumps({k: v for k, v in summary.items() if k not in ("samples",)}, indent=1))
    sys.exit(0 if summary["passed"] else 1)


def window_text(s):
    """The slope window, as the report names it."""
    w = s["memory"]["window_s"]
    return "hour" if w == HOUR else f"{w / 60:g} minutes (--window {w:g}; an hour unless scaled down)"


def markdown(s):
    sc, r, fd, k, h = s["scrape"], s["rss_mib"], s["fds"], s["exporter_objects"], s["host_objects"]
    kfmt = lambda d: "/".join(str(d[x]) for x in ("progs", "maps", "links", "btf"))
    lines = [
        "## Soak",
        "",
        f"`scripts/soak.sh {s['minutes']:g}`: the exporter (release build) ran for {s['minutes']:g} minutes with three"
        " programs on the fixture target (two USDT counters, one of them replaced by every reload, and a uprobe"
        f" counter on the long-lived targets), scraped every second by Debian's Prometheus, while {s['churn_started']}"
        f" short-lived matching processes came and went ({s['churn_per_s']:g} a second, each living 0.3 to 1 s and"
        f" attached by both USDT programs), {s['long_lived']} long-lived targets hit their probes at known rates, and"
        f" the config was reloaded every {s['reload_every_s']:g} s (alternately `POST /-/reload` and SIGHUP, each"
        " changing the replaced program's help text). Scrapes are Prometheus' own `up` and `scrape_duration_seconds` over the"
        f" run; RSS, open fds and the instances waiting to be freed were sampled every {s['sample_every_s']:g} s;"
        f" slopes are least-squares fits per hour, in each {window_text(s)} of the run and in the final window"
        " (the last of those, or the last quarter of a shorter run), which is judged: each slope passes when it is at"
        " most its limit or less than three standard errors (noise); a final window shorter than half of one is not judged."
        " BPF objects are the programs/maps/links/BTF the exporter holds, by id (its fds, the programs its perf"
        f" events hold, its programs' maps and BTF), looked at every {k['watch_every_s']:g} s; after it exits, every id"
        " it was seen holding must be gone from the kernel. The host-wide counts are information, not a check.",
        "",
        "| figure | value | check |",
        "|---|---|---|",
    ]
    c = s["checks"]
    m, fin = s["memory"], s["memory"]["final"]
    mark = lambda name: ({True: "pass", False: "**FAIL**", None: "not judged"}[c[name]["passed"]]) if name in c else ""
    slope = lambda key, unit, digits: ("n/a" if fin[key] is None else
                                       f"{fin[key]:+.{digits}f} ± {fin[key + '_error']:.{digits}f} {unit}/h")
    rows = [
        ("scrapes (failed / total)", f"{sc['failed']} / {sc['scrapes']} in {sc['window_s']} s", mark("no failed scrapes")),
        ("missing scrapes", f"{sc['missing']}", mark("no missing scrapes")),
        ("scrape duration avg / p99 / max", f"{sc['duration_avg_ms']} / {sc['duration_p99_ms']} / {sc['duration_max_ms']} ms", ""),
        ("samples per scrape (max)", f"{sc['samples_max']}", ""),
        ("long-lived targets' counts", f"{s['fired_hits']} USDT hits and {s['fired_calls']} uprobe calls, counted exactly; no reset in Prometheus",
         mark("long-lived targets counted exactly") + (", " + mark("Prometheus saw the exact counts, never reset"))),
        ("replaced program, per reload epoch", f"exact in each of {len(s['reloads'])} reload epochs", mark("replaced program exact in every reload epoch")),
        ("reloads", f"{sum(x['ok'] for x in s['reloads'])} of {len(s['reloads'])} succeeded, slowest {max([x['seconds'] for x in s['reloads']] or [0]):.2f} s", mark("every reload succeeded")),
        ("attaches / attach errors", f"{s['attaches']} / {s['attach_errors']}", ""),
        ("RSS first / after warm-up / last / max", f"{r['first']} / {r['after_warmup']} / {r['last']} / {r['max']} MiB", ""),
        (f"RSS slope in the final window (t={fin['from_s']}..{fin['to_s']} s)",
         f"{slope('rss_mib_per_hour', 'MiB', 3)} (limit {m['limits']['rss_mib_per_hour']:g}); anonymous {slope('anon_mib_per_hour', 'MiB', 3)}",
         mark("RSS flat at the end")),
        ("open fds during churn (min..max)", f"{fd['min']}..{fd['max']}", ""),
        (f"open fds slope in the final window", f"{slope('fds_fds_per_hour', 'fds', 1)} (limit {m['limits']['fds_per_hour']:g})",
         mark("fds flat at the end")),
        ("instances waiting to be freed (max)", f"{m['detaching_max']} (bound {m['limits']['detaching']:g})", mark("detach backlog bounded")),
        ("open fds, quiet: before churn / after", f"{fd['quiet_before']} / {fd['quiet_after']}", mark("fds back to the quiet level")),
        ("BPF progs/maps/links/btf the exporter holds, quiet: before churn / after", f"{kfmt(k['quiet_before'])} / {kfmt(k['quiet_after'])}", mark("BPF objects held back to the quiet level")),
        ("BPF progs/maps/links/btf the exporter was seen holding / left after its exit", f"{kfmt(k['seen'])} / {kfmt(k['left_after_exit'])}", mark("every BPF object held was freed after exit")),
        ("host-wide progs/maps/links/btf: before start / quiet before churn / after / after exit (information)",
         f"{kfmt(h['before_start'])} / {kfmt(h['quiet_before'])} / {kfmt(h['quiet_after'])} / {kfmt(h['after_exit'])}", ""),
        ("exit on SIGTERM", f"{s['exit_s']:.2f} s", mark("exporter exited cleanly on SIGTERM")),
        ("exporter CPU time", f"{s['exporter_cpu_s']} s ({100 * s['exporter_cpu_s'] / max(s['seconds'], 1):.1f}% of one core)", ""),
        ("log: panics / errors / warnings", f"{s['log']['panics']} / {s['log']['errors']} / {s['log']['warnings']}", mark("no panic, no error logged")),
    ]
    for row in rows:
        lines.append("| %s | %s | %s |" % row)
    lines.append("")
    lines += [f"Slopes per hour in each {window_text(s)} of the run (least-squares fits, ± one standard error):", "",
              "| minutes | RSS first → last (MiB) | RSS (MiB/h) | anonymous (MiB/h) | open fds (/h) | waiting to be freed (max) |",
              "|---|---|---|---|---|---|"]
    pm = lambda v, e, d: "n/a" if v is None else f"{v:+.{d}f} ± {e:.{d}f}"
    for h in m["hours"]:
        lines.append(f"| {h['from_s'] / 60:g}-{h['to_s'] / 60:g} | {h['rss_first_mib']} → {h['rss_last_mib']} |"
                     f" {pm(h['rss_mib_per_hour'], h['rss_mib_per_hour_error'], 3)} |"
                     f" {pm(h['anon_mib_per_hour'], h['anon_mib_per_hour_error'], 3)} |"
                     f" {pm(h['fds_fds_per_hour'], h['fds_fds_per_hour_error'], 1)} | {h['detaching_max']} |")
    lines.append("")
    not_judged = [name for name, x in c.items() if x["passed"] is None]
    if not_judged:
        lines.append("Not judged: " + "; ".join(f"{name} ({c[name]['detail']})" for name in not_judged) + ".")
        lines.append("")
    if s["log"]["kinds"]:
        lines.append("Warnings and errors logged, by kind (digits as N):")
        lines.append("")
        for kind, n in sorted(s["log"]["kinds"].items(), key=lambda kv: -kv[1]):
            lines.append(f"- {n} x `{kind}`")
        lines.append("")
    lines.append(f"Overall: {'every check judged passed' if s['passed'] else 'SOME CHECKS FAILED'}.")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
