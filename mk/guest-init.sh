#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# PID 1 of the rustmig test VM (the host root, read-only over 9p). Mounts the
# basics and the output share, runs the mode's work, saves dmesg and the
# kmemleak report to the output share, and powers off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/tmp LANG=C

mount -t proc proc /proc
mount -t sysfs sys /sys
mountpoint -q /dev || mount -t devtmpfs dev /dev
mount -t tmpfs run /run
# The host's /tmp, kept reachable under the guest's own: a repository or a
# cache under /tmp (a clone there) is bound back to its path below.
mkdir -p /run/hosttmp && mount --bind /tmp /run/hosttmp
mount -t tmpfs tmp /tmp
mount -t debugfs debugfs /sys/kernel/debug
mkdir -p /dev/hugepages && mount -t hugetlbfs hugetlbfs /dev/hugepages
mkdir -p /tmp/out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 rustmigout /tmp/out
# Loopback, for the QEMU migrations inside the VM.
ip link set lo up

# Programs of the 9p root cannot run once the power-off has begun (init would
# exit, and panic): wait on a FIFO that no one opens, in the shell itself.
poweroff_now() {
	sync
	mkfifo /tmp/poweroff.wait
	echo o > /proc/sysrq-trigger
	read -r _ < /tmp/poweroff.wait
}

if [ ! -f /tmp/out/env.sh ]; then
	echo "guest-init: output share missing" >&2
	poweroff_now
fi
. /tmp/out/env.sh
for p in "$RUSTMIG_REPO" "$RUSTMIG_OBJ" "$RUSTMIG_TESTS" "$RUSTMIG_INJECT"; do
	case "$p" in
	/tmp/?*) mkdir -p "$p" && mount --bind "/run/hosttmp/${p#/tmp/}" "$p" ;;
	esac
done
# The other test host's output directory (mk/vm.sh), uncached, over its path
# in the root.
if [ -n "${RUSTMIG_XHOST_PEER_OUT:-}" ]; then
	peer_dir=$(dirname "$RUSTMIG_XHOST_PEER_OUT")
	mkdir -p "$peer_dir"
	mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,ro rustmigpeer "$peer_dir"
fi
# The device behind each root port (mk/devices): RUSTMIG_BDF_NAME.
below() { for d in /sys/bus/pci/devices/"$1"/0000:*; do [ -e "$d" ] && basename "$d" && return; done; }
for name in $RUSTMIG_DEVICES; do
	eval "RUSTMIG_BDF_$name=\$(below \"\$RUSTMIG_PORT_$name\")"
	export "RUSTMIG_BDF_$name"
done
export RUSTMIG_MODE RUSTMIG_REPO RUSTMIG_OBJ RUSTMIG_TESTS RUSTMIG_DEVICES RUSTMIG_IVSHMEM_MB \
	RUSTMIG_INJECT RUSTMIG_EARLY RUSTMIG_TRY RUSTMIG_REPRO_MINUTES RUSTMIG_QEMU_11 RUSTMIG_TOOL \
	RUSTMIG_XHOST RUSTMIG_XHOST_ADDR RUSTMIG_XHOST_PEER RUSTMIG_XHOST_PEER_OUT RUSTMIG_XHOST_LINK \
	RUSTMIG_XHOST_CASES RUSTMIG_VM_CPUS
export RUSTMIG_OUT=/tmp/out

# A heartbeat for the host's progress watchdog (mk/vm.sh): it stops when the
# guest can no longer run programs from its 9p root or write its output share.
( while sleep 10; do cat /proc/uptime > /tmp/out/heartbeat; done ) &
heartbeat=$!

echo "guest-init: kernel $(uname -r), mode $RUSTMIG_MODE, $(nproc) CPUs; devices" \
	"$(for name in $RUSTMIG_DEVICES; do eval "printf '%s=%s ' $name \$RUSTMIG_BDF_$name"; done)"
cd /tmp
case "$RUSTMIG_MODE" in
shell)
	setsid sh -c 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1'
	result=ok
	;;
*)
	if sh "$RUSTMIG_REPO/mk/guest-$RUSTMIG_MODE.sh"; then result=ok; else result=failed; fi
	;;
esac

# The kernel-log gate (mk/kgate.sh) reads these. Scan for leaks first: objects
# must be unreferenced for two scans before kmemleak reports them. Reading the
# report fails once kmemleak has turned itself off: the gate then fails too.
kill "$heartbeat" 2>/dev/null
rm -f /tmp/out/kmemleak.txt
# The scans run in processes that exit, after the stacks kept for forks are
# taken (kmemleak_scan in guest-lib.sh): no stale pointer, in init's stack or
# a kept one, hides a leak.
. "$RUSTMIG_REPO/mk/guest-lib.sh"
if [ -w /sys/kernel/debug/kmemleak ] && kmemleak_scan; then
	sleep 6
	kmemleak_scan &&
		cat /sys/kernel/debug/kmemleak > /tmp/out/kmemleak.tmp &&
		mv /tmp/out/kmemleak.tmp /tmp/out/kmemleak.txt
fi
# The detectors still on at the end: lockdep turns itself off after a report
# or a taint (debug_locks 0); any taint beyond the expected ones fails.
cat /proc/sys/kernel/tainted > /tmp/out/tainted.txt
grep -E 'debug_locks' /proc/lockdep_stats > /tmp/out/lockdep.txt 2>&1
# The last line of the log: the gate requires it, so a log cut short fails.
echo "rustmig-gate: end of run, tainted $(cat /proc/sys/kernel/tainted)" > /dev/kmsg
dmesg > /tmp/out/dmesg.txt
echo "$result" > /tmp/out/done
poweroff_now
