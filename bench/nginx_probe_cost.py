"""Cost per hit of the nginx example's probes (examples/nginx.yaml: uprobes on
the exported ngx_http_create_request and ngx_http_free_request, one hit each
per request), against bpftrace counting on the same two probes.

A private nginx (Debian's binary, one worker, `return 200` on 127.0.0.1)
serves N keep-alive requests per run, pipelined 100 at a time, and the
worker's CPU time (on-CPU ns from /proc/PID/schedstat: a uprobe's trap and
its BPF program run on the traced thread) per request is measured. Each
measurement is paired within one nginx, after a warm-up, each phase the
median of three runs: requests before the tracer attaches, with it, and
after it detached; the probes' cost is the middle phase minus the mean of
the other two. The tracers: the exporter running the example (a counter,
a start time per connection and a duration histogram), and bpftrace running
`@ = count()` on the same two uprobes. Tracers are interleaved in every
repetition; every run's requests are checked against the count. Prints one
JSON line per condition with every sample (ns per request, and the cost per
hit: per request / 2).
Usage: python3 bench/nginx_probe_cost.py EXPORTER NGINX_OBJECT
"""
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import procinfo
from procinfo import cpu_ns, free_port, scrape

exporter, obj = sys.argv[1:3]
N = int(os.environ.get("REQUESTS", "20000"))
REPS = int(os.environ.get("REPS", "5"))
BATCH = 100
work = tempfile.mkdtemp()
atexit.register(shutil.rmtree, work, True)
comm = "uexp-ngxcost"
binary = os.path.join(work, comm)
shutil.copy("/usr/sbin/nginx", binary)
example = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "nginx.yaml")


def start_nginx():
    port = free_port()
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off;
master_process on;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {work}/body;
  proxy_temp_path {work}/proxy;
  fastcgi_temp_path {work}/fastcgi;
  uwsgi_temp_path {work}/uwsgi;
  scgi_temp_path {work}/scgi;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    location / {{ return 200 "ok\\n"; }}
  }}
}}
""")
    master = subprocess.Popen([binary, "-p", work, "-c", conf, "-e", f"{work}/error.log"],
                              stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 20
    while True:
        try:
            children = open(f"/proc/{master.pid}/task/{master.pid}/children").read().split()
            if len(children) == 1:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return master, int(children[0]), port
        except OSError:
            pass
        assert time.time() < deadline, "nginx did not start"
        time.sleep(0.05)


def requests(port, n):
    """n keep-alive GETs on one connection, pipelined BATCH at a time."""
    s = socket.create_connection(("127.0.0.1", port))
    batch = b"GET / HTTP/1.1\r\nHost: b\r\n\r\n" * BATCH
    for _ in range(n // BATCH):
        s.sendall(batch)
        got = b""
        while got.count(b"ok\n") < BATCH:
            chunk = s.recv(65536)
            assert chunk, "nginx closed the connection"
            got += chunk
    s.close()


def measure(worker, port):
    """Worker CPU ns per request: the median of three runs."""
    runs = []
    for _ in range(3):
        t0 = cpu_ns(worker)
        requests(port, N)
        runs.append((cpu_ns(worker) - t0) / N)
    return sorted(runs)[1]


def start_bpftrace(worker):
    program = (f"uprobe:{binary}:ngx_http_create_request /pid == {worker}/ {{ @created = count(); }} "
               f"uprobe:{binary}:ngx_http_free_request /pid == {worker}/ {{ @freed = count(); }}")
    return procinfo.start_bpftrace(program)


def stop_bpftrace(bt):
    out = procinfo.stop_bpftrace(bt)
    return min(int(out.split(f"@{k}:")[1].split()[0]) for k in ("created", "freed"))


def start_exporter():
    return procinfo.start_example(
        exporter, example, work,
        [("object: nginx.bpf.o", f"object: {obj}"), ("binary_name: nginx", f"binary_name: {comm}")],
        'userspace_exporter_attached_binaries{name="nginx"} 1')


def counted(text):
    return int(float(next((l.split()[-1] for l in text.splitlines()
                           if l.startswith("userspace_exporter_nginx_requests_total{")), "0")))


def run(tracer):
    """(ns per request before, with the tracer, after; requests it counted)."""
    master, worker, port = start_nginx()
    try:
        measure(worker, port)  # warm-up
        before = measure(worker, port)
        if tracer == "bpftrace":
            bt = start_bpftrace(worker)
            probed = measure(worker, port)
            count = stop_bpftrace(bt)
        else:
            e, eport = start_exporter()
            first = counted(scrape(eport))
            probed = measure(worker, port)
            count = counted(scrape(eport)) - first
            e.send_signal(signal.SIGTERM)
            e.wait()
        after = measure(worker, port)
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
