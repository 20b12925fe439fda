#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot the rustmig test VM: QEMU (TCG) q35 with intel-iommu, two ivshmem-plain
# devices backed by files in the output directory, one edu device, the host
# root shared read-only over 9p and the output directory shared read-write.
# The guest runs mk/guest-init.sh, which writes TAP results and dmesg to the
# output directory.
#
# Usage: vm.sh --mode demo|check|early|gate|bench|shell|try|repro|mutants|xhost --obj OBJ_DIR --tests SELFTEST_DIR --out OUT_DIR
#              [--inspect RUSTMIG_INSPECT] [--inject INJECT_DIR (mk/inject.sh's modules)]
#              [--early NAME (check: mk/inject/NAME's bug is met first, then every test runs)]
#              [--keep (keep OUT_DIR's results of an earlier run)]
# Environment for one of mk/xhost.sh's two test hosts: RUSTMIG_XHOST (1 or 2),
# RUSTMIG_XHOST_NET (server:PORT or client:PORT, the stream netdev joining
# them on this machine's loopback), RUSTMIG_XHOST_PEER_OUT (the other host's
# output directory), RUSTMIG_QEMU_11 (QEMU 11.1, for the guest).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
mode=check obj= tests= out= inspect= inject= early= keep=0
while [ $# -gt 0 ]; do
	case "$1" in
	--mode) mode=$2; shift 2 ;;
	--obj) obj=$2; shift 2 ;;
	--tests) tests=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--inspect) inspect=$2; shift 2 ;;
	--inject) inject=$2; shift 2 ;;
	--early) early=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	*) echo "vm: unknown argument '$1'" >&2; exit 2 ;;
	esac
done
case "$mode" in demo|check|early|gate|bench|shell|try|repro|mutants|xhost) ;; *) echo "vm: bad --mode '$mode'" >&2; exit 2 ;; esac
[ -n "$obj" ] && [ -n "$out" ] || { echo "vm: --obj and --out are required" >&2; exit 2; }
kernel=$obj/arch/x86/boot/bzImage
[ -f "$kernel" ] || { echo "vm: no kernel at $kernel" >&2; exit 1; }

# Size of each ivshmem BAR2 (the device state of the ivshmem backend).
ivshmem_mb=${RUSTMIG_IVSHMEM_MB:-256}
mem=${RUSTMIG_VM_MEM:-3G}
timeout_s=${RUSTMIG_VM_TIMEOUT:-2700}

if [ "$keep" = 1 ]; then
	rm -f "$out/done" "$out/heartbeat" "$out/dmesg.txt" "$out/kmemleak.txt" "$out/tainted.txt"
else
	rm -rf "$out"
fi
mkdir -p "$out/results"

# The devices (mk/devices): each behind its own PCIe root port in a fixed
# slot, where the guest finds it.
devargs=() ports=() names=()
chassis=0
while read -r name model memory slot _; do
	case "$name" in ''|'#'*) continue ;; esac
	chassis=$((chassis + 1))
	lower=$(echo "$name" | tr 'A-Z' 'a-z')
	devargs+=(-device "pcie-root-port,id=rp$lower,chassis=$chassis,slot=$chassis,addr=$slot")
	case "$model" in
	ivshmem-plain)
		[ "$memory" = big ] && memory=${ivshmem_mb}M
		truncate -s "$memory" "$out/ivshmem-$lower"
		devargs+=(-object "memory-backend-file,id=mem$lower,size=$memory,mem-path=$out/ivshmem-$lower,share=on"
			-device "ivshmem-plain,memdev=mem$lower,bus=rp$lower") ;;
	*)
		devargs+=(-device "$model,bus=rp$lower") ;;
	esac
	names+=("$name")
	ports+=("RUSTMIG_PORT_$name=0000:00:${slot#0x}.0")
done < "$repo/mk/devices"
[ "${#names[@]}" -gt 0 ] || { echo "vm: no device in $repo/mk/devices" >&2; exit 2; }

