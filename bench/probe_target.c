/* The traced process of the probe-cost benchmark. Prints "ready", waits for a
 * line on stdin, then hits one probe N times, prints the nanoseconds per hit
 * (the loop's own cost included; the benchmark subtracts the no-probe run),
 * and exits at the next line (so its counts can be read while it lives).
 *
 *   probe_target usdt|uprobe|uretprobe N
 *   probe_target keys N     fire USDT bench:key(i) for i in 0..N (fills a map
 *                           with N keys for the scrape-cost benchmark)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/sdt.h>

__attribute__((noinline)) long bench_call(long x) {
    __asm__ volatile("" ::: "memory");
    return x + 1;
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    const char *kind = argv[1];
    long n = atol(argv[2]), sum = 0;
    char line[16];
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    if (!fgets(line, sizeof line, stdin))
        return 1;
    double start = now_ns();
    if (!strcmp(kind, "keys")) {
        for (long i = 0; i < n; i++)
            DTRACE_PROBE1(bench, key, i);
    } else if (!strcmp(kind, "usdt")) {
        for (long i = 0; i < n; i++)
            DTRACE_PROBE1(bench, hit, i);
    } else {
        for (long i = 0; i < n; i++)
            sum += bench_call(i);
    }
    double elapsed = now_ns() - start;
    printf("%.2f %ld\n", elapsed / n, sum);
    fgets(line, sizeof line, stdin);
    return 0;
}
