"""Helpers the bench scripts share: a free loopback port, a timed GET of
/metrics, waiting for the bench targets to be attached, a process's CPU
time and memory from /proc, and the exporter and bpftrace started and
stopped the same way for every probe-cost comparison."""
import os
import random
import re
import signal
import socket
import subprocess
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample(text, name, labels):
    """The value of series `name` whose labels are exactly `labels` (a dict,
    in any order) in an exposition; 0 when there is none."""
    want = sorted(labels.items())
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        inside, _, value = line[len(name) + 1:].rpartition("} ")
        got = sorted((k, v.strip('"')) for k, _, v in (p.partition("=") for p in inside.split(",")))
        if got == want:
            return float(value)
    return 0.0


def cpu_seconds(pid):
    """utime + stime of a process, in seconds (clock-tick resolution)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def status_kib(pid, field):
    """A kB field of /proc/PID/status (VmRSS, VmHWM, ...); 0 when absent."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def timed_get(port, headers=None):
    """GET /metrics on 127.0.0.1:port: (milliseconds, body, response headers)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers or {})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as r:
        body = r.read()
        received = r.headers
    return (time.perf_counter() - started) * 1e3, body, received


def attach_then_fire(port, targets):
    """Waits (2 minutes at most) until the exporter on `port` has program
    `bench` attached to every one of `targets` (bench/probe_target.c
    processes), then has each fire its probes and waits for it to finish."""
    deadline = time.time() + 120
    while True:
        try:
            text = timed_get(port)[1].decode()
            if f'userspace_exporter_attached_processes{{name="bench"}} {len(targets)}' in text:
                break
        except OSError:
            pass
        assert time.time() < deadline, "not all attached"
        time.sleep(0.1)
    for t in targets:
        t.stdin.write("go\n")
        t.stdin.flush()
        t.stdout.readline()


def scrape(port):
    """The text of GET /metrics on 127.0.0.1:port."""
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def cpu_ns(pid):
    """Nanoseconds a thread (or a single-threaded process) has run, from
    schedstat: finer than the clock ticks of cpu_seconds."""
    return int(open(f"/proc/{pid}/schedstat").read().split()[0])


def start_bpftrace(program, options=(), attempts=3):
    """bpftrace running `program` (with its `options`), once it has attached
    (it prints "Attaching ..." first) and half a second more for its probes
    to settle. One full run waited 27 minutes for that line from a bpftrace
    sitting in epoll_wait: a start that says nothing for 60 s is killed and
    tried again."""
    import select
    for _ in range(attempts):
        bt = subprocess.Popen(["bpftrace", *options, "-e", program], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            ready, _, _ = select.select([bt.stdout], [], [], max(0.0, deadline - time.time()))
            if not ready:
                break
            line = bt.stdout.readline()
            assert line or bt.poll() is None, "bpftrace exited"
            if "Attaching" in line:
                time.sleep(0.5)
                return bt
        bt.kill()
        bt.wait()
    raise AssertionError(f"bpftrace said nothing for 60 s, {attempts} times")


def stop_bpftrace(bt):
    """Interrupts bpftrace; what it printed (its maps)."""
    bt.send_signal(signal.SIGINT)
    return bt.communicate()[0]


def hist_total(out, name):
    """The observations in the histogram `@name` that bpftrace printed (its
    output at exit, `out`); 0 when it printed none (nothing observed)."""
    if f"@{name}:" not in out:
        return 0
    section = out.split(f"@{name}:", 1)[1].split("\n\n", 1)[0]
    return sum(int(m) for m in re.findall(r"^\[[^\]\)\n]*[\])]\s+(\d+)", section, re.M))


def start_exporter(exporter, config_path, ready, timeout=30):
    """The exporter on a free port with the config at `config_path`, once a
    scrape contains `ready` (an attached-count line): (process, port)."""
    port = free_port()
    e = subprocess.Popen([exporter, "--listen-address", f"127.0.0.1:{port}", "-c", config_path,
                          "--log-level", "warn"])
    deadline = time.time() + timeout
    while True:
        try:
            if ready in scrape(port):
                return e, port
        except OSError:
            pass
        assert time.time() < deadline, "exporter never attached"
        time.sleep(0.05)


def start_example(exporter, example, work, replacements, ready):
    """The exporter running a copy of the example config `example` with each
    (old, new) of `replacements` made (each `old` must be there exactly once:
    an example that changed under a bench fails it, instead of measuring
    something else), written to WORK/config.yaml: (process, port), as
    start_exporter."""
    with open(example) as f:
        text = f.read()
    for old, new in replacements:
        assert text.count(old) == 1, f"{example} changed ({old!r}): update the bench"
        text = text.replace(old, new)
    path = os.path.join(work, "config.yaml")
    with open(path, "w") as f:
        f.write(text)
    return start_exporter(exporter, path, ready)


def compare_tracers(run, reps, check):
    """Runs `run(tracer)` for the exporter and bpftrace, in a shuffled order,
    `reps` times. `run` returns the no-probe figure before, the figure with
    the tracer, the no-probe figure after and the hits the tracer counted;
    `check(tracer, counted)` asserts on the count. Returns the samples by
    condition (none, exporter, bpftrace) and each tracer's costs: the
    figure with it minus the mean of those before and after, per repetition."""
    tracers = ["exporter", "bpftrace"]
    samples = {c: [] for c in ["none"] + tracers}
    costs = {c: [] for c in tracers}
    for _ in range(reps):
        order = tracers[:]
        random.shuffle(order)
        for tracer in order:
            before, probed, after, counted = run(tracer)
            check(tracer, counted)
            samples["none"] += [before, after]
            samples[tracer].append(probed)
            costs[tracer].append(probed - (before + after) / 2)
    return samples, costs
