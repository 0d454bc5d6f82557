"""The target of bench/python_probe_cost.py, run by a CPython 3.11 built from
source (pyenv's: shared libpython, .symtab kept). Reads a command per line on
stdin, runs N operations of that kind and prints the process's CPU time (user
+ system, clock_gettime(CLOCK_PROCESS_CPUTIME_ID): a uprobe's trap is system
time of the traced thread) and the wall time per operation in ns:
  gil     os.read(fd, 1) of /dev/zero: a blocking call that releases the GIL
          and takes it back, one PyEval_RestoreThread;
  import  `import os` of a module already imported: one (outermost)
          PyImport_ImportModuleLevelObject;
  gc      gc.collect(0): one collection, two calls of invoke_gc_callback
          (its start and its stop).
Automatic collections are off, so the only collections are the ones asked
for. Outside the loops, each command costs exactly two blocking calls (the
read of the command line, the write of the answer) and no import or
collection, so the script can check a tracer's count exactly. `exit` ends.
argv[1] is N, argv[2] a marker that makes the command line unique.
"""
import gc
import os
import sys
import time

n = int(sys.argv[1])
zero = os.open("/dev/zero", os.O_RDONLY)


def blocking_calls():
    read = os.read
    for _ in range(n):
        read(zero, 1)


def imports():
    for _ in range(n):
        import os  # noqa: F401 (the statement is the operation measured)


def collections():
    collect = gc.collect
    for _ in range(n):
        collect(0)


work = {"gil": blocking_calls, "import": imports, "gc": collections}
gc.disable()
sys.stdout.write("ready\n")
sys.stdout.flush()
for line in sys.stdin:
    command = line.strip()
    if command == "exit":
        break
    cpu0, wall0 = time.process_time_ns(), time.perf_counter_ns()
    work[command]()
    cpu, wall = time.process_time_ns() - cpu0, time.perf_counter_ns() - wall0
    sys.stdout.write(f"{cpu / n} {wall / n}\n")
    sys.stdout.flush()
