#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The gate-early VM of `make check` (mk/check-vms.sh): the use after free of
# mk/inject/ is met first, then a few tests of the check that pass (the
# migration uAPI on C and edu, malformed streams on edu, the upstream device
# test on edu). make check's own summary, with this run's list of result
# files (mk/results/early), must fail the run on the report alone
# (mk/gate-early.sh).
. "$RUSTMIG_REPO/mk/guest-lib.sh"

C=$RUSTMIG_BDF_C D=$RUSTMIG_BDF_D EDU=$RUSTMIG_BDF_EDU EDU2=$RUSTMIG_BDF_EDU2
T=$RUSTMIG_TESTS

meet_early_bug "${RUSTMIG_EARLY:?no early bug named}"

tap_check "rustmig_vfio_pci loads" load_rustmig
for bdf in "$C" "$D" "$EDU" "$EDU2"; do
	tap_check "$bdf binds to rustmig through driver_override" pci_bind "$bdf" "$RUSTMIG_DRV"
done
export VFIO_MIGRATION_TEST_FLAGS=7 VFIO_MIGRATION_TEST_FENCE=1 VFIO_MIGRATION_TEST_STREAM=rustmig
VFIO_MIGRATION_TEST_PEER=$D VFIO_MIGRATION_TEST_BAR=2 VFIO_MIGRATION_TEST_DMA_LOG=clean \
	run_test rustmig.migration.ivshmem-c "$T/vfio_pci_migration_test" \
	-t round_trip_to_peer_is_bit_exact -t bars_are_fenced_while_stopped "$C"
VFIO_MIGRATION_TEST_PEER=$EDU2 VFIO_MIGRATION_TEST_DMA_LOG=edu \
	run_test rustmig.migration.edu "$T/vfio_pci_migration_test" "$EDU"
VFIO_MIGRATION_TEST_FOREIGN=$C VFIO_MIGRATION_RANDOM_STREAMS=100 \
	run_test rustmig.stream.edu "$T/vfio_pci_migration_stream_test" "$EDU"
run_test rustmig.vfio_pci_device_test.edu "$T/vfio_pci_device_test" "$EDU"
for bdf in "$C" "$D" "$EDU" "$EDU2"; do
	tap_check "$bdf unbinds from rustmig" pci_unbind "$bdf"
done
tap_check "rustmig_vfio_pci unloads" rmmod rustmig_vfio_pci
tap_end
