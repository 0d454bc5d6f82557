"""Cost per hit of the PHP-FPM example's probes (examples/php.yaml: the
semaphore-guarded USDT probes php:request__startup and request__shutdown,
one hit each per request), against bpftrace doing the same work on them.

A private pool of Debian's php-fpm8.2 (a copy, so that its name is unique;
one static worker, no php.ini) serves N requests per run of a script that
echoes one line, through a FastCGI client here on a unix socket (a new
connection per request, as nginx's fastcgi_pass does by default), and the
worker's on-CPU time (ns from /proc/PID/schedstat: the probes' traps and
BPF programs run on it) per request is measured. As
bench/nginx_probe_cost.py: paired within one pool, after a warm-up, each
phase the median of three runs: requests before the tracer attaches, with
it, and after it detached; the probes' cost is the middle phase minus the
mean of the others, halved (two hits per request). The tracers: the
exporter running the example (a counter by method, a start time by thread,
a duration histogram) and bpftrace doing the same (the method string read,
count(), nsecs by thread, hist()). Tracers are interleaved in every
repetition; every run's requests are checked against the count. Prints one
JSON line per condition with every sample.
Usage: python3 bench/php_probe_cost.py EXPORTER PHP_OBJECT
"""
import atexit
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import procinfo
from procinfo import cpu_ns, scrape

exporter, obj = sys.argv[1:3]
N = int(os.environ.get("PHP_REQUESTS", "5000"))
REPS = int(os.environ.get("REPS", "5"))
work = tempfile.mkdtemp()
atexit.register(shutil.rmtree, work, True)
comm = "uexp-phpcost"
binary = os.path.join(work, comm)
shutil.copy("/usr/sbin/php-fpm8.2", binary)
example = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "php.yaml")
sock = os.path.join(work, "fpm.sock")
script = os.path.join(work, "ok.php")
with open(script, "w") as f:
    f.write("<?php echo \"ok\\n\";\n")


def start_fpm():
    conf = os.path.join(work, "fpm.conf")
    with open(conf, "w") as f:
        f.write(f"[global]\npid = {work}/fpm.pid\nerror_log = {work}/fpm.log\ndaemonize = no\n"
                f"[bench]\nlisten = {sock}\npm = static\npm.max_children = 1\n")
    master = subprocess.Popen([binary, "-n", "-R", "-y", conf], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 20
    while True:
        try:
            children = open(f"/proc/{master.pid}/task/{master.pid}/children").read().split()
            if len(children) == 1 and os.path.exists(sock):
                request()
                return master, int(children[0])
        except OSError:
            pass
        assert time.time() < deadline, "php-fpm did not start"
        time.sleep(0.05)


def record(kind, content):
    return struct.pack(">BBHHBB", 1, kind, 1, len(content), 0, 0) + content


def pair(name, value):
    return bytes([len(name), len(value)]) + name.encode() + value.encode()


REQUEST = (record(1, bytes([0, 1, 0, 0, 0, 0, 0, 0]))
           + record(4, pair("REQUEST_METHOD", "GET") + pair("SCRIPT_FILENAME", script)
                    + pair("SCRIPT_NAME", "/ok.php") + pair("REQUEST_URI", "/ok.php"))
           + record(4, b"") + record(5, b""))


def request():
    """One FastCGI request; asserts the script's answer."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(REQUEST)
    got = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    s.close()
    assert b"ok\n" in got, got


def measure(worker):
    """Worker CPU ns per request: the median of three runs."""
    runs = []
    for _ in range(3):
        t0 = cpu_ns(worker)
        for _ in range(N):
            request()
        runs.append((cpu_ns(worker) - t0) / N)
    return sorted(runs)[1]


def start_bpftrace(worker):
    # -p: bpftrace enables the probes' semaphore in that process.
    program = (f"usdt:{binary}:php:request__startup {{ $m = str(arg2, 8); @requests[$m] = count(); @start[tid] = nsecs; }} "
               f"usdt:{binary}:php:request__shutdown /@start[tid]/ {{ @duration = hist(nsecs - @start[tid]); delete(@start[tid]); }}")
    return procinfo.start_bpftrace(program, ["-p", str(worker)])


def stop_bpftrace(bt):
    out = procinfo.stop_bpftrace(bt)
    return int(out.split("@requests[GET]:")[1].split()[0]) if "@requests[GET]:" in out else 0


def start_exporter():
    return procinfo.start_example(
        exporter, example, work,
        [("object: php.bpf.o", f"object: {obj}"), ("binary_name: php-fpm8.2", f"binary_name: {comm}")],
        'userspace_exporter_attached_binaries{name="php"} 1')


def counted(text):
    return sum(int(float(l.split()[-1])) for l in text.splitlines()
               if l.startswith("userspace_exporter_php_requests_total{"))


def run(tracer):
    """(ns per request before, with the tracer, after; requests it counted)."""
    master, worker = start_fpm()
    try:
        measure(worker)  # warm-up
        before = measure(worker)
        if tracer == "bpftrace":
            bt = start_bpftrace(worker)
            probed = measure(worker)
            count = stop_bpftrace(bt)
        else:
            e, port = start_exporter()
            first = counted(scrape(port))
            probed = measure(worker)
            count = counted(scrape(port)) - first
            e.send_signal(signal.SIGTERM)
            e.wait()
        after = measure(worker)
        return before, probed, after, count
    finally:
        os.killpg(master.pid, signal.SIGKILL)
        master.wait()


def check(tracer, count):
    assert count == 3 * N, f"{tracer}: counted {count} of {3 * N}"


samples, costs = procinfo.compare_tracers(run, REPS, check)
for condition, values in samples.items():
    # Two hits a request.
    per_hit = [cost / 2 for cost in costs[condition]] if condition in costs else None
    print(json.dumps({"condition": condition, "requests": N, "ns_per_request": values,
                      "cost_ns_per_hit": per_hit}), flush=True)
