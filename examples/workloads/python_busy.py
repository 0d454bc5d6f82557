"""A small CPython workload for the examples: cyclic garbage, collections and imports."""
import gc
import time

while True:
    junk = []
    for _ in range(5000):
        cycle = []
        cycle.append(cycle)
        junk.append(cycle)
    del junk
    for name in ("json", "os", "re"):
        __import__(name)
    gc.collect(0)
    time.sleep(0.2)
