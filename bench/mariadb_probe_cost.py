"""Cost per hit of the MariaDB example's probes (examples/mariadb.yaml: a
uprobe on dispatch_command, a uprobe and a uretprobe on
mysql_execute_command, all three hit once per simple statement), against
bpftrace doing the same work on the same probes.

A private server (a copy of Debian's mariadbd, a datadir from
mariadb-install-db, a unix socket, no TCP, one thread per connection) runs N
`DO 1` statements per run from one `mariadb` client session, each its own
COM_QUERY, then a marker SELECT that tells the client when they are done;
the session's server thread's on-CPU time (ns from /proc/TID/schedstat: a
uprobe's trap and its BPF program run on the traced thread) per statement is
measured. As bench/nginx_probe_cost.py: paired within one server and one
session, after a warm-up, each phase the median of three runs: statements
before the tracer attaches, with it, and after it detached; the probes' cost
is the middle phase minus the mean of the other two, over its three hits per
statement. The tracers: the exporter running the example (a counter by
command, the nesting depth and start time by thread in an LRU hash, an exp2
duration histogram with a sum), and bpftrace doing the same (count() by
command, depth and start time by thread in two maps, hist() of the outermost
call's duration). Tracers are interleaved in every repetition; every run's
commands and statements are checked against both counts. Prints one JSON line
per condition with every sample.
Usage: python3 bench/mariadb_probe_cost.py EXPORTER MARIADB_OBJECT
"""
import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import procinfo
from procinfo import cpu_ns, hist_total, scrape

