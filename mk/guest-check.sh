#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# `make check` inside the VM: every test, each writing TAP into
# $RUSTMIG_OUT/results/NAME.tap (and its exit status into NAME.rc).
. "$RUSTMIG_REPO/mk/guest-lib.sh"

A=$RUSTMIG_BDF_A B=$RUSTMIG_BDF_B EDU=$RUSTMIG_BDF_EDU C=$RUSTMIG_BDF_C D=$RUSTMIG_BDF_D
T=$RUSTMIG_TESTS

# run_test NAME CMD...: a kselftest program, its TAP kept and echoed.
run_test() {
	name=$1
	shift
	echo "== test $name: $*"
	"$@" > "$RESULTS/$name.tap" 2>&1
	rc=$?
	echo "$rc" > "$RESULTS/$name.rc"
	sed 's/^/   /' "$RESULTS/$name.tap"
	echo "== test $name: exit $rc"
}

# KUnit suites (the Rust doctests among them at boot, a module's when it
# loads): one TAP file per suite, its test cases as top-level lines.
collect_kunit() {
	for suite in /sys/kernel/debug/kunit/*/; do
		[ -f "$suite/results" ] || continue
		name=$(basename "$suite")
		[ -f "$RESULTS/kunit.$name.tap" ] && continue
		sed -n 's/^    \(\(not \)\?ok [0-9].*\)/\1/p' "$suite/results" > "$RESULTS/kunit.$name.tap"
		echo "== kunit $name: $(grep -c '^ok' "$RESULTS/kunit.$name.tap") ok," \
			"$(grep -c '^not ok' "$RESULTS/kunit.$name.tap") not ok"
		grep -A20 '^    not ok' "$suite/results" | head -n 40
	done
}
collect_kunit
n=$(grep -h '^ok [0-9]* rust_doctest_kernel_vfio' "$RESULTS"/kunit.*.tap 2>/dev/null | wc -l)
tap_check "kernel::vfio doctests ran and passed ($n)" test "$n" -ge 5

# The devices are where the VM runner put them.
for v in A B C D EDU; do
	eval bdf=\$$v
	if [ -z "$bdf" ]; then
		tap_fail "device $v found behind its root port" "lspci-like view:" \
			"$(ls /sys/bus/pci/devices/)"
	fi
done
tap_check "ivshmem A is 1af4:1110" test "$(pci_id "$A")" = 1af4:1110
tap_check "ivshmem B is 1af4:1110" test "$(pci_id "$B")" = 1af4:1110
tap_check "edu is 1234:11e8" test "$(pci_id "$EDU")" = 1234:11e8
tap_check "ivshmem C is 1af4:1110" test "$(pci_id "$C")" = 1af4:1110
tap_check "ivshmem D is 1af4:1110" test "$(pci_id "$D")" = 1af4:1110

tap_check "rustmig_vfio_pci loads" load_rustmig
# Its KUnit suites (state machine, stream) ran as it loaded.
collect_kunit
for suite in rustmig_fsm rustmig_stream; do
	tap_check "KUnit suite $suite ran" test -s "$RESULTS/kunit.$suite.tap"
done
# Override-only ids: loading the module binds nothing by itself.
for bdf in "$A" "$B" "$EDU"; do
	tap_check "$bdf not bound by rustmig without driver_override" \
		test "$(pci_driver "$bdf")" != "$RUSTMIG_DRV"
done

# Reference: the upstream tests on a device bound to vfio-pci.
tap_check "ivshmem B binds to vfio-pci (reference)" pci_bind "$B" vfio-pci
run_test vfio-pci.vfio_pci_device_test "$T/vfio_pci_device_test" "$B"
run_test vfio-pci.vfio_dma_mapping_test "$T/vfio_dma_mapping_test" "$B"
tap_check "ivshmem B unbinds from vfio-pci" pci_unbind "$B"

for bdf in "$A" "$B" "$C" "$D" "$EDU"; do
	tap_check "$bdf ($(pci_id "$bdf")) binds to rustmig through driver_override" \
		pci_bind "$bdf" "$RUSTMIG_DRV"
	tap_check "$bdf has a vfio cdev" vfio_cdev "$bdf"
done

# The migration uAPI on rustmig: all three features, fenced BARs, rustmig's
# stream. Every case on the small ivshmem C (with the 1 MiB round trip to D)
# and on edu; the 256 MiB round trip A -> B.
export VFIO_MIGRATION_TEST_FLAGS=7 VFIO_MIGRATION_TEST_FENCE=1 VFIO_MIGRATION_TEST_STREAM=rustmig
VFIO_MIGRATION_TEST_PEER=$D VFIO_MIGRATION_TEST_BAR=2 \
	run_test rustmig.migration.ivshmem-c "$T/vfio_pci_migration_test" "$C"
run_test rustmig.migration.edu "$T/vfio_pci_migration_test" "$EDU"
VFIO_MIGRATION_TEST_PEER=$B VFIO_MIGRATION_TEST_BAR=2 \
	run_test rustmig.migration.ivshmem-a-256m "$T/vfio_pci_migration_test" \
	-t round_trip_to_peer_is_bit_exact "$A"
unset VFIO_MIGRATION_TEST_FENCE VFIO_MIGRATION_TEST_STREAM

# The upstream tests behave on rustmig as on vfio-pci.
run_test rustmig.vfio_pci_device_test "$T/vfio_pci_device_test" "$A"
run_test rustmig.vfio_dma_mapping_test "$T/vfio_dma_mapping_test" "$A"

for bdf in "$A" "$B" "$C" "$D" "$EDU"; do
	tap_check "$bdf unbinds from rustmig" pci_unbind "$bdf"
done
tap_check "rustmig_vfio_pci unloads" rmmod rustmig_vfio_pci

# The kernel::vfio sample: a migratable variant driver with no unsafe code,
# checked against the migration uAPI (all three features: 7).
SAMPLE=rust_vfio_pci_mig
tap_check "$SAMPLE loads" insmod "$RUSTMIG_OBJ/samples/rust/$SAMPLE.ko"
tap_check "edu binds to $SAMPLE through driver_override" pci_bind "$EDU" "$SAMPLE"
VFIO_MIGRATION_TEST_FLAGS=7 run_test "$SAMPLE.migration.edu" "$T/vfio_pci_migration_test" "$EDU"
tap_check "edu unbinds from $SAMPLE" pci_unbind "$EDU"
tap_check "$SAMPLE unloads" rmmod "$SAMPLE"
tap_end
