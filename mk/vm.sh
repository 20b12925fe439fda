#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot the rustmig test VM: QEMU (TCG) q35 with intel-iommu, two ivshmem-plain
# devices backed by files in the output directory, one edu device, the host
# root shared read-only over 9p and the output directory shared read-write.
# The guest runs mk/guest-init.sh, which writes TAP results and dmesg to the
# output directory.
#
# Usage: vm.sh --mode demo|check|gate|bench|shell|try|repro|mutants --obj OBJ_DIR --tests SELFTEST_DIR --out OUT_DIR
#              [--inspect RUSTMIG_INSPECT] [--inject INJECT_DIR (mk/inject.sh's modules)]
#              [--early NAME (check: mk/inject/NAME's bug is met first, then every test runs)]
#              [--keep (keep OUT_DIR's results of an earlier run)]
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
case "$mode" in demo|check|gate|bench|shell|try|repro|mutants) ;; *) echo "vm: bad --mode '$mode'" >&2; exit 2 ;; esac
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
truncate -s "${ivshmem_mb}M" "$out/ivshmem-a" "$out/ivshmem-b"
# A second, small pair: quick tests of every arc, and the 1 MiB round trip.
truncate -s 1M "$out/ivshmem-c" "$out/ivshmem-d"
# E and F: the second device of each side of the QEMU migration with two devices.
truncate -s 1M "$out/ivshmem-e" "$out/ivshmem-f"

# Each device sits behind its own PCIe root port (so VFIO_DEVICE_RESET has a
# bus reset to use) in a fixed slot; the guest finds the devices through them.
port_a=0000:00:10.0 port_b=0000:00:11.0 port_edu=0000:00:12.0
port_c=0000:00:13.0 port_d=0000:00:14.0 port_edu2=0000:00:15.0
port_e=0000:00:16.0 port_f=0000:00:17.0
cat > "$out/env.sh" <<ENV
RUSTMIG_MODE=$mode
RUSTMIG_REPO=$repo
RUSTMIG_OBJ=$obj
RUSTMIG_TESTS=$tests
RUSTMIG_PORT_A=$port_a
RUSTMIG_PORT_B=$port_b
RUSTMIG_PORT_EDU=$port_edu
RUSTMIG_PORT_C=$port_c
RUSTMIG_PORT_D=$port_d
RUSTMIG_PORT_EDU2=$port_edu2
RUSTMIG_PORT_E=$port_e
RUSTMIG_PORT_F=$port_f
RUSTMIG_IVSHMEM_MB=$ivshmem_mb
RUSTMIG_INJECT=$inject
RUSTMIG_EARLY=$early
RUSTMIG_REPRO_MINUTES=${RUSTMIG_REPRO_MINUTES:-10}
RUSTMIG_TRY='$(printf %s "${RUSTMIG_TRY:-}" | sed "s/'/'\\\\''/g")'
ENV

# Two vCPUs, on single-threaded TCG (one host thread runs them in turn).
# QEMU 10.0's multi-threaded TCG loses a virtio notification now and then
# while another vCPU resets a device: the guest then waits forever on its 9p
# root (Documentation/driver-api/vfio-pci-rustmig.rst, "The test VM").
# The CPU model has no LA57: with 5-level paging a timer interrupt that lands
# while the boot CPU re-reads its CPUID bits makes KASAN report a wild access
# (same section).
# The demo keeps the console to what it shows; dmesg is saved either way.
quiet=
[ "$mode" = demo ] && quiet=quiet
cpus=${RUSTMIG_VM_CPUS:-2}
accel=${RUSTMIG_VM_ACCEL:-tcg,thread=single}
qemu=${RUSTMIG_QEMU:-qemu-system-x86_64}
# A guest whose heartbeat (guest-init.sh) stops for this long is stuck; the
# first one may take the boot's time more.
stall_s=${RUSTMIG_VM_STALL:-300}
boot_s=${RUSTMIG_VM_BOOT:-300}
monitor=$out/monitor.sock

