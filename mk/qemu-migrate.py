#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
#
# QEMU live migration of rustmig devices, end to end, inside the test VM: a
# source QEMU runs a small guest with rustmig devices passed through
# (-device vfio-pci,host=BDF,enable-migration=on), a destination QEMU waits
# with -incoming on loopback, the migration runs through QMP, and the device
# state must arrive byte for byte.
#
# Usage: qemu-migrate.py RESULTS_DIR [CASE...]
#
# CASE: plain, precopy, cancel, p2p, refused (all by default).
#
# Environment: RUSTMIG_BDF_NAME for each device NAME of mk/devices (C, D, E,
# F, EDU and EDU2 are used, bound to rustmig) and RUSTMIG_OUT (its
# ivshmem-{c,d,e,f} are the backing files of C, D, E, F).
# Writes RESULTS_DIR/qemu-migration.tap and prints the report table.

import json
import os
import re
import socket
import subprocess
import sys
import time

RESULTS = sys.argv[1]
OUT = os.environ["RUSTMIG_OUT"]
DEVICES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "devices")
with open(DEVICES) as _f:
    BDF = {line.split()[0]: os.environ.get("RUSTMIG_BDF_" + line.split()[0], "")
           for line in _f if line.strip() and not line.startswith("#")}
TAP = os.path.join(RESULTS, "qemu-migration.tap")
RUN = "/tmp/qemu-migrate"
QEMU = "qemu-system-x86_64"
MIB = 1 << 20
# edu's id, liveness, factorial, status and irq status registers, and the low
# halves of its DMA source, destination and count.
EDU_REGS = (0x00, 0x04, 0x08, 0x20, 0x24, 0x80, 0x88, 0x90)

# QEMU's own account of the migration, in each QEMU's log: the device state
# each side set, and every read and write of the data_fd with its result.
TRACE = ("vfio_migration_set_state", "vfio_migration_set_device_state", "vfio_save_setup",
         "vfio_save_block", "vfio_save_complete_precopy", "vfio_save_cleanup",
         "vfio_load_state", "vfio_load_state_device_data", "vfio_load_device_config_state_*",
         "vfio_load_cleanup")

os.makedirs(RUN, exist_ok=True)
tap_n = 0
tap_failed = 0
rows = []


def tap(ok, name, *detail):
    global tap_n, tap_failed
    tap_n += 1
    tap_failed += not ok
    line = "%s %d qemu: %s" % ("ok" if ok else "not ok", tap_n, name)
    with open(TAP, "a") as f:
        f.write(line + "\n")
        for d in detail:
            for l in str(d).splitlines():
                f.write("# " + l + "\n")
    print(line, flush=True)
    for d in detail:
        for l in str(d).splitlines():
            print("# " + l, flush=True)
    return ok


class Qmp:
    """A QMP connection to one QEMU."""

    def __init__(self, path, timeout=60):
        deadline = time.time() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        self.f = self.sock.makefile("rw")
        json.loads(self.f.readline())  # the greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise RuntimeError("%s: %s" % (name, r["error"].get("desc")))

    def close(self):
        self.sock.close()


