// The target of bench/node_probe_cost.py: waits for `go` on stdin, runs N
// young-generation collections (gc({type: 'minor'}), run with --expose-gc),
// prints the process's CPU time (user + system, all threads: a uprobe's trap
// is the process's system time) and the wall time per collection in ns, and
// exits on `exit`. argv[2] is N, argv[3] a marker that makes its command
// line unique. CPU time, not wall time: on a shared machine the wall time of
// a collection varies with the other processes' load more than a probe costs.
'use strict';
const readline = require('readline');
const n = Number(process.argv[2]);
const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line === 'go') {
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) global.gc({ type: 'minor' });
    const wall = Number(process.hrtime.bigint() - t0) / n;
    const cpu = process.cpuUsage(cpu0);
    process.stdout.write(`${((cpu.user + cpu.system) * 1e3) / n} ${wall}\n`);
  } else if (line === 'exit') {
    process.exit(0);
  }
});
process.stdout.write('ready\n');