cat > "$out/env.sh" <<ENV
RUSTMIG_MODE=$mode
RUSTMIG_REPO=$repo
RUSTMIG_OBJ=$obj
RUSTMIG_TESTS=$tests
RUSTMIG_DEVICES='${names[*]}'
$(printf '%s\n' "${ports[@]}")
RUSTMIG_IVSHMEM_MB=$ivshmem_mb
RUSTMIG_INJECT=$inject
RUSTMIG_EARLY=$early
RUSTMIG_REPRO_MINUTES=${RUSTMIG_REPRO_MINUTES:-10}
RUSTMIG_TRY='$(printf %s "${RUSTMIG_TRY:-}" | sed "s/'/'\\\\''/g")'
RUSTMIG_QEMU_11=${RUSTMIG_QEMU_11:-}
RUSTMIG_TOOL=${RUSTMIG_TOOL:-$inspect}
RUSTMIG_VM_CPUS=${RUSTMIG_VM_CPUS:-2}
ENV

# One of the two test hosts: a virtio-net link to the other, which only this
# machine's loopback carries.
netargs=()
if [ -n "${RUSTMIG_XHOST:-}" ]; then
	host=$RUSTMIG_XHOST
	case "$RUSTMIG_XHOST_NET" in
	server:*) stream="server=on" ;;
	client:*) stream="server=off,reconnect-ms=1000" ;;
	*) echo "vm: bad RUSTMIG_XHOST_NET '$RUSTMIG_XHOST_NET'" >&2; exit 2 ;;
	esac
	netargs=(-netdev "stream,id=xnet,$stream,addr.type=inet,addr.host=127.0.0.1,addr.port=${RUSTMIG_XHOST_NET#*:}"
		-device "virtio-net-pci,netdev=xnet,mac=52:54:00:99:00:0$host")
	# The other host's output directory, shared apart from the root (whose
	# pages the guest caches) and uncached: host 1 reads what host 2's QEMUs
	# wrote there during the run. Its parent, which mk/xhost.sh made before
	# either VM, for the other VM replaces the directory itself as it starts.
	netargs+=(-fsdev "local,id=peer,path=$(dirname "$RUSTMIG_XHOST_PEER_OUT"),security_model=none,readonly=on"
		-device virtio-9p-pci,fsdev=peer,mount_tag=rustmigpeer)
	cat >> "$out/env.sh" <<ENV
RUSTMIG_XHOST=$host
RUSTMIG_XHOST_ADDR=10.99.0.$host
RUSTMIG_XHOST_PEER=10.99.0.$((3 - host))
RUSTMIG_XHOST_PEER_OUT=$RUSTMIG_XHOST_PEER_OUT
RUSTMIG_XHOST_LINK=eth0
RUSTMIG_XHOST_CASES='${RUSTMIG_XHOST_CASES:-}'
ENV
fi

