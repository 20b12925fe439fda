#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# `make check` inside the VM: every test, each writing TAP into
# $RUSTMIG_OUT/results/NAME.tap (and its exit status into NAME.rc).
. "$RUSTMIG_REPO/mk/guest-lib.sh"

A=$RUSTMIG_BDF_A B=$RUSTMIG_BDF_B EDU=$RUSTMIG_BDF_EDU C=$RUSTMIG_BDF_C D=$RUSTMIG_BDF_D
EDU2=$RUSTMIG_BDF_EDU2 E=$RUSTMIG_BDF_E F=$RUSTMIG_BDF_F G=$RUSTMIG_BDF_G H=$RUSTMIG_BDF_H
T=$RUSTMIG_TESTS

# `make check EARLY=NAME`: the driver with the bug of mk/inject/NAME.patch
# binds C first, so that its report comes before every test; the run must
# still fail on it at the end.
[ -z "${RUSTMIG_EARLY:-}" ] || meet_early_bug "$RUSTMIG_EARLY"

# The vCPUs run at the same time (the host checks that they are as many host
# threads): all online now, and by the end each has run the tests' threads.
tap_check "the guest has its $RUSTMIG_VM_CPUS vCPUs online, and at least two" \
	test "$(getconf _NPROCESSORS_ONLN)" = "$RUSTMIG_VM_CPUS" -a "$RUSTMIG_VM_CPUS" -ge 2
cpu_ticks() { # CPU user+nice+system ticks, one CPU a line
	awk '/^cpu[0-9]/ { print $1, $2 + $3 + $4 }' /proc/stat
}
cpu_ticks > /tmp/cpu-ticks.start

