#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# `make`'s demo: load rustmig and bind it to the emulated devices.
. "$RUSTMIG_REPO/mk/guest-lib.sh"

echo
echo "== rustmig demo: loading $RUSTMIG_KO"
load_rustmig || exit 1
rc=0
for bdf in "$RUSTMIG_BDF_A" "$RUSTMIG_BDF_B" "$RUSTMIG_BDF_EDU"; do
	if msg=$(pci_bind "$bdf" "$RUSTMIG_DRV"); then
		echo "   $bdf [$(pci_id "$bdf")] -> driver $(pci_driver "$bdf"), $(vfio_cdev "$bdf")"
	else
		echo "   $bdf: $msg"
		rc=1
	fi
done
echo "== rustmig kernel messages:"
dmesg | grep -i rustmig | sed 's/^/   /'
echo
exit $rc
