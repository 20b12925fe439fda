#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# `make`'s demo: load rustmig, bind it to the emulated devices, and live
# migrate a small guest that has ivshmem C passed through to a second QEMU
# that has ivshmem D, checking that C's memory arrived in D byte for byte.
. "$RUSTMIG_REPO/mk/guest-lib.sh"

echo
echo "== rustmig demo: loading $RUSTMIG_KO"
load_rustmig || exit 1
rc=0
for bdf in "$RUSTMIG_BDF_A" "$RUSTMIG_BDF_B" "$RUSTMIG_BDF_C" "$RUSTMIG_BDF_D" "$RUSTMIG_BDF_EDU"; do
	if msg=$(pci_bind "$bdf" "$RUSTMIG_DRV"); then
		echo "   $bdf [$(pci_id "$bdf")] -> driver $(pci_driver "$bdf"), $(vfio_cdev "$bdf")"
		echo "      migration_compat: $(cat "/sys/bus/pci/devices/$bdf/migration_compat")"
	else
		echo "   $bdf: $msg"
		rc=1
	fi
done
echo "== rustmig kernel messages:"
dmesg | grep -i rustmig | sed 's/^/   /'
echo
echo "== live migration with QEMU: a guest with ivshmem C ($RUSTMIG_BDF_C) passed through"
echo "   (-device vfio-pci,host=$RUSTMIG_BDF_C,enable-migration=on) migrates over loopback to a"
echo "   QEMU waiting with ivshmem D ($RUSTMIG_BDF_D). C's 1 MiB holds a pattern; the"
echo "   destination guest must read the same bytes from D."
/usr/bin/python3 "$RUSTMIG_REPO/mk/qemu-migrate.py" "$RESULTS" plain || rc=1
grep -q '^not ok' "$RESULTS/qemu-migration.tap" && rc=1
if [ $rc = 0 ]; then
	echo "== demo: migrated, the device state arrived byte for byte"
else
	echo "== demo: FAILED (see above)"
fi
echo
exit $rc
