"""Idle cost: the exporter with 10 programs attached to one target and no
scrapes; its CPU time (utime + stime) over SECONDS, with the default 1 s /proc
rescan and with the rescan off. Prints one JSON line per setting.
Usage: python3 bench/idle.py EXPORTER TARGET OBJECT
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from procinfo import cpu_seconds, free_port

exporter, target, obj = sys.argv[1:4]
SECONDS = float(os.environ.get("IDLE_SECONDS", "60"))
work = tempfile.mkdtemp()
comm = "uexp-idle"
binary = os.path.join(os.path.dirname(target), comm)
if not os.path.exists(binary):
    subprocess.run(["cp", target, binary], check=True)



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
    e = subprocess.Popen([exporter, "--listen-address", f"127.0.0.1:{free_port()}", "-c", config,
                          "--discovery.interval", interval, "--log-level", "warn"])
    time.sleep(3)  # startup and attach done
    c0, w0 = cpu_seconds(e.pid), time.time()
    time.sleep(SECONDS)
    used, wall = cpu_seconds(e.pid) - c0, time.time() - w0
    e.send_signal(signal.SIGTERM)
    e.wait()
    print(json.dumps({"interval": interval, "seconds": round(wall, 1), "cpu_s": round(used, 3),
                      "cpu_percent": round(100 * used / wall, 3)}), flush=True)
t.kill()
