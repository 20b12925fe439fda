#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# `make try CMD='...'` inside the VM: rustmig loaded and bound to every test
# device, as in make check, then CMD run by the shell with the check's
# variables ($A $B $C $D $E $F $EDU $EDU2 $T, the test binaries), for working
# on one test at a time. Its output goes to the console and results/try.log.
. "$RUSTMIG_REPO/mk/guest-lib.sh"

A=$RUSTMIG_BDF_A B=$RUSTMIG_BDF_B EDU=$RUSTMIG_BDF_EDU C=$RUSTMIG_BDF_C D=$RUSTMIG_BDF_D
EDU2=$RUSTMIG_BDF_EDU2 E=$RUSTMIG_BDF_E F=$RUSTMIG_BDF_F G=$RUSTMIG_BDF_G H=$RUSTMIG_BDF_H
T=$RUSTMIG_TESTS
export A B C D E F G H EDU EDU2 T RUSTMIG_DRV
load_rustmig || exit 1
for bdf in "$A" "$B" "$C" "$D" "$E" "$F" "$G" "$H" "$EDU" "$EDU2"; do
	pci_bind "$bdf" "$RUSTMIG_DRV" || exit 1
done
echo "== try: $RUSTMIG_TRY"
sh -c "$RUSTMIG_TRY" 2>&1 | tee "$RESULTS/try.log"
for bdf in "$A" "$B" "$C" "$D" "$E" "$F" "$G" "$H" "$EDU" "$EDU2"; do
	pci_unbind "$bdf"
done
rmmod rustmig_vfio_pci
