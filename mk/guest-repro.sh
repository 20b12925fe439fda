#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# `make qemu-repro` inside the VM: the lost virtio notification of QEMU 10.0's
# multi-threaded TCG, without rustmig or vfio. vCPU 0 resets the edu device
# through sysfs in a loop; vCPU 1 reads files of the 9p root in a loop. The
# heartbeat (guest-init.sh) stops when the 9p root stops answering, and the
# runner's watchdog then reports the guest stuck.
. "$RUSTMIG_REPO/mk/guest-lib.sh"

EDU=$RUSTMIG_BDF_EDU
minutes=${RUSTMIG_REPRO_MINUTES:-10}
echo "== repro: $(nproc) CPUs; resets of edu $EDU on CPU 0, 9p reads on CPU 1, for $minutes min"
taskset -c 0 sh -c "while :; do echo 1 > /sys/bus/pci/devices/$EDU/reset; done" &
resets=$!
taskset -c 1 sh -c 'while :; do cat /usr/bin/qemu-system-x86_64 /usr/bin/busybox > /dev/null; ls -R /usr/share/doc > /dev/null; done' &
reads=$!
i=0
while [ $i -lt $((minutes * 6)) ]; do
	sleep 10
	i=$((i + 1))
	echo "repro: $((i * 10)) s, the 9p root still answers"
done
kill "$resets" "$reads"
echo "== repro: no lost notification in $minutes min"
