#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# `make check`'s two test hosts (mk/xhost.sh), inside each VM: rustmig bound to
# the devices the cross-host cases use, the virtual network between the hosts
# up. Host 2 runs the agent of mk/qemu-migrate.py, which starts its QEMUs and
# writes its devices' backing files when host 1 asks; host 1 runs the
# in-guest QEMU cases again with QEMU 11.1, then the cross-host cases.
. "$RUSTMIG_REPO/mk/guest-lib.sh"

C=$RUSTMIG_BDF_C D=$RUSTMIG_BDF_D E=$RUSTMIG_BDF_E F=$RUSTMIG_BDF_F
EDU=$RUSTMIG_BDF_EDU EDU2=$RUSTMIG_BDF_EDU2
link=$RUSTMIG_XHOST_LINK
tap_check "host $RUSTMIG_XHOST: $link is up at $RUSTMIG_XHOST_ADDR" \
	sh -c "ip addr add $RUSTMIG_XHOST_ADDR/24 dev $link && ip link set $link up"
load_rustmig || exit 1
for bdf in "$C" "$D" "$E" "$F" "$EDU" "$EDU2"; do
	pci_bind "$bdf" "$RUSTMIG_DRV" || exit 1
done
rc=0
if [ "$RUSTMIG_XHOST" = 2 ]; then
	/usr/bin/python3 "$RUSTMIG_REPO/mk/qemu-migrate.py" --agent "$RUSTMIG_XHOST_ADDR" 4500 || rc=1
elif [ -n "$RUSTMIG_XHOST_CASES" ]; then
	# Only these cross-host cases (RUSTMIG_XHOST_CASES=..., for working on them).
	/usr/bin/python3 "$RUSTMIG_REPO/mk/qemu-migrate.py" "$RESULTS" $RUSTMIG_XHOST_CASES || rc=1
	mv "$RESULTS/qemu-migration.tap" "$RESULTS/xhost.tap"
else
	# First the in-guest cases (source and destination on this host) with QEMU 11.1,
	# while host 2 waits: the cross-host cases then leave the devices as the host
	# compares them.
	mkdir -p "$RESULTS/qemu-11"
	RUSTMIG_INNER_QEMU=$RUSTMIG_QEMU_11 /usr/bin/python3 "$RUSTMIG_REPO/mk/qemu-migrate.py" \
		"$RESULTS/qemu-11" plain precopy cancel p2p refused || rc=1
	mv "$RESULTS/qemu-11/qemu-migration.tap" "$RESULTS/qemu-11.tap"
	/usr/bin/python3 "$RUSTMIG_REPO/mk/qemu-migrate.py" "$RESULTS" xhost-plain xhost-precopy \
		xhost-p2p xhost-refused xhost-cancel xhost-netdrop xhost-multifd xhost-versions || rc=1
	mv "$RESULTS/qemu-migration.tap" "$RESULTS/xhost.tap"
fi
# A QEMU left running holds its devices: no unbind could end.
left=$(pgrep -f qemu-system-x86_64)
tap_check "no QEMU is left running after the QEMU cases" test -z "$left"
[ -z "$left" ] || pkill -9 -f qemu-system-x86_64
for bdf in "$C" "$D" "$E" "$F" "$EDU" "$EDU2"; do
	pci_unbind "$bdf"
done
tap_check "host $RUSTMIG_XHOST: rmmod rustmig_vfio_pci" rmmod "$RUSTMIG_DRV"
tap_end
exit $rc
