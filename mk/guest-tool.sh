#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The rustmig command (tools/rustmig) on the VM's devices, each command's exit
# status and output checked, into results/tool-PART.tap. Run by guest-check.sh:
#
#   guest-tool.sh rustmig   rustmig bound to A..F and edu, after the QEMU
#                           migrations: list, state, save/load C -> D and the
#                           256 MiB A -> B with progress (byte for byte through
#                           the backing files; A and B by the host once the VM
#                           is off), inspect, preflight, estimate
#                           (against QEMU's own count of C's bytes), and the
#                           failures: a wrong device, a corrupt file, an
#                           incompatible destination, bad arguments
#   guest-tool.sh mtty MTTY MTTY2
#                           the same save/load on mtty, the upstream C sample:
#                           not rustmig-only
. "$RUSTMIG_REPO/mk/guest-lib.sh"
TAP=$RESULTS/tool-$1.tap
: > "$TAP"
R=$RUSTMIG_TOOL
W=/tmp/rustmig-tool
mkdir -p "$W"
if [ ! -x "$R" ]; then
	tap_fail "rustmig is built" "no executable at '$R' ('make tools' builds it)"
	tap_end
	exit 1
fi

# run NAME WANT_EXIT PATTERN CMD...: CMD exits WANT_EXIT and its output
# (stdout and stderr) matches the extended regex PATTERN.
run() {
	name=$1 want=$2 pat=$3
	shift 3
	out=$("$@" 2>&1)
	rc=$?
	if [ "$rc" = "$want" ] && printf '%s\n' "$out" | grep -Eq -- "$pat"; then
		tap_ok "rustmig $name"
	else
		tap_fail "rustmig $name" "command: $*" "exit $rc (want $want), output must match: $pat" \
			"output:" "$out"
	fi
}

same() { # NAME FILE1 FILE2
	if cmp "$2" "$3" > "$W/cmp" 2>&1; then tap_ok "$1"; else tap_fail "$1" "$(cat "$W/cmp")"; fi
}

if [ "$1" = mtty ]; then
	M1=$2 M2=$3
	run "list shows mtty as migratable" 0 "^$M1 .*: migratable STOP_COPY" "$R" list
	run "save mtty" 0 "saved [0-9]+ bytes" "$R" save "$M1" "$W/mtty1.bin"
	run "load into a second mtty" 0 "loaded [0-9]+ bytes" "$R" load "$M2" "$W/mtty1.bin"
	run "save the second mtty" 0 "saved [0-9]+ bytes" "$R" save "$M2" "$W/mtty2.bin"
	same "rustmig: mtty's state round trips bit-exact (saved, loaded, saved again)" \
		"$W/mtty1.bin" "$W/mtty2.bin"
	run "preflight to mtty says it cannot tell" 1 "publishes no compatibility descriptor" \
		"$R" preflight "$W/mtty1.bin" "$M2"
	tap_end
	exit 0
fi

A=$RUSTMIG_BDF_A B=$RUSTMIG_BDF_B C=$RUSTMIG_BDF_C D=$RUSTMIG_BDF_D EDU=$RUSTMIG_BDF_EDU
OUT=$RUSTMIG_OUT
run "--help names every command" 0 "estimate DEV --bandwidth" "$R" --help
run "list shows C with its flags, size and descriptor" 0 \
	"^$C rustmig_vfio_pci: migratable STOP_COPY\|P2P\|PRE_COPY, state size 1049080 bytes" "$R" list
run "list shows C's descriptor" 0 "descriptor: format=2.1 loads=1,2 backend=ivshmem/1.0" "$R" list
run "state shows RUNNING" 0 "^RUNNING$" "$R" state "$C"
run "state STOP" 0 "^RUNNING -> STOP " "$R" state "$C" stop
run "state PRE_COPY_P2P" 0 "^RUNNING -> PRE_COPY_P2P " "$R" state "$C" PRE_COPY_P2P
run "state reset" 0 "^RUNNING -> RUNNING " "$R" state "$C" reset
run "state refuses a state that is not one" 2 "'STOPPED': not a state" "$R" state "$C" STOPPED

