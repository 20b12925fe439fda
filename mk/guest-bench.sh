#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# `make bench` inside the VM (a kernel without debugging options): the figures
# of the 256 MiB round trip, of the malformed-stream checks and of the QEMU
# migrations, the stop and run round trips against mtty. Nothing here asserts a
# time.
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
echo "== bench: where the 256 MiB round trip's kernel time goes (perf, kernel self time)"
echo 0 > /proc/sys/kernel/kptr_restrict
VFIO_MIGRATION_TEST_PEER=$B VFIO_MIGRATION_TEST_BAR=2 perf record -q -F 4000 -o /tmp/stream.data -- \
	"$T/vfio_pci_migration_test" -t round_trip_to_peer_is_bit_exact "$A" | grep 'stream read' ||
	echo "bench: perf record failed on the round trip"
# Kernel symbols only: the test's own pattern checks are most of its time.
perf report -q -i /tmp/stream.data --no-children --sort sym --stdio -g none 2>&1 |
	grep '\[k\]' | head -8 | c++filt | sed 's/\[[0-9a-f]*\]//g'
# make check tries every systematic stream and a few hundred random ones;
# the long runs of random streams are here.
echo "== bench: malformed streams, 9,000 on edu and 2,000 on C"
VFIO_MIGRATION_STREAMS=9000 "$T/vfio_pci_migration_stream_test" \
	-t malformed_streams_are_refused "$EDU" | grep 'streams\|^not ok'
VFIO_MIGRATION_STREAMS=2000 VFIO_MIGRATION_TEST_BAR=2 "$T/vfio_pci_migration_stream_test" \
	-t malformed_streams_are_refused "$C" | grep 'streams\|^not ok'
echo "== bench: QEMU migrations"
/usr/bin/python3 "$RUSTMIG_REPO/mk/qemu-migrate.py" "$RESULTS" plain precopy cancel p2p refused \
	writer-ratio writer-big writer-cost
echo "== bench: RUNNING -> STOP -> RUNNING, rustmig against mtty (the upstream C sample)"
MTTY=83b8f4f2-509f-382f-3c1e-e6bfe0fa1001
MTTY_TYPE=/sys/class/mdev_bus/mtty/mdev_supported_types/mtty-2
insmod "$RUSTMIG_OBJ/drivers/vfio/mdev/mdev.ko" && insmod "$RUSTMIG_OBJ/samples/vfio-mdev/mtty.ko" &&
	echo "$MTTY" > "$MTTY_TYPE/create" || echo "bench: mtty could not be set up"
rate() { # NAME DEVICE: prints the test's line, returns the round trips per second
	line=$(VFIO_MIGRATION_TEST_FLAGS=7 VFIO_MIGRATION_TEST_ROUND_TRIPS=50000 \
		"$T/vfio_pci_migration_test" -t stop_and_run_round_trips "$2" |
		grep 'stop and run:')
	echo "$1: ${line#\# }" >&2
	echo "$line" | sed -n 's/.*stop and run: \([0-9]*\) round trips.*/\1/p'
}
r_mtty=$(rate mtty "$MTTY")
r_ivshmem=$(rate "rustmig ivshmem" "$C")
r_edu=$(rate "rustmig edu" "$EDU")
awk -v m="$r_mtty" -v i="$r_ivshmem" -v e="$r_edu" 'BEGIN { if (m > 0)
	printf "round trips against mtty: ivshmem %.2fx, edu %.2fx\n", i / m, e / m }'
echo "== bench: where a round trip's time goes (perf, kernel self time, rustmig ivshmem and mtty)"
echo 0 > /proc/sys/kernel/kptr_restrict
profile() { # NAME DEVICE
	VFIO_MIGRATION_TEST_ROUND_TRIPS=300000 perf record -q -F 4000 -o /tmp/round-trips.data -- \
		"$T/vfio_pci_migration_test" -t stop_and_run_round_trips "$2" | grep 'stop and run:' ||
		{ echo "bench: perf record failed on $1"; return; }
	# Rust's v0 symbols through c++filt, without their crate hashes.
	echo "$1, self time:"
	perf report -q -i /tmp/round-trips.data --no-children --sort sym --stdio -g none \
		--percent-limit 2 2>&1 | head -12 | c++filt | sed 's/\[[0-9a-f]*\]//g'
}
profile "rustmig ivshmem" "$C"
profile mtty "$MTTY"
echo 1 > "/sys/bus/mdev/devices/$MTTY/remove"
rmmod mtty && rmmod mdev
