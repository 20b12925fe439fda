#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# `make bench` inside the VM (a kernel without debugging options): the figures
# of the 256 MiB round trip, of the malformed-stream checks and of the QEMU
# migrations. Nothing here asserts a time.
. "$RUSTMIG_REPO/mk/guest-lib.sh"

A=$RUSTMIG_BDF_A B=$RUSTMIG_BDF_B C=$RUSTMIG_BDF_C D=$RUSTMIG_BDF_D EDU=$RUSTMIG_BDF_EDU
T=$RUSTMIG_TESTS
load_rustmig || exit 1
for bdf in "$A" "$B" "$C" "$D" "$RUSTMIG_BDF_E" "$RUSTMIG_BDF_F" "$RUSTMIG_BDF_G" "$RUSTMIG_BDF_H" "$EDU" "$RUSTMIG_BDF_EDU2"; do
	pci_bind "$bdf" "$RUSTMIG_DRV" || exit 1
done
export VFIO_MIGRATION_TEST_FLAGS=7 VFIO_MIGRATION_TEST_STREAM=rustmig
echo "== bench: ${RUSTMIG_IVSHMEM_MB} MiB round trip A -> B"
VFIO_MIGRATION_TEST_PEER=$B VFIO_MIGRATION_TEST_BAR=2 \
	"$T/vfio_pci_migration_test" -t round_trip_to_peer_is_bit_exact "$A" | grep -v '^ok\|^#  '
echo "== bench: malformed streams"
VFIO_MIGRATION_STREAMS=2000 "$T/vfio_pci_migration_stream_test" \
	-t malformed_streams_are_refused "$EDU" | grep 'streams\|^not ok'
echo "== bench: QEMU migrations"
/usr/bin/python3 "$RUSTMIG_REPO/mk/qemu-migrate.py" "$RESULTS" plain precopy cancel p2p refused writer \
	writer-big writer-cost