# The driver's statistics (vfio/<device>/migration/rustmig in debugfs).
dstat() { # DEV NAME: the value of NAME in DEV's statistics
	sed -n "s/^$2: //p" "/sys/kernel/debug/vfio/$1/migration/rustmig"
}
# expect NAME WANT GOT
expect() {
	if [ "$2" = "$3" ]; then tap_ok "$1"; else tap_fail "$1" "want '$2', got '$3'" \
		"$(cat "/sys/kernel/debug/vfio/$C/migration/rustmig" 2>&1)"; fi
}

# C -> D: C's memory made to differ from D's first, through C's backing file.
dd if=/dev/urandom of="$OUT/ivshmem-c" bs=4096 count=256 conv=notrunc 2>/dev/null
saved=$(dstat "$C" bytes_saved) arcs=$(dstat "$C" transitions)
run "save C" 0 "^saved 1049080 bytes of $C's state" "$R" save "$C" "$W/c.bin"
expect "debugfs: C's bytes_saved grew by the 1049080 saved" $((saved + 1049080)) "$(dstat "$C" bytes_saved)"
expect "debugfs: C took 6 arcs (RUNNING_P2P, STOP, STOP_COPY, STOP, RUNNING_P2P, RUNNING)" \
	$((arcs + 6)) \
	"$(dstat "$C" transitions)"
expect "debugfs: C runs" RUNNING "$(dstat "$C" state)"
run "debugfs: the last STOP_COPY's time is there" 0 "^last_stop_copy_us: [0-9]+$" \
	cat "/sys/kernel/debug/vfio/$C/migration/rustmig"
run "inspect reads the saved stream" 0 "backend=ivshmem" "$R" inspect "$W/c.bin"
run "preflight: D accepts C's stream" 0 "^compatible$" "$R" preflight "$W/c.bin" "$D"
cat "/sys/bus/pci/devices/$C/migration_compat" > "$W/c.desc"
run "preflight: D accepts C's descriptor" 0 "^compatible$" "$R" preflight "$W/c.desc" "$D"
run "preflight: edu does not, and says why" 1 "^incompatible: backend" \
	"$R" preflight "$W/c.bin" "$EDU"
# A destination whose driver loads version 1 only (an older rustmig's
# descriptor, laid over D's attribute): C's saves use 2.1 (pre-copy), so it is
# refused, naming the field; the 1.1 stream that `save` wrote (STOP_COPY) loads.
sed 's/^format=2\.1 loads=1,2 /format=1.1 /' "$W/c.desc" > "$W/v1-only.desc"
if mount --bind "$W/v1-only.desc" "/sys/bus/pci/devices/$D/migration_compat"; then
	run "preflight: a 1.x-only destination refuses C's 2.1 saves, naming the format" 1 \
		"^incompatible: format differs \(saves 2\.1 vs loads 1\)$" "$R" preflight "$W/c.desc" "$D"
	run "preflight: a 1.x-only destination accepts C's 1.1 stream" 0 "^compatible$" \
		"$R" preflight "$W/c.bin" "$D"
	umount "/sys/bus/pci/devices/$D/migration_compat"
else
	tap_fail "preflight: a 1.x-only destination's descriptor laid over D's attribute"
fi
run "compat: C's descriptor against the 1.x-only one" 1 "^incompatible: format differs" \
	"$R" compat "$W/c.desc" "$W/v1-only.desc"
loaded=$(dstat "$D" bytes_loaded)
run "load C's state into D" 0 "^loaded 1049080 bytes" "$R" load "$D" "$W/c.bin"
expect "debugfs: D's bytes_loaded grew by 1049080" $((loaded + 1049080)) "$(dstat "$D" bytes_loaded)"
same "rustmig: D's backing file equals C's after save/load" "$OUT/ivshmem-c" "$OUT/ivshmem-d"

# The 256 MiB pair, with progress.
size=$(stat -c %s "$OUT/ivshmem-a")
dd if=/dev/urandom of="$OUT/ivshmem-a" bs=1M count=4 seek=$((size / 2097152)) conv=notrunc 2>/dev/null
run "save A ($((size >> 20)) MiB) with progress" 0 "save: [0-9]+ of [0-9]+ bytes \(100%\)" \
	"$R" save --progress "$A" "$W/a.bin"
run "load it into B with progress" 0 "load: [0-9]+ of [0-9]+ bytes \(100%\)" \
	"$R" load --progress "$B" "$W/a.bin"