class Vm:
    """A small guest (no OS: its firmware idles) with devices passed through."""

    def __init__(self, name, bdfs, incoming=False):
        self.name = name
        self.log = os.path.join(RUN, name + ".log")
        # The trace goes to a file of its own: in the log it would also reach the output of
        # human monitor commands.
        self.trace = os.path.join(RUN, name + ".trace")
        sock = os.path.join(RUN, name + ".qmp")
        if os.path.exists(sock):
            os.unlink(sock)
        args = [QEMU, "-accel", "tcg", "-M", "q35", "-m", "64", "-nodefaults",
                "-display", "none", "-serial", "none", "-monitor", "none",
                "-qmp", "unix:%s,server=on,wait=off" % sock, "-msg", "timestamp=on",
                "-D", self.trace]
        for event in TRACE:
            args += ["-trace", event]
        for i, bdf in enumerate(bdfs):
            # The same guest address on both sides: QEMU matches device state by it.
            args += ["-device", "vfio-pci,host=%s,enable-migration=on,id=dev%d,addr=0x%x"
                     % (bdf, i, 4 + i)]
        if incoming:
            args += ["-incoming", "defer"]
        self.proc = subprocess.Popen(args, stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        self.qmp = Qmp(sock)

    def output(self):
        with open(self.log) as f:
            return f.read()

    def traced(self):
        try:
            with open(self.trace) as f:
                return f.read()
        except OSError:
            return ""

    def bar(self, dev, bar, timeout=60):
        """The guest address and size of BAR @bar of device @dev (dev0, dev1...),
        once the guest's firmware has placed it."""
        deadline = time.time() + timeout
        while True:
            for bus in self.qmp.cmd("query-pci"):
                for d in bus["devices"]:
                    if d.get("qdev_id") != dev:
                        continue
                    for r in d["regions"]:
                        if r.get("bar") == bar and 0 < r["address"] < (1 << 48):
                            return r["address"], r["size"]
            if time.time() > deadline:
                raise RuntimeError("%s: %s's BAR%d was never placed" % (self.name, dev, bar))
            time.sleep(0.2)

    def read_regs(self, dev, bar, offsets):
        """The 32-bit registers at @offsets of BAR @bar of @dev, as the guest reads
        them with 32-bit accesses (edu answers nothing else): one word per xp,
        since xp reads a longer dump in 8-byte pieces."""
        addr, _ = self.bar(dev, bar)
        regs = []
        for off in offsets:
            out = self.qmp.cmd("human-monitor-command",
                               **{"command-line": "xp /1wx 0x%x" % (addr + off)})
            word = re.search(r"^[0-9a-f]+: 0x([0-9a-f]+)", out, re.M)
            if not word:
                raise RuntimeError("%s: xp answered %r" % (self.name, out))
            regs.append(int(word.group(1), 16))
        return regs

    def read_bar(self, dev, bar, length=None):
        """What the guest reads in BAR @bar of @dev (through vfio, from the device)."""
        addr, size = self.bar(dev, bar)
        path = os.path.join(RUN, "%s-%s-bar%d.bin" % (self.name, dev, bar))
        self.qmp.cmd("pmemsave", val=addr, size=length or size, filename=path)
        with open(path, "rb") as f:
            return f.read()

    def status(self):
        return self.qmp.cmd("query-status")["status"]

    def quit(self):
        try:
            self.qmp.cmd("quit")
        except (OSError, RuntimeError, ValueError):
            pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def file_bytes(path, length):
    with open(path, "rb") as f:
        return f.read(length)


def set_pattern(letter, seed):
    """Fill ivshmem @letter's memory with a pattern, through its backing file."""
    pattern = bytes((seed * 131 + i * 7 + (i >> 12)) & 0xff for i in range(MIB))
    with open(os.path.join(OUT, "ivshmem-" + letter), "r+b") as f:
        f.write(pattern)
    return pattern


def migrate(src, dst, port, caps=(), params=None, cancel_after=None):
    """Migrate @src to @dst; returns the final query-migrate of the source."""
    for vm in (src, dst):
        if caps:
            vm.qmp.cmd("migrate-set-capabilities",
                       capabilities=[{"capability": c, "state": True} for c in caps])
    # Under TCG inside TCG the measured bandwidth is low: with the default
    # 300 ms downtime limit the device state alone would never fit and the
    # migration would stay in pre-copy. The cancel case keeps it there.
    src.qmp.cmd("migrate-set-parameters", **(params or {"downtime-limit": 20000}))
    uri = "tcp:127.0.0.1:%d" % port
    dst.qmp.cmd("migrate-incoming", uri=uri)
    src.qmp.cmd("migrate", uri=uri)
    start = time.time()
    cancelled = False
    while True:
        info = src.qmp.cmd("query-migrate")
        st = info.get("status")
        if st in ("completed", "failed", "cancelled"):
            return info
        if cancel_after is not None and not cancelled and time.time() - start > cancel_after:
            src.qmp.cmd("migrate_cancel")
            cancelled = True
        if time.time() - start > 300:
            src.qmp.cmd("migrate_cancel")
            return {"status": "timeout", "last": info}
        time.sleep(0.2)


def report(case, info, device_bytes):
    rows.append((case, info.get("status", "?"), info.get("total-time", "-"),
                 info.get("downtime", "-"), device_bytes))


def vfio_bytes(info):
    return (info.get("vfio") or {}).get("transferred", "-")


def run_case(name, fn):
    vms = []
    failed = tap_failed
    marker = kmsg_mark("qemu " + name)
    try:
        fn(vms)
    except Exception as e:  # noqa: BLE001 - every failure becomes a TAP line
        tap(False, name + ": " + str(e))
    finally:
        for vm in vms:
            vm.quit()
    if tap_failed != failed:
        # What each side did and what the kernel said, for a failure read
        # from the log alone.
        for vm in vms:
            print("# %s's log and vfio trace (the end):" % vm.name)
            for l in (vm.output()[-2000:] + vm.traced()[-5000:]).splitlines():
                print("#   " + l)
        print("# kernel log since the case started:")
        for l in kernel_log_since(marker)[-60:]:
            print("#   " + l)


def plain(vms):
    pattern = set_pattern("c", 1)
    set_pattern("d", 2)
    src = Vm("plain-src", [BDF["C"]])
    vms.append(src)
    dst = Vm("plain-dst", [BDF["D"]], incoming=True)
    vms.append(dst)
    tap("dirty tracking" not in src.output(),
        "plain: no dirty tracking warning for ivshmem (it has DMA logging)", src.output())
    # With the return path the source learns whether the
    # destination loaded the state (without it, a source that sent everything
    # first reports "completed" whatever the destination did).
    info = migrate(src, dst, 4441, caps=("return-path",))
    report("stop-and-copy C -> D", info, vfio_bytes(info))
    tap(info["status"] == "completed", "plain: C -> D completed", json.dumps(info),
        dst.output())
    tap(dst.status() == "running", "plain: the destination runs")
    tap(dst.read_bar("dev0", 2) == pattern,
        "plain: D's memory, read by the destination guest, is the pattern")
    tap(file_bytes(os.path.join(OUT, "ivshmem-d"), MIB) == pattern,
        "plain: D's backing file holds the pattern")


def precopy(vms):
    pattern = set_pattern("c", 3)
    set_pattern("d", 4)
    src = Vm("precopy-src", [BDF["C"]])
    vms.append(src)
    dst = Vm("precopy-dst", [BDF["D"]], incoming=True)
    vms.append(dst)
    info = migrate(src, dst, 4442, caps=("return-path", "switchover-ack"))
    report("PRE_COPY + switchover-ack C -> D", info, vfio_bytes(info))
    tap(info["status"] == "completed", "precopy: C -> D with switchover-ack completed",
        json.dumps(info), dst.output())
    tap(dst.status() == "running", "precopy: the destination runs")
    tap(dst.read_bar("dev0", 2) == pattern, "precopy: D's memory is the pattern")


def p2p(vms):
    pc, pe = set_pattern("c", 5), set_pattern("e", 6)
    set_pattern("d", 7)
    set_pattern("f", 8)
    src = Vm("p2p-src", [BDF["C"], BDF["E"]])
    vms.append(src)
    dst = Vm("p2p-dst", [BDF["D"], BDF["F"]], incoming=True)
    vms.append(dst)
    info = migrate(src, dst, 4443, caps=("return-path",))
    report("two devices (P2P) C+E -> D+F", info, vfio_bytes(info))
    tap(info["status"] == "completed", "p2p: C+E -> D+F completed", json.dumps(info),
        dst.output())
    tap(dst.read_bar("dev0", 2) == pc and dst.read_bar("dev1", 2) == pe,
        "p2p: D and F hold C's and E's patterns")


def kernel_log_since(marker):
    """The kernel log's lines after the line MARKER (written by kmsg_mark)."""
    lines = subprocess.run(["dmesg"], capture_output=True, text=True).stdout.splitlines()
    at = max((i for i, l in enumerate(lines) if l.endswith(marker)), default=None)
    return lines[at + 1:] if at is not None else []


def kmsg_mark(name):
    """Writes a line into the kernel log, so a case reads only what it caused."""
    marker = "rustmig-test: %s starts at %.6f" % (name, time.monotonic())
    with open("/dev/kmsg", "w") as f:
        f.write(marker + "\n")
    return marker


def refused(vms):
    marker = kmsg_mark("qemu refused")
    src = Vm("refused-src", [BDF["EDU"]])
    vms.append(src)
    tap("dirty tracking" not in src.output(),
        "refused: no dirty tracking warning for edu (rustmig tracks its DMA)",
        src.output())
    before = src.read_regs("dev0", 0, EDU_REGS)
    dst = Vm("refused-dst", [BDF["D"]], incoming=True)
    vms.append(dst)
    # With the return path the source waits for the destination's verdict (see plain).
    info = migrate(src, dst, 4444, caps=("return-path",))
    report("edu -> ivshmem D (refused)", info, vfio_bytes(info))
    dst.proc.wait(30)
    out = dst.output()
    tap(info["status"] == "failed", "refused: edu -> ivshmem fails", json.dumps(info), out)
    # The driver refuses the stream with EPROTO (its identity differs), and
    # QEMU's load fails with that errno.
    tap("load of migration failed: Protocol error" in out,
        "refused: the destination QEMU fails its load with EPROTO", out)
    since = kernel_log_since(marker)
    tap(any("resume: stream refused, its backend differs" in l for l in since),
        "refused: the kernel log names the field that differs, during this case",
        "kernel log since the case started:", "\n".join(since[-10:]))
    tap(src.status() == "running", "refused: the source still runs")
    after = src.read_regs("dev0", 0, EDU_REGS)
    tap(after == before and before[0] == 0x010000ed, "refused: edu's registers are intact",
        "before: %s" % [hex(r) for r in before], "after:  %s" % [hex(r) for r in after])
    dst2 = Vm("refused-retry-dst", [BDF["EDU2"]], incoming=True)
    vms.append(dst2)
    info = migrate(src, dst2, 4445, caps=("return-path",))
    report("edu -> edu 2 (retry)", info, vfio_bytes(info))
    tap(info["status"] == "completed", "refused: the retry to edu 2 completes",
        json.dumps(info), dst2.output())
    moved = dst2.read_regs("dev0", 0, EDU_REGS)
    tap(moved == after, "refused: edu 2 has edu's registers",
        "edu:   %s" % [hex(r) for r in after], "edu 2: %s" % [hex(r) for r in moved])


def cancelled(vms):
    pattern = set_pattern("c", 9)
    src = Vm("cancel-src", [BDF["C"]])
    vms.append(src)
    dst = Vm("cancel-dst", [BDF["D"]], incoming=True)
    vms.append(dst)
    # Slow enough to still be in pre-copy a second in.
    info = migrate(src, dst, 4446, caps=("return-path", "switchover-ack"),
                   params={"max-bandwidth": 64 * 1024}, cancel_after=1.0)
    report("PRE_COPY cancelled", info, vfio_bytes(info))
    tap(info["status"] == "cancelled", "cancel: migrate_cancel mid-precopy cancels",
        json.dumps(info))
    tap(src.status() == "running", "cancel: the source runs")
    tap(src.read_bar("dev0", 2) == pattern, "cancel: C's memory is intact")


# P2P last but the edu case: the host then checks that C = D and E = F.
CASES = (("plain", plain), ("precopy", precopy), ("cancel", cancelled),
         ("p2p", p2p), ("refused", refused))
wanted = sys.argv[2:] or [name for name, _ in CASES]
for name, fn in CASES:
    if name in wanted:
        print("== qemu migration: " + name, flush=True)
        run_case(name, fn)

print("QEMU migration report (TCG inside the test VM):")
print("  %-34s %-10s %12s %12s %14s" % ("migration", "status", "total ms", "downtime ms",
                                          "device bytes"))
for r in rows:
    print("  %-34s %-10s %12s %12s %14s" % r)
with open(TAP, "a") as f:
    f.write("1..%d\n" % tap_n)