# KUnit suites (the Rust doctests among them at boot, a module's when it
# loads): one TAP file per suite, its test cases as top-level lines.
collect_kunit() {
	for suite in /sys/kernel/debug/kunit/*/; do
		[ -f "$suite/results" ] || continue
		name=$(basename "$suite")
		[ -f "$RESULTS/kunit.$name.tap" ] && continue
		# The suite's plan and test cases, as top-level lines.
		sed -n 's/^    \(\(not \)\?ok [0-9].*\|1\.\.[0-9]*\)$/\1/p' "$suite/results" \
			> "$RESULTS/kunit.$name.tap"
		echo "== kunit $name: $(grep -c '^ok' "$RESULTS/kunit.$name.tap") ok," \
			"$(grep -c '^not ok' "$RESULTS/kunit.$name.tap") not ok"
		grep -A20 '^    not ok' "$suite/results" | head -n 40
	done
}
collect_kunit
n=$(grep -h '^ok [0-9]* rust_doctest_kernel_vfio' "$RESULTS"/kunit.*.tap 2>/dev/null | wc -l)
tap_check "kernel::vfio doctests ran and passed ($n)" test "$n" -ge 5

# The devices are where the VM runner put them.
for v in A B C D E F EDU EDU2; do
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
tap_check "edu 2 is 1234:11e8" test "$(pci_id "$EDU2")" = 1234:11e8

tap_check "rustmig_vfio_pci loads" load_rustmig
# Its KUnit suites (state machine, stream, dirty log) ran as it loaded.
collect_kunit
for suite in vfio_migration_steps vfio_pci_ids vfio_pci_adapter rustmig_stream rustmig_dirty rustmig_ratelimit; do
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
run_test vfio-pci.vfio_iommufd_setup_test "$T/vfio_iommufd_setup_test" "$B"
tap_check "ivshmem B unbinds from vfio-pci" pci_unbind "$B"

for bdf in "$A" "$B" "$C" "$D" "$E" "$F" "$G" "$H" "$EDU" "$EDU2"; do
	tap_check "$bdf ($(pci_id "$bdf")) binds to rustmig through driver_override" \
		pci_bind "$bdf" "$RUSTMIG_DRV"
	tap_check "$bdf has a vfio cdev" vfio_cdev "$bdf"
done

# The compatibility descriptors, kept for the host's inspector: C and D are
# compatible, C and edu are not (Documentation: Compatibility).
for v in C D EDU EDU2; do
	eval bdf=\$$v
	f=$RESULTS/descriptor-$(echo "$v" | tr 'A-Z' 'a-z').txt
	tap_check "$v ($bdf) has a migration_compat attribute" cp "/sys/bus/pci/devices/$bdf/migration_compat" "$f"
	echo "   $v: $(cat "$f" 2>/dev/null)"
done
# format= is what a save from the device uses: 2.1 where pre-copy moves a live
# section (ivshmem's memory), 1.1 otherwise (edu); both load versions 1 and 2.
tap_check "C's descriptor: saves 2.1, loads 1 and 2, ivshmem 1.0, 1 MiB of memory and 8 bytes of registers" \
	grep -qx 'format=2.1 loads=1,2 backend=ivshmem/1.0 pci=1af4:1110 subsystem=1af4:1100 class_rev=0x05000001 state_size=1048584' \
	"$RESULTS/descriptor-c.txt"
tap_check "edu's descriptor: saves 1.1, loads 1 and 2, edu 1.0, 48 bytes of registers" \
	grep -q '^format=1.1 loads=1,2 backend=edu/1.0 pci=1234:11e8 .* state_size=48$' "$RESULTS/descriptor-edu.txt"
tap_check "C and D have the same descriptor" cmp "$RESULTS/descriptor-c.txt" "$RESULTS/descriptor-d.txt"
tap_check "the two edus have the same descriptor" \
	cmp "$RESULTS/descriptor-edu.txt" "$RESULTS/descriptor-edu2.txt"
tap_check "migration_compat is read-only" sh -c "! echo x 2>/dev/null > /sys/bus/pci/devices/$C/migration_compat"

# The migration uAPI on rustmig: all three features, fenced BARs, rustmig's
# stream. Every case on the small ivshmem C (with the 1 MiB round trip to D)
# and on edu; the 256 MiB round trip A -> B. DMA dirty logging: ivshmem does
# no DMA (always clean), edu's transfers are tracked through its trapped BAR0.
export VFIO_MIGRATION_TEST_FLAGS=7 VFIO_MIGRATION_TEST_FENCE=1 VFIO_MIGRATION_TEST_STREAM=rustmig
VFIO_MIGRATION_TEST_PEER=$D VFIO_MIGRATION_TEST_BAR=2 VFIO_MIGRATION_TEST_DMA_LOG=clean \
	run_test rustmig.migration.ivshmem-c "$T/vfio_pci_migration_test" "$C"
VFIO_MIGRATION_TEST_PEER=$EDU2 VFIO_MIGRATION_TEST_DMA_LOG=edu \
	run_test rustmig.migration.edu "$T/vfio_pci_migration_test" "$EDU"
# A's 256 MiB BAR2 is mapped 256 MiB aligned (the test library aligns BAR
# mmaps as QEMU does), so its faults take huge pages: the fence holds for them.
VFIO_MIGRATION_TEST_PEER=$B VFIO_MIGRATION_TEST_BAR=2 \
	run_test rustmig.migration.ivshmem-a-256m "$T/vfio_pci_migration_test" \
	-t round_trip_to_peer_is_bit_exact -t bars_are_fenced_while_stopped "$A"

# The stream format against malformed input, on ivshmem C (each stream up to
# 1 MiB) and on edu: every systematic stream (each variant of each forgery
# class once), then 200 random ones on C and 1,000 on edu; each refused with
# its documented errno into ERROR, C's memory and edu's registers unchanged by
# every stream refused at its header; a stream of the other backend is
# refused. C's valid stream is kept for the host. make bench runs 2,000
# random streams on C and 9,000 on edu.
VFIO_MIGRATION_TEST_BAR=2 VFIO_MIGRATION_TEST_FOREIGN=$EDU VFIO_MIGRATION_RANDOM_STREAMS=200 \
	VFIO_MIGRATION_TEST_SAVE=$RESULTS/stream-c.bin \
	run_test rustmig.stream.ivshmem-c "$T/vfio_pci_migration_stream_test" "$C"
VFIO_MIGRATION_TEST_FOREIGN=$C VFIO_MIGRATION_RANDOM_STREAMS=1000 \
	run_test rustmig.stream.edu "$T/vfio_pci_migration_stream_test" "$EDU"
unset VFIO_MIGRATION_TEST_FENCE VFIO_MIGRATION_TEST_STREAM

# Resets in every state; unbind, remove and rescan with data_fds in use;
# rmmod refused meanwhile.
VFIO_MIGRATION_TEST_DRIVER=$RUSTMIG_DRV VFIO_MIGRATION_TEST_MODULE=$RUSTMIG_DRV \
	run_test rustmig.lifecycle.ivshmem-c "$T/vfio_pci_migration_lifecycle_test" "$C"
run_test rustmig.lifecycle.edu "$T/vfio_pci_migration_lifecycle_test" \
	-t reset_in_every_state_ends_the_session "$EDU"

# The upstream tests behave on rustmig as on vfio-pci.
run_test rustmig.vfio_pci_device_test "$T/vfio_pci_device_test" "$A"
run_test rustmig.vfio_dma_mapping_test "$T/vfio_dma_mapping_test" "$A"
run_test rustmig.vfio_iommufd_setup_test "$T/vfio_iommufd_setup_test" "$A"
# edu has MSI (ivshmem-plain has no interrupt): the upstream IRQ cases on rustmig.
run_test rustmig.vfio_pci_device_test.edu "$T/vfio_pci_device_test" "$EDU"

# QEMU's vfio migration, the real client: rustmig devices in a small guest
# migrate to a second QEMU (Documentation: QEMU), with the report table.
echo "== QEMU live migration inside the VM"
/usr/bin/python3 "$RUSTMIG_REPO/mk/qemu-migrate.py" "$RESULTS"
# A QEMU left running holds its devices: no unbind could end.
left=$(pgrep -f qemu-system-x86_64)
tap_check "no QEMU is left running after the QEMU cases" test -z "$left"
[ -z "$left" ] || pkill -9 -f qemu-system-x86_64

# The rustmig command (tools/rustmig) on these devices: every command, its
# output and exit status, and the failures (mk/guest-tool.sh).
echo "== the rustmig command"
sh "$RUSTMIG_REPO/mk/guest-tool.sh" rustmig

# The kernel::vfio sample: a migratable variant driver with no unsafe code,
# checked against the migration uAPI (all three features: 7). On edu 2, with
# rustmig still loaded and bound to the other devices: both drivers run
# kernel::vfio's generic code, whose lock classes they share (lockdep warns
# when two modules name one class differently).
SAMPLE=rust_vfio_pci_mig
tap_check "$SAMPLE loads beside rustmig" insmod "$RUSTMIG_OBJ/samples/rust/$SAMPLE.ko"
tap_check "edu 2 binds to $SAMPLE through driver_override" pci_bind "$EDU2" "$SAMPLE"
VFIO_MIGRATION_TEST_FLAGS=7 VFIO_MIGRATION_TEST_DMA_LOG=none VFIO_MIGRATION_TEST_STATE=driver \
	run_test "$SAMPLE.migration.edu" "$T/vfio_pci_migration_test" "$EDU2"
tap_check "edu 2 unbinds from $SAMPLE" pci_unbind "$EDU2"
tap_check "$SAMPLE unloads" rmmod "$SAMPLE"

for bdf in "$A" "$B" "$C" "$D" "$E" "$F" "$EDU"; do
	tap_check "$bdf unbinds from rustmig" pci_unbind "$bdf"
done
tap_check "migration_compat goes with the driver" test ! -e "/sys/bus/pci/devices/$C/migration_compat"
tap_check "rustmig_vfio_pci unloads" rmmod rustmig_vfio_pci

# The reference: the same uAPI cases against mtty, the upstream C sample (an
# mdev, opened by its UUID). Where mtty departs from what the tests expect of
# rustmig the test is told (Documentation: Testing, "The reference"): PRE_COPY's
# end of stream reads 0 (the uAPI wants ENOMSG), PRECOPY_INFO on a resuming
# file fails with ENOTTY (the uAPI says EINVAL), MIG_DATA_SIZE is an estimate
# and the data_fd has no poll (both allowed).
MTTY=83b8f4f2-509f-382f-3c1e-e6bfe0fa1001
MTTY_TYPE=/sys/class/mdev_bus/mtty/mdev_supported_types/mtty-2
tap_check "mdev and mtty load" sh -c "insmod $RUSTMIG_OBJ/drivers/vfio/mdev/mdev.ko &&
	insmod $RUSTMIG_OBJ/samples/vfio-mdev/mtty.ko"
tap_check "an mtty device is created" sh -c "echo $MTTY > $MTTY_TYPE/create"
VFIO_MIGRATION_TEST_FLAGS=7 VFIO_MIGRATION_TEST_PRECOPY_END=0 VFIO_MIGRATION_TEST_DATA_SIZE=estimate \
	VFIO_MIGRATION_TEST_POLL=0 VFIO_MIGRATION_TEST_RESUMING_IOCTL=ENOTTY \
	run_test mtty.migration "$T/vfio_pci_migration_test" "$MTTY"
# rustmig's save and load on mtty: the command is not rustmig-only.
MTTY2=83b8f4f2-509f-382f-3c1e-e6bfe0fa1002
tap_check "a second mtty device is created" sh -c "echo $MTTY2 > $MTTY_TYPE/create"
sh "$RUSTMIG_REPO/mk/guest-tool.sh" mtty "$MTTY" "$MTTY2"
tap_check "the second mtty device is removed" sh -c "echo 1 > /sys/bus/mdev/devices/$MTTY2/remove"
tap_check "the mtty device is removed" sh -c "echo 1 > /sys/bus/mdev/devices/$MTTY/remove"
tap_check "mtty and mdev unload" sh -c "rmmod mtty && rmmod mdev"

# Each vCPU ran the tests for at least 10 s (USER_HZ ticks).
cpu_ticks > /tmp/cpu-ticks.end
while read -r cpu ticks; do
	was=$(sed -n "s/^$cpu //p" /tmp/cpu-ticks.start)
	tap_check "$cpu ran the tests' threads ($((ticks - ${was:-0})) ticks of user and system time)" \
		test $((ticks - ${was:-0})) -ge $((10 * $(getconf CLK_TCK)))
done < /tmp/cpu-ticks.end
tap_end
