# SPDX-License-Identifier: GPL-2.0
# Shell helpers for the rustmig guest scripts (sourced).

RUSTMIG_DRV=rustmig_vfio_pci
RUSTMIG_KO=$RUSTMIG_OBJ/drivers/vfio/pci/rustmig/rustmig_vfio_pci.ko
RESULTS=$RUSTMIG_OUT/results
TAP=$RESULTS/guest.tap
tap_n=0

# kmemleak reads every kernel stack, the stacks of exited processes that each
# CPU keeps for the next fork too (two a CPU), and a process keeps the
# pointers of its deep calls in the unused depth of its stack: a probe's, or
# those a scan read. kmemleak_scan: scans from processes that exit, after
# forks on every CPU that take (and clear) the kept stacks, so no stale copy
# hides a leak.
flush_kept_stacks() {
	for cpu in $(seq 0 $(($(nproc) - 1))); do
		# Four at once: no exit gives a stack back between the forks.
		taskset -c "$cpu" sh -c 'for i in 1 2 3 4; do sleep 1 & done; wait'
	done
}

kmemleak_scan() {
	flush_kept_stacks
	( echo scan > /sys/kernel/debug/kmemleak )
}

# TAP for the checks made by the shell scripts themselves.
tap_ok() {
	tap_n=$((tap_n + 1))
	echo "ok $tap_n $1" | tee -a "$TAP"
}
tap_fail() {
	tap_n=$((tap_n + 1))
	echo "not ok $tap_n $1" | tee -a "$TAP"
	shift
	for l in "$@"; do echo "# $l" | tee -a "$TAP"; done
}
tap_check() { # NAME CMD...
	name=$1
	shift
	if out=$("$@" 2>&1); then tap_ok "$name"; else tap_fail "$name" "command: $*" "$out"; fi
}
tap_end() {
	echo "1..$tap_n" >> "$TAP"
}

pci_driver() { # BDF -> bound driver name or "none"
	if [ -e "/sys/bus/pci/devices/$1/driver" ]; then
		basename "$(readlink "/sys/bus/pci/devices/$1/driver")"
	else
		echo none
	fi
}

pci_id() { # BDF -> vvvv:dddd
	d=/sys/bus/pci/devices/$1
	echo "$(sed 's/^0x//' "$d/vendor"):$(sed 's/^0x//' "$d/device")"
}

# Bind BDF to DRIVER through driver_override, as management tools do.
pci_bind() { # BDF DRIVER
	d=/sys/bus/pci/devices/$1
	[ -e "$d" ] || { echo "no PCI device $1"; return 1; }
	if [ -e "$d/driver" ]; then
		echo "$1" > "$d/driver/unbind" || return 1
	fi
	echo "$2" > "$d/driver_override" || return 1
	echo "$1" > /sys/bus/pci/drivers_probe 2>/dev/null
	got=$(pci_driver "$1")
	[ "$got" = "$2" ] || { echo "$1 ($(pci_id "$1")) bound to '$got', wanted '$2'"; return 1; }
}

pci_unbind() { # BDF
	d=/sys/bus/pci/devices/$1
	[ -e "$d/driver" ] && echo "$1" > "$d/driver/unbind"
	echo > "$d/driver_override"
}

vfio_cdev() { # BDF -> /dev/vfio/devices/vfioN
	for c in /sys/bus/pci/devices/$1/vfio-dev/vfio*; do
		[ -e "$c" ] && echo "/dev/vfio/devices/$(basename "$c")" && return 0
	done
	return 1
}

load_rustmig() {
	[ -d /sys/module/rustmig_vfio_pci ] && return 0
	insmod "$RUSTMIG_KO"
}

# run_test NAME CMD...: a kselftest program, its TAP kept and echoed.
run_test() {
	name=$1
	shift
	echo "== test $name: $*"
	# The kernel log says which test each of its lines came from.
	echo "rustmig-test: $name starts" > /dev/kmsg
	"$@" > "$RESULTS/$name.tap" 2>&1
	rc=$?
	echo "$rc" > "$RESULTS/$name.rc"
	sed 's/^/   /' "$RESULTS/$name.tap"
	echo "== test $name: exit $rc"
	stuck_tasks "$1"
}

# A test program whose processes outlive it (the harness gave up on a case
# stuck in the kernel): show where they are, for the log.
stuck_tasks() { # PROGRAM
	pids=$(pgrep -f "$(basename "$1")")
	[ -n "$pids" ] || return 0
	echo "== stuck: $(basename "$1") still has processes: $pids"
	for p in $pids; do
		echo "-- $p: $(cat /proc/"$p"/comm) state $(sed -n 's/^State:\t//p' /proc/"$p"/status)"
		cat /proc/"$p"/stack 2>/dev/null
	done
	echo l > /proc/sysrq-trigger
	echo w > /proc/sysrq-trigger
}

# meet_early_bug NAME: the driver with the bug of mk/inject/NAME.patch binds
# C, unbinds and unloads: its report comes before the tests that follow.
meet_early_bug() {
	echo "== early: the bug of mk/inject/$1.patch, before every test"
	insmod "$RUSTMIG_INJECT/$1/rustmig_vfio_pci.ko" &&
		pci_bind "$RUSTMIG_BDF_C" "$RUSTMIG_DRV"
	pci_unbind "$RUSTMIG_BDF_C"
	rmmod rustmig_vfio_pci
}
