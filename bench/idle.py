"""Idle cost: the exporter with 10 programs attached to one target and no
scrapes; its CPU time (utime + stime) over SECONDS, with the default 1 s /proc
rescan and with the rescan off. Prints one JSON line per setting.
Usage: python3 bench/idle.py EXPORTER TARGET OBJECT
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

exporter, target, obj = sys.argv[1:4]
SECONDS = float(os.environ.get("IDLE_SECONDS", "60"))
TICK = os.sysconf("SC_CLK_TCK")
work = tempfile.mkdtemp()
comm = "uexp-idle"
binary = os.path.join(os.path.dirname(target), comm)
if not os.path.exists(binary):
    subprocess.run(["cp", target, binary], check=True)


def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


programs = "".join(f"""  - name: idle{i}
    object: {obj}
    metrics:
      counters:
        - name: idle{i}_hits_total
          help: hits
          table: hits
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    usdt:
      fixture:hit: on_hit
    attachment: {{binary_name: {comm}}}
""" for i in range(10))
config = os.path.join(work, "config.yaml")
open(config, "w").write("programs:\n" + programs)
t = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
assert t.stdout.readline().strip() == "ready"
for interval in ("1s", "0"):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    e = subprocess.Popen([exporter, "--listen-address", f"127.0.0.1:{port}", "-c", config,
                          "--discovery.interval", interval, "--log-level", "warn"])
    time.sleep(3)  # startup and attach done
    c0, w0 = cpu(e.pid), time.time()
    time.sleep(SECONDS)
    used, wall = cpu(e.pid) - c0, time.time() - w0
    e.send_signal(signal.SIGTERM)
    e.wait()
    print(json.dumps({"interval": interval, "seconds": round(wall, 1), "cpu_s": round(used, 3),
                      "cpu_percent": round(100 * used / wall, 3)}), flush=True)
t.kill()
