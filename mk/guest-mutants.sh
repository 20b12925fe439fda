#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# `make mutants` inside the VM: each mutant module of $RUSTMIG_INJECT/list
# (built by mk/mutants.py) is loaded in place of rustmig, bound to ivshmem C
# and D and the two edus, and run against the fast suite; the first failure
# kills it. The verdict goes to $RESULTS/mutant-NAME.txt as soon as it is
# known, so a mutant that brings the VM down leaves the others' verdicts (the
# host then boots a VM for the rest). A mutant already decided is skipped.
. "$RUSTMIG_REPO/mk/guest-lib.sh"

A=$RUSTMIG_BDF_A C=$RUSTMIG_BDF_C D=$RUSTMIG_BDF_D EDU=$RUSTMIG_BDF_EDU EDU2=$RUSTMIG_BDF_EDU2
T=$RUSTMIG_TESTS
. "$RUSTMIG_REPO/mk/report-re.sh"

# The fast suite, in the order that kills most mutants soonest: NAME CMD...
suite() {
	export VFIO_MIGRATION_TEST_FLAGS=7 VFIO_MIGRATION_TEST_FENCE=1 VFIO_MIGRATION_TEST_STREAM=rustmig
	VFIO_MIGRATION_TEST_PEER=$D VFIO_MIGRATION_TEST_BAR=2 VFIO_MIGRATION_TEST_DMA_LOG=clean \
		step migration.ivshmem-c "$T/vfio_pci_migration_test" \
		-T storm_of_transitions_io_queries_and_resets "$C" || return
	VFIO_MIGRATION_TEST_PEER=$EDU2 VFIO_MIGRATION_TEST_DMA_LOG=edu \
		step migration.edu "$T/vfio_pci_migration_test" \
		-T storm_of_transitions_io_queries_and_resets "$EDU" || return
	VFIO_MIGRATION_TEST_BAR=2 VFIO_MIGRATION_TEST_FOREIGN=$EDU VFIO_MIGRATION_STREAMS=1200 \
		step stream.ivshmem-c "$T/vfio_pci_migration_stream_test" "$C" || return
	VFIO_MIGRATION_TEST_FOREIGN=$C VFIO_MIGRATION_STREAMS=600 \
		step stream.edu "$T/vfio_pci_migration_stream_test" "$EDU" || return
	VFIO_MIGRATION_TEST_DRIVER=$RUSTMIG_DRV \
		step lifecycle.ivshmem-c "$T/vfio_pci_migration_lifecycle_test" "$C" || return
	# debugfs counts the arcs: RUNNING -> STOP -> RUNNING is four (through RUNNING_P2P).
	f=/sys/kernel/debug/vfio/$C/migration/rustmig
	arcs=$(sed -n 's/^transitions: //p' "$f")
	VFIO_MIGRATION_TEST_ROUND_TRIPS=3 step arcs.ivshmem-c "$T/vfio_pci_migration_test" \
		-t stop_and_run_round_trips "$C" || return
	now=$(sed -n 's/^transitions: //p' "$f")
	[ "$now" = $((arcs + 12)) ] ||
		{ verdict="killed by arcs.ivshmem-c: debugfs transitions $arcs -> $now, not +12"; return 1; }
	VFIO_MIGRATION_TEST_PEER=$D VFIO_MIGRATION_TEST_BAR=2 VFIO_MIGRATION_TEST_DMA_LOG=clean \
		step storm.ivshmem-c "$T/vfio_pci_migration_test" \
		-t storm_of_transitions_io_queries_and_resets "$C" || return
}

# step NAME CMD...: one program of the suite; a failing case kills the mutant.
step() {
	name=$1
	shift
	"$@" > "$RESULTS/mutant-$m.$name.tap" 2>&1
	rc=$?
	failed=$(grep -m1 '^not ok' "$RESULTS/mutant-$m.$name.tap" | sed 's/^not ok [0-9]* //')
	if [ -n "$failed" ] || { [ "$rc" != 0 ] && [ "$rc" != 4 ]; }; then
		verdict="killed by $name: ${failed:-exit $rc}"
		return 1
	fi
	reports && return 1
	return 0
}

# A kernel report since the mutant was loaded kills it too.
reports() {
	line=$(dmesg | sed -n "/rustmig-mutant: $m starts/,\$p" | grep -m1 -E "$RUSTMIG_REPORT_RE")
	[ -n "$line" ] || return 1
	verdict="killed by a kernel report: $(echo "$line" | sed 's/^\[[^]]*\] //' | cut -c1-100)"
}

for m in $(cat "$RUSTMIG_INJECT/list"); do
	[ -s "$RESULTS/mutant-$m.txt" ] && continue
	echo "== mutant $m"
	echo "rustmig-mutant: $m starts" > /dev/kmsg
	# Not decided yet: a VM that dies here leaves this.
	echo "killed by the kernel: it died or hung while the mutant ran (see the console)" > "$RESULTS/mutant-$m.txt.tmp"
	sync
	verdict=
	if ! insmod "$RUSTMIG_INJECT/$m/rustmig_vfio_pci.ko"; then
		verdict="killed by insmod: the module does not load"
	fi
	# Its KUnit suites ran as it loaded.
	if [ -z "$verdict" ]; then
		for r in /sys/kernel/debug/kunit/rustmig_*/results /sys/kernel/debug/kunit/vfio_migration_*/results; do
			[ -f "$r" ] || continue
			if grep -q '^    not ok' "$r"; then
				verdict="killed by KUnit $(basename "$(dirname "$r")"): $(grep -m1 '^    not ok' "$r" | sed 's/^ *not ok [0-9]* //')"
				break
			fi
		done
	fi
	if [ -z "$verdict" ]; then
		for bdf in "$C" "$D" "$EDU" "$EDU2"; do
			pci_bind "$bdf" "$RUSTMIG_DRV" > /dev/null || verdict="killed by probe: $bdf does not bind"
		done
	fi
	if [ -z "$verdict" ]; then
		suite
	fi
	[ -z "$verdict" ] && ! reports && verdict="survived"
	for bdf in "$C" "$D" "$EDU" "$EDU2"; do
		[ "$(pci_driver "$bdf")" = "$RUSTMIG_DRV" ] && pci_unbind "$bdf"
	done
	rmmod rustmig_vfio_pci 2>/dev/null
	echo "$verdict" > "$RESULTS/mutant-$m.txt"
	rm -f "$RESULTS/mutant-$m.txt.tmp"
	echo "   $m: $verdict"
	if [ -d /sys/module/rustmig_vfio_pci ]; then
		echo "== mutants: $m cannot be unloaded; the rest need a new VM"
		exit 1
	fi
done
exit 0