args=(
	-accel "$accel" -cpu max,la57=off -smp "$cpus" -m "$mem"
	-M q35,kernel-irqchip=split
	-device intel-iommu,intremap=on,caching-mode=on
	-kernel "$kernel"
	-append "$quiet console=ttyS0 panic=-1 oops=panic kasan_multi_shot intel_iommu=on root=hostroot rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=512000 ro hugepages=64 init=$repo/mk/guest-init.sh"
	-fsdev local,id=root,path=/,security_model=none,readonly=on
	-device virtio-9p-pci,fsdev=root,mount_tag=hostroot
	-fsdev local,id=out,path="$out",security_model=none
	-device virtio-9p-pci,fsdev=out,mount_tag=rustmigout
	-object memory-backend-file,id=mema,size="${ivshmem_mb}M",mem-path="$out/ivshmem-a",share=on
	-device pcie-root-port,id=rpa,chassis=1,slot=1,addr=0x10
	-device ivshmem-plain,memdev=mema,bus=rpa
	-object memory-backend-file,id=memb,size="${ivshmem_mb}M",mem-path="$out/ivshmem-b",share=on
	-device pcie-root-port,id=rpb,chassis=2,slot=2,addr=0x11
	-device ivshmem-plain,memdev=memb,bus=rpb
	-device pcie-root-port,id=rpe,chassis=3,slot=3,addr=0x12
	-device edu,bus=rpe
	-object memory-backend-file,id=memc,size=1M,mem-path="$out/ivshmem-c",share=on
	-device pcie-root-port,id=rpc,chassis=4,slot=4,addr=0x13
	-device ivshmem-plain,memdev=memc,bus=rpc
	-object memory-backend-file,id=memd,size=1M,mem-path="$out/ivshmem-d",share=on
	-device pcie-root-port,id=rpd,chassis=5,slot=5,addr=0x14
	-device ivshmem-plain,memdev=memd,bus=rpd
	-device pcie-root-port,id=rpf,chassis=6,slot=6,addr=0x15
	-device edu,bus=rpf
	-object memory-backend-file,id=meme,size=1M,mem-path="$out/ivshmem-e",share=on
	-device pcie-root-port,id=rpg,chassis=7,slot=7,addr=0x16
	-device ivshmem-plain,memdev=meme,bus=rpg
	-object memory-backend-file,id=memf,size=1M,mem-path="$out/ivshmem-f",share=on
	-device pcie-root-port,id=rph,chassis=8,slot=8,addr=0x17
	-device ivshmem-plain,memdev=memf,bus=rph
	-monitor unix:"$monitor",server=on,wait=off
	-no-reboot
)

echo "vm: booting $(basename "$kernel") ($mode) with $($qemu --version | head -n 1), -accel $accel, $cpus vCPUs, monitor $monitor: ivshmem A and B (${ivshmem_mb} MiB each), edu," \
	"ivshmem C, D, E, F (1 MiB each), a second edu behind root ports $port_a $port_b" \
	"$port_edu $port_c $port_d $port_edu2 $port_e $port_f"
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
	for pair in a:b c:d e:f; do
		src=$out/ivshmem-${pair%:*} dst=$out/ivshmem-${pair#*:}
		host_check "$(basename "$src") and $(basename "$dst") hold the same bytes" cmp "$src" "$dst"
		host_check "$(basename "$dst") holds the pattern, not zeros" \
			sh -c "! cmp -s -n 4096 '$dst' /dev/zero"
	done
	echo "1..$n" >> "$out/results/host.tap"
	sed 's/^/vm: /' "$out/results/host.tap"
	# The stream and descriptors the guest saved, read by rustmig-inspect.
	if [ -n "$inspect" ]; then
		"$repo/mk/host-inspect.sh" "$out/results" "$inspect" | sed 's/^/vm: /' || true
	fi
fi
exit 0