# Two vCPUs. make check's VM runs them at the same time (QEMU 11.1,
# multi-threaded TCG: RUSTMIG_QEMU and RUSTMIG_VM_ACCEL=tcg); the other VMs
# default to the machine's QEMU 10.0 on single-threaded TCG (one host thread
# runs both vCPUs in turn): QEMU 10.0's multi-threaded TCG loses a virtio
# notification now and then while another vCPU resets a device, and the
# guest then waits forever on its 9p root (Documentation/driver-api/vfio-pci-rustmig.rst,
# "The test VM"). So 10.0 with multi-threaded TCG is refused, but for the
# reproducer (make qemu-repro).
# The CPU model has no LA57: with 5-level paging a timer interrupt that lands
# while the boot CPU re-reads its CPUID bits makes KASAN report a wild access
# (same section). Nor ERMS and FSRM: TCG runs `rep movsb` a byte per
# iteration, so a kernel told that string moves are fast copies at a tenth of
# the speed of 8-byte moves (copy_to_user 668 MiB/s against 4144 measured in
# this VM), and every copy_to_user() and memcpy() of the guest would run so.
# The demo keeps the console to what it shows; dmesg is saved either way.
quiet=
[ "$mode" = demo ] && quiet=quiet
cpus=${RUSTMIG_VM_CPUS:-2}
accel=${RUSTMIG_VM_ACCEL:-tcg,thread=single}
qemu=${RUSTMIG_QEMU:-qemu-system-x86_64}
# The root is the host's, read-only: the guest keeps its pages
# (cache=loose), else every exec reads the program and its libraries over 9p
# again (measured in the VM: /bin/true 0.55 s a run against 0.11, python3
# 9.4 s against 1.1). What the host writes during a run is in the output
# share and the other host's (uncached). RUSTMIG_ROOT_CACHE=none reads
# through, as the reproducer does: its reads must reach 9p.
root_cache=loose
[ "$mode" = repro ] && root_cache=none
root_cache=${RUSTMIG_ROOT_CACHE:-$root_cache}
# A guest whose heartbeat (guest-init.sh) stops for this long is stuck; the
# first one may take the boot's time more.
stall_s=${RUSTMIG_VM_STALL:-300}
boot_s=${RUSTMIG_VM_BOOT:-300}
monitor=$out/monitor.sock
qemu_version=$($qemu --version | head -n 1)
case "$accel,$qemu_version" in
*thread=single*) ;;
*"version 10."*)
	[ "$mode" = repro ] || {
		echo "vm: $qemu_version with multi-threaded TCG ($accel) loses virtio notifications;" \
			"use QEMU 11.1 (make qemu11, RUSTMIG_QEMU=...) or -accel tcg,thread=single" >&2
		exit 2
	} ;;
esac
# KUnit runs at boot where its results are read (the doctests take minutes
# under TCG): make check's and the mutants' VMs, and the demo's.
kunit=
case "$mode" in early|gate|xhost|bench|repro) kunit=kunit.enable=0 ;; esac

args=(
	-accel "$accel" -cpu "${RUSTMIG_VM_CPU:-max,la57=off,erms=off,fsrm=off}" -smp "$cpus" -m "$mem"
	-M q35,kernel-irqchip=split
	-device intel-iommu,intremap=on,caching-mode=on
	-kernel "$kernel"
	-append "$quiet $kunit console=ttyS0 panic=-1 oops=panic kasan_multi_shot intel_iommu=on root=hostroot rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=512000,cache=$root_cache ro hugepages=64 init=$repo/mk/guest-init.sh"
	-fsdev local,id=root,path=/,security_model=none,readonly=on
	-device virtio-9p-pci,fsdev=root,mount_tag=hostroot
	-fsdev local,id=out,path="$out",security_model=none
	-device virtio-9p-pci,fsdev=out,mount_tag=rustmigout
	"${devargs[@]}"
	${netargs[@]+"${netargs[@]}"}
	-monitor unix:"$monitor",server=on,wait=off
	-no-reboot
)

echo "vm: booting $(basename "$kernel") ($mode) with $qemu_version, -accel $accel, $cpus vCPUs, monitor $monitor:" \
	"devices ${names[*]} (mk/devices; ivshmem A and B ${ivshmem_mb} MiB each)"
if [ "$mode" = shell ]; then
	exec "$qemu" "${args[@]}" -nographic
fi

set +e
(
	timeout --foreground -k 10 "$timeout_s" "$qemu" "${args[@]}" \
		-display none -serial stdio </dev/null 2>&1 | tee "$out/console.log"
	echo "${PIPESTATUS[0]}" > "$out/qemu.rc"
) &
vm=$!