rm -f "$W/a.bin"
# A and B are compared by the host once the VM is off (mk/vm.sh): reading both
# through 9p here would take minutes. Nothing writes them after this load, and
# the 4 MiB just written into A make them differ unless it took A's state.

# estimate: what STOP_COPY would move, against the stream saved and against
# QEMU's own count for C in the plain case (qemu-migration.tap).
run "estimate C" 0 "^stop-copy now: 1049080 bytes, 1000 ms at 1048576 B/s" \
	"$R" estimate "$C" --bandwidth 1M
qemu=$(grep -A1 'qemu: plain: C -> D completed' "$RESULTS/qemu-migration.tap" |
	sed -n 's/.*"vfio": {"transferred": \([0-9]*\)}.*/\1/p')
run "estimate C equals the bytes QEMU moved for C (${qemu:-none found})" 0 \
	"^stop-copy now: ${qemu:-none} bytes" "$R" estimate "$C" --bandwidth 1G
run "estimate --precopy: little is left after the initial data" 0 \
	"stop-copy after pre-copy: [0-9]{1,3} bytes" "$R" estimate "$C" --bandwidth 1M --precopy
run "estimate refuses a bandwidth of 0" 2 "must not be 0" "$R" estimate "$C" --bandwidth 0

# Failures: each a clear message and a non-zero exit.
run "a device that does not exist" 2 "no such device" "$R" save 0000:99:00.0 "$W/x.bin"
run "a device not bound to VFIO" 2 "not bound to a VFIO driver" "$R" state 0000:00:00.0
cp "$W/c.bin" "$W/bad.bin"
printf 'X' | dd of="$W/bad.bin" bs=1 seek=5000 conv=notrunc 2>/dev/null
run "inspect refuses the corrupt file" 1 "refused: EBADMSG" "$R" inspect "$W/bad.bin"
refused=$(dstat "$D" streams_refused)
# The refused write leaves the device in RESUMING, its stream refused: the
# next arc would fail into ERROR; here the command exits and the device resets.
run "load refuses the corrupt file, and says the device's state" 2 \
	"refused the stream at byte [0-9]+: EBADMSG.*device is now RESUMING" "$R" load "$D" "$W/bad.bin"
run "the device runs again once the command exits" 0 "^RUNNING$" "$R" state "$D"
expect "debugfs: D counts the refused stream" $((refused + 1)) "$(dstat "$D" streams_refused)"
expect "debugfs: D says why" "EBADMSG: a header or record whose check value does not match" \
	"$(dstat "$D" last_refusal)"
run "load into an incompatible device (edu) is refused" 2 "refused the stream at byte 0: EPROTO" \
	"$R" load "$EDU" "$W/c.bin"
expect "debugfs: edu names the field that differs" \
	"EPROTO: resume: stream refused, its backend differs from this device's" \
	"$(dstat "$EDU" last_refusal)"
# Pre-copy passes: the kselftest's pages written in PRE_COPY, C -> D.
passes=$(dstat "$C" precopy_passes) pages=$(dstat "$C" precopy_dirty_pages)
VFIO_MIGRATION_TEST_FLAGS=7 VFIO_MIGRATION_TEST_STREAM=rustmig VFIO_MIGRATION_TEST_PEER=$D \
	VFIO_MIGRATION_TEST_BAR=2 "$RUSTMIG_TESTS/vfio_pci_migration_test" \
	-t precopy_resends_exactly_the_pages_written "$C" > "$W/precopy.log" 2>&1
run "the pre-copy kselftest passes on C" 0 "^ok 1 " cat "$W/precopy.log"
run "debugfs: C counts its pre-copy passes and their pages (5 pages at least)" 0 "^yes$" \
	sh -c "[ $(dstat "$C" precopy_passes) -gt $passes ] &&
		[ $(dstat "$C" precopy_dirty_pages) -ge $((pages + 5)) ] && echo yes"
run "load of a missing file" 2 "nofile.bin: No such file" "$R" load "$D" "$W/nofile.bin"
run "an unknown command" 2 "unknown command 'migrate'" "$R" migrate "$C"
run "estimate without a bandwidth" 2 "wrong arguments for estimate" "$R" estimate "$C"
tap_end
