#!/bin/bash
# PID 1 of a kernel-matrix guest (scripts/kernel-matrix.sh puts it in the
# initramfs as /init). The initramfs is the whole root: busybox, bash, the
# exporter's shared libraries, the exporter and the fixtures in /smoke. The
# kernel needs no module: everything used is built into Debian's kernels.
# Prints BOOTED, the suite's RESULT and TIME lines and DONE on the console,
# then powers the machine off (QEMU runs with -no-reboot).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# bash's process substitution reads /dev/fd; devtmpfs has no such links.
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
ip link set lo up
printf 'BOOTED\t%s\t%s\n' "$(cut -d' ' -f1 /proc/uptime)" "$(uname -r)"
# The smoke suite's own arguments come from the kernel command line
# (smoke=feature,feature), all features by default.
features=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^smoke=//p' | tr ',' ' ')
# shellcheck disable=SC2086 # one word per feature
bash /smoke/smoke.sh /smoke $features
printf 'DONE\t%s\n' "$(cut -d' ' -f1 /proc/uptime)"
echo o >/proc/sysrq-trigger
sleep 30
