#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The proof that the gates can fail, inside the VM: each module built by
# mk/inject.sh carries one deliberate bug (mk/inject/NAME.patch). Each is
# loaded in turn, driven the way that meets its bug, and unloaded; the kernel
# log of each case (and kmemleak's report, and the QEMU case's output) is
# saved as $RESULTS/gate-NAME.*, which mk/gate-check.sh reads on the host.
#
# lockdep stops checking after its first report, and after any report that
# taints the kernel (KASAN's does), so the lock order case comes before the
# use after free.
. "$RUSTMIG_REPO/mk/guest-lib.sh"

C=$RUSTMIG_BDF_C D=$RUSTMIG_BDF_D
KMEMLEAK=/sys/kernel/debug/kmemleak

gate_case() { # NAME
	name=$1
	ko=$RUSTMIG_INJECT/$name/rustmig_vfio_pci.ko
	echo "== gate: $name ($ko)"
	dmesg -C
	echo "rustmig gate: $name" > /dev/kmsg
	if ! insmod "$ko"; then
		echo "== gate: $name: insmod failed" | tee "$RESULTS/gate-$name.log"
		dmesg > "$RESULTS/gate-$name.dmesg"
		return 1
	fi
	"gate_$(echo "$name" | tr - _)" > "$RESULTS/gate-$name.log" 2>&1
	sed 's/^/   /' "$RESULTS/gate-$name.log"
	for bdf in "$C" "$D"; do
		[ "$(pci_driver "$bdf")" = "$RUSTMIG_DRV" ] && pci_unbind "$bdf"
	done
	[ -d /sys/module/rustmig_vfio_pci ] && rmmod rustmig_vfio_pci
	dmesg > "$RESULTS/gate-$name.dmesg"
}

# QEMU migrates a guest with ivshmem C to a QEMU with ivshmem D.
gate_resume_eio() {
	pci_bind "$C" "$RUSTMIG_DRV" && pci_bind "$D" "$RUSTMIG_DRV" || return 1
	mkdir -p "$RESULTS/gate-resume-eio"
	/usr/bin/python3 "$RUSTMIG_REPO/mk/qemu-migrate.py" "$RESULTS/gate-resume-eio" plain
}

# Probe runs as C binds.
gate_use_after_free() {
	pci_bind "$C" "$RUSTMIG_DRV"
}

# Probe runs as C, D, then C again bind, each in a process of its own: a
# probe's pointers stay behind in the unused depth of the kernel stack of the
# process that bound the device, which kmemleak scans as long as the process
# lives (this shell's lives until the end), so a subshell binds and exits.
# As in make check, kmemleak scans after rmmod.
gate_leak() {
	# The objects gate-check.sh counts: those of Expect-kmemleak, Expect-count of them.
	expect=$(sed -n 's/^Expect-kmemleak: //p' "$RUSTMIG_REPO/mk/inject/leak.patch")
	want=$(sed -n 's/^Expect-count: //p' "$RUSTMIG_REPO/mk/inject/leak.patch")
	( echo clear > "$KMEMLEAK" )
	for bdf in "$C" "$D" "$C"; do
		( pci_bind "$bdf" "$RUSTMIG_DRV" && pci_unbind "$bdf" ) || return 1
	done
	rmmod rustmig_vfio_pci || return 1
	# An object is reported once it is older than 5 s and scans a few
	# seconds apart found it unreferenced (as guest-init's final scan does).
	# Stale copies of the pointers elsewhere (the CPUs' interrupt stacks) may
	# keep some referenced until other work writes over them: work on both
	# CPUs between the scans, for up to 2 minutes (kmemleak_scan: guest-lib).
	for i in $(seq 1 15); do
		for cpu in 0 1; do
			taskset -c "$cpu" sh -c 'ls -R /sys/bus/pci > /dev/null; cat /proc/self/status > /dev/null'
		done
		sleep 6
		kmemleak_scan
		cat "$KMEMLEAK" > "$RESULTS/gate-leak.kmemleak"
		found=$(grep -cE "$expect" "$RESULTS/gate-leak.kmemleak")
		[ "$found" -ge "$want" ] && break
	done
	echo "kmemleak: scanned $i time(s)"
	echo "kmemleak: $found object(s) of the $want leaked"
	# What the gate check shows if kmemleak missed some: was it still on?
	[ "$found" -ge "$want" ] || {
		dmesg | grep -i kmemleak | tail -n 5
		grep -E 'Slab|SUnreclaim' /proc/meminfo
	}
	echo clear > "$KMEMLEAK"
}

# The round trip C -> D, whose test compares D's memory with C's.
gate_short_load() {
	pci_bind "$C" "$RUSTMIG_DRV" && pci_bind "$D" "$RUSTMIG_DRV" || return 1
	VFIO_MIGRATION_TEST_FLAGS=7 VFIO_MIGRATION_TEST_STREAM=rustmig VFIO_MIGRATION_TEST_PEER=$D \
		VFIO_MIGRATION_TEST_BAR=2 "$RUSTMIG_TESTS/vfio_pci_migration_test" \
		-t round_trip_to_peer_is_bit_exact "$C" > "$RESULTS/gate-short-load.tap" 2>&1
	cat "$RESULTS/gate-short-load.tap"
}

# A saving session, read and measured (MIG_DATA_SIZE) in every saving state.
gate_lock_order() {
	pci_bind "$C" "$RUSTMIG_DRV" || return 1
	VFIO_MIGRATION_TEST_FLAGS=7 VFIO_MIGRATION_TEST_STREAM=rustmig VFIO_MIGRATION_TEST_DMA_LOG=clean \
		"$RUSTMIG_TESTS/vfio_pci_migration_test" -t data_size_is_exact_in_every_saving_state \
		-t dma_logging_follows_the_uapi_rules "$C"
}

for name in resume-eio short-load lock-order leak use-after-free; do
	gate_case "$name"
done
exit 0
