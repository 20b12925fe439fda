#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Check from the host, with rustmig (tools/rustmig), what a 'make check'
# VM run saved in its results directory: stream-c.bin, a stream saved by the
# driver from ivshmem C, and descriptor-c.txt, descriptor-d.txt and
# descriptor-edu.txt, the migration_compat attributes of ivshmem C, ivshmem D
# and edu. Writes TAP to RESULTS_DIR/host-inspect.tap (which mk/summary.sh
# reads) and to stdout. A missing input is a failing TAP line, never a skip.
# Exits 1 if any check failed, 2 on a usage error.
#
# Usage: host-inspect.sh RESULTS_DIR BINARY
set -uo pipefail

if [ $# != 2 ]; then
	echo "usage: host-inspect.sh RESULTS_DIR BINARY" >&2
	exit 2
fi
results=$1 bin=$2
tap=$results/host-inspect.tap
mkdir -p "$results" && : > "$tap" || exit 2
n=0 failed=0

tap_ok() { # NAME
	n=$((n + 1))
	echo "ok $n inspect: $1" | tee -a "$tap"
}
tap_fail() { # NAME DETAIL...
	n=$((n + 1))
	failed=$((failed + 1))
	echo "not ok $n inspect: $1" | tee -a "$tap"
	shift
	for l in "$@"; do printf '%s\n' "$l" | sed 's/^/# /' | tee -a "$tap"; done
}
tap_end() {
	echo "1..$n" | tee -a "$tap"
	[ "$failed" = 0 ]
	exit $?
}

# check NAME RC REGEX CMD...: CMD exits with RC and its output (stdout and
# stderr) has a line matching the extended REGEX.
check() {
	local name=$1 want=$2 re=$3 out rc
	shift 3
	out=$("$@" 2>&1)
	rc=$?
	if [ "$rc" = "$want" ] && grep -qE -- "$re" <<<"$out"; then
		tap_ok "$name"
	else
		tap_fail "$name" "command: $*" "exit $rc (wanted $want), wanted a line matching: $re" \
			"output (last lines):" "$(tail -n 8 <<<"$out")"
	fi
}

stream=$results/stream-c.bin
desc_c=$results/descriptor-c.txt
desc_d=$results/descriptor-d.txt
desc_edu=$results/descriptor-edu.txt

missing=0
if [ ! -x "$bin" ]; then
	tap_fail "rustmig is built" "no executable at $bin ('make tools' builds it)"
	missing=1
fi
for f in "$stream" "$desc_c" "$desc_d" "$desc_edu"; do
	if [ ! -s "$f" ]; then
		tap_fail "the VM run saved $(basename "$f")" "$f is missing or empty"
		missing=1
	fi
done
[ "$missing" = 0 ] || tap_end

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT

check "stream-c.bin is a complete, valid stream" 0 '^complete: ' "$bin" inspect "$stream"

# The identity in the stream's header is the one sysfs shows for C; the
# stream (saved from STOP_COPY) is 1.1, and sysfs names the 2.1 of a save
# that starts in PRE_COPY and the versions C loads.
want="format=1.1 $(sed 's/^format=2\.1 loads=1,2 //' "$desc_c")"
if out=$("$bin" descriptor "$stream" 2>&1) && [ "$out" = "$want" ]; then
	tap_ok "the header of stream-c.bin carries descriptor-c.txt's identity, format 1.1"
else
	tap_fail "the header of stream-c.bin carries descriptor-c.txt's identity, format 1.1" \
		"stream: $out" "want:   $want" "sysfs:  $(cat "$desc_c")"
fi

# One byte flipped in the middle of the payload of the record that holds the
# middle of the stream: its CRC refuses it.
size=$(stat -c %s "$stream")
mid=$((size / 2))
read -r off len < <("$bin" inspect "$stream" 2>/dev/null | awk -v mid="$mid" '
	/^record at [0-9]+: / {
		off = $3 + 0
		for (i = 4; i < NF; i++) if ($i == "len") len = $(i + 1) + 0
		if (first == "" && len > 0) first = off " " len
		if (off <= mid && mid < off + 16 + len && len > 0) { print off, len; found = 1; exit }
	}
	END { if (!found && first != "") print first }')
if [ -z "${off:-}" ]; then
	tap_fail "a flipped payload byte is refused with EBADMSG" "no record with a payload in $stream"
else
	pos=$((off + 16 + len / 2))
	cp "$stream" "$tmp/flipped.bin"
	byte=$(od -An -tu1 -j "$pos" -N1 "$stream" | tr -d ' ')
	# shellcheck disable=SC2059 # the format is the octal escape of the new byte
	printf "$(printf '\\%03o' $((byte ^ 0xff)))" |
		dd of="$tmp/flipped.bin" bs=1 seek="$pos" conv=notrunc status=none
	if cmp -s "$stream" "$tmp/flipped.bin"; then
		tap_fail "a flipped payload byte is refused with EBADMSG" "could not flip byte $pos"
	else
		check "a flipped payload byte (at $pos) is refused with EBADMSG at its record ($off)" \
			1 "^refused: EBADMSG at offset $off: " "$bin" inspect "$tmp/flipped.bin"
	fi
fi

head -c "$mid" "$stream" > "$tmp/truncated.bin"
check "a truncated stream ($mid of $size bytes) is incomplete" 1 \
	"^incomplete: $mid of $size bytes" "$bin" inspect "$tmp/truncated.bin"

check "ivshmem C and D are compatible (descriptors)" 0 '^compatible$' \
	"$bin" compat "$desc_c" "$desc_d"
check "stream-c.bin can be loaded into D" 0 '^compatible$' \
	"$bin" compat "$stream" "$desc_d"
check "ivshmem C and edu are incompatible" 1 '^incompatible: ' \
	"$bin" compat "$desc_c" "$desc_edu"

tap_end