exporter, obj = sys.argv[1:3]
N = int(os.environ.get("MARIADB_QUERIES", "20000"))
REPS = int(os.environ.get("REPS", "5"))
# dispatch_command, and mysql_execute_command's entry and return.
HITS = 3
DISPATCH = "_Z16dispatch_command19enum_server_commandP3THDPcjb"
EXECUTE = "_Z21mysql_execute_commandP3THDb"
# What an idle connection thread waits for its next command in (x86_64 poll:
# the server polls the socket before each read, net_read_timeout being set).
POLL = "7 "
work = tempfile.mkdtemp()
atexit.register(shutil.rmtree, work, True)
comm = "uexp-mdbcost"
binary = os.path.join(work, comm)
shutil.copy("/usr/sbin/mariadbd", binary)
example = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "mariadb.yaml")
data = os.path.join(work, "data")
sock = os.path.join(work, "mysqld.sock")
CLIENT = ["mariadb", "--no-defaults", "-u", "root", "-S", sock]
# One datadir for every server: a server is shut down cleanly at each run's end.
subprocess.run(["mariadb-install-db", "--no-defaults", "--user=root", "--skip-test-db", f"--datadir={data}"],
               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_server():
    server = subprocess.Popen(
        [binary, "--no-defaults", "--user=root", "--basedir=/usr", f"--datadir={data}", f"--socket={sock}",
         f"--pid-file={work}/mysqld.pid", f"--log-error={work}/error.log", "--skip-networking",
         "--skip-log-bin", "--innodb-buffer-pool-size=16M"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while subprocess.run(CLIENT + ["-e", "DO 1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode:
        assert server.poll() is None and time.time() < deadline, \
            f"mariadbd did not start: {open(f'{work}/error.log').read()}"
        time.sleep(0.1)
    return server


def stop_server(server):
    server.terminate()
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


class Session:
    """One `mariadb` client session (statements on stdin, one COM_QUERY each;
    rows out, flushed after each statement) and its server thread."""

    def __init__(self):
        self.client = subprocess.Popen(CLIENT + ["-n", "--batch", "--skip-column-names"],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.marks = 0
        self.tid = int(self.answer("SELECT TID FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()"))

    def answer(self, statement):
        """Sends `statement`; its one-line answer."""
        self.client.stdin.write(statement + ";\n")
        self.client.stdin.flush()
        line = self.client.stdout.readline()
        assert line, "the mariadb client ended"
        return line.strip()

    def wait_idle(self):
        """Returns once the server thread waits for the next command: the
        probes of the statements before have all returned."""
        deadline = time.time() + 10
        while not open(f"/proc/{self.tid}/syscall").read().startswith(POLL):
            assert time.time() < deadline, f"server thread {self.tid} did not go back to waiting for a command"
            time.sleep(0.001)

    def statements(self, n):
        """n `DO 1`s, then a marker SELECT (n + 1 statements)."""
        self.marks += 1
        self.client.stdin.write("DO 1;\n" * n)
        assert self.answer(f"SELECT 'mark-{self.marks}'") == f"mark-{self.marks}"
        self.wait_idle()

    def close(self):
        self.client.stdin.close()
        self.client.wait()


def measure(session):
    """Server thread CPU ns per statement: the median of three runs."""
    runs = []
    for _ in range(3):
        t0 = cpu_ns(session.tid)
        session.statements(N)
        runs.append((cpu_ns(session.tid) - t0) / (N + 1))
    return sorted(runs)[1]


def start_bpftrace(pid):
    # The same work as mariadb.bpf.c: a count by command byte; the outermost
    # mysql_execute_command of a thread timed, inner ones only counted in
    # its depth.
    program = f"""
uprobe:{binary}:{DISPATCH} /pid == {pid}/ {{ @commands[arg0 & 0xff] = count(); }}
uprobe:{binary}:{EXECUTE} /pid == {pid}/ {{
  if (@depth[tid] > 0) {{ @depth[tid] = @depth[tid] + 1; }} else {{ @depth[tid] = 1; @started[tid] = nsecs; }}
}}
uretprobe:{binary}:{EXECUTE} /pid == {pid} && @depth[tid] > 0/ {{
  @depth[tid] = @depth[tid] - 1;
  if (@depth[tid] == 0) {{ @statements = hist(nsecs - @started[tid]); }}
}}
"""
    return procinfo.start_bpftrace(program)


def stop_bpftrace(bt):
    out = procinfo.stop_bpftrace(bt)
    queries = re.search(r"^@commands\[3\]: (\d+)", out, re.M)
    return {"COM_QUERY": int(queries.group(1)) if queries else 0, "statements": hist_total(out, "statements")}


def start_exporter():
    return procinfo.start_example(
        exporter, example, work,
        [("object: mariadb.bpf.o", f"object: {obj}"), ("binary_name: mariadbd", f"binary_name: {comm}")],
        'userspace_exporter_attached_processes{name="mariadb"} 1')


def exporter_counts(text):
    def value(prefix, label):
        return sum(int(float(l.split()[-1])) for l in text.splitlines() if l.startswith(prefix) and label in l)
    return {"COM_QUERY": value("userspace_exporter_mariadb_commands_total{", 'command="COM_QUERY"'),
            "statements": value("userspace_exporter_mariadb_statement_duration_seconds_count{", "")}


def run(tracer):
    """(ns per statement before, with the tracer, after; what it counted)."""
    server = start_server()
    try:
        session = Session()
        measure(session)  # warm-up
        before = measure(session)
        if tracer == "bpftrace":
            bt = start_bpftrace(server.pid)
            probed = measure(session)
            counted = stop_bpftrace(bt)
        else:
            e, port = start_exporter()
            first = exporter_counts(scrape(port))
            probed = measure(session)
            last = exporter_counts(scrape(port))
            counted = {k: last[k] - first[k] for k in last}
            e.send_signal(signal.SIGTERM)
            e.wait()
        after = measure(session)
        session.close()
        return before, probed, after, counted
    finally:
        stop_server(server)


def check(tracer, counted):
    # Three runs of N statements and a marker, each its own COM_QUERY.
    expected = 3 * (N + 1)
    assert counted == {"COM_QUERY": expected, "statements": expected}, \
        f"{tracer}: counted {counted}, expected {expected} of each"


samples, costs = procinfo.compare_tracers(run, REPS, check)
for condition, values in samples.items():
    per_hit = [cost / HITS for cost in costs[condition]] if condition in costs else None
    print(json.dumps({"condition": condition, "statements": N, "hits_per_statement": HITS,
                      "ns_per_statement": values, "cost_ns_per_hit": per_hit}), flush=True)