# The progress watchdog: the guest writes a heartbeat every 10 s. When it
# stops, the guest is examined through the monitor (the vCPUs, and sysrq w
# and l into its log, which the console shows) and stopped.
start=$(date +%s)
stuck=0
while kill -0 "$vm" 2>/dev/null; do
	sleep 5
	# Once the guest runs, the host threads of its vCPUs (one for all on
	# single-threaded TCG): make check's host checks read them.
	[ -f "$out/cpus.txt" ] || [ ! -f "$out/heartbeat" ] ||
		"$repo/mk/qmon.py" "$monitor" 'info cpus' > "$out/cpus.txt" 2>&1 || true
	now=$(date +%s)
	last=$(stat -c %Y "$out/heartbeat" 2>/dev/null || echo $((start + boot_s)))
	[ "$mode" = shell ] || [ $((now - last)) -lt "$stall_s" ] || [ -f "$out/done" ] && continue
	stuck=1
	{
		echo "vm: STUCK: no heartbeat from the guest for $((now - last))s" \
			"($((now - start))s into the run); examining it through the monitor"
		"$repo/mk/qmon.py" "$monitor" 'info registers -a' | grep -E '^\(qemu\)|^CPU|RIP=|HLT=' || true
		"$repo/mk/qmon.py" "$monitor" 'sendkey alt-sysrq-w' 'sendkey alt-sysrq-l' > /dev/null || true
		sleep 20
		echo "vm: the tasks the guest reported blocked (sysrq w, l), from its console:"
		grep -aA40 'sysrq: Show Blocked State' "$out/console.log" | head -n 120
		"$repo/mk/qmon.py" "$monitor" quit > /dev/null || true
	} > "$out/stuck.txt" 2>&1
	cat "$out/stuck.txt" >&2
	break
done
wait "$vm"
rc=$(cat "$out/qemu.rc" 2>/dev/null || echo 1)
set -e
if [ "$stuck" = 1 ]; then
	echo "vm: the guest got stuck (details above, and in $out/stuck.txt); console tail:" >&2
	tail -n 60 "$out/console.log" >&2
	exit 1
fi
if [ "$rc" = 124 ]; then
	echo "vm: timed out after ${timeout_s}s; console tail:" >&2
	tail -n 60 "$out/console.log" >&2
	exit 1
fi
if [ ! -f "$out/done" ]; then
	echo "vm: the guest did not finish (qemu exit $rc); console tail:" >&2
	tail -n 60 "$out/console.log" >&2
	exit 1
fi
[ "$mode" = demo ] && [ "$(cat "$out/done")" != ok ] && { echo "vm: demo failed" >&2; exit 1; }

# The round trips A -> B, C -> D (and QEMU's C+E -> D+F), seen from the host: the backing files of
# source and destination hold the same bytes, and not zeros.
if [ "$mode" = check ]; then
	n=0
	host_check() { # NAME CMD...
		n=$((n + 1))
		name=$1
		shift
		if "$@" > /dev/null 2>&1; then echo "ok $n host: $name"; else echo "not ok $n host: $name"; fi
	} >> "$out/results/host.tap"
	threads=$(grep -oE 'thread_id=[0-9]+' "$out/cpus.txt" 2>/dev/null | sort -u | wc -l)
	host_check "the guest's $cpus vCPUs ran on $cpus host threads (-accel $accel; found $threads)" \
		test "$threads" = "$cpus"
	for pair in a:b c:d e:f; do
		src=$out/ivshmem-${pair%:*} dst=$out/ivshmem-${pair#*:}
		host_check "$(basename "$src") and $(basename "$dst") hold the same bytes" cmp "$src" "$dst"
		host_check "$(basename "$dst") holds the pattern, not zeros" \
			sh -c "! cmp -s -n 4096 '$dst' /dev/zero"
	done
	echo "1..$n" >> "$out/results/host.tap"
	sed 's/^/vm: /' "$out/results/host.tap"
	# The stream and descriptors the guest saved, read by rustmig (tools/rustmig).
	if [ -n "$inspect" ]; then
		"$repo/mk/host-inspect.sh" "$out/results" "$inspect" | sed 's/^/vm: /' || true
	fi
fi
exit 0
