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
#        qemu-migrate.py --agent ADDR PORT
#
# CASE: plain, precopy, cancel, p2p, refused, writer (all by default), and
# writer-ratio (writer with its stop-and-copy baseline), writer-big and
# writer-cost (make bench); the cross-host cases xhost-plain,
# xhost-precopy, xhost-p2p, xhost-refused, xhost-cancel, xhost-netdrop,
# xhost-multifd and xhost-versions (mk/xhost.sh: the destination QEMU runs on
# the second test host, whose agent, this program with --agent, starts it and
# writes its devices' backing files).
#
# Environment: RUSTMIG_BDF_NAME for each device NAME of mk/devices (A to H,
# EDU and EDU2 are used, bound to rustmig), RUSTMIG_OUT (its ivshmem-NAME are
# the backing files of the ivshmem devices), RUSTMIG_TESTS (the guest program
# rustmig_bar_writer.bin) and RUSTMIG_OBJ (rustmig's module, loaded again for
# the writer cases' stop-and-copy half).
# Cross-host: RUSTMIG_XHOST_PEER (the second host's address, where its agent
# listens on AGENT_PORT), RUSTMIG_XHOST_PEER_OUT (its output directory, the
# backing files of its devices, read through the host root) and
# RUSTMIG_XHOST_ADDR (this host's address). RUSTMIG_QEMU_11: QEMU 11.1.
# Writes RESULTS_DIR/qemu-migration.tap and prints the report table.

import json
import mmap
import os
import re
import socket
import struct
import subprocess
import sys
import time

AGENT = sys.argv[1] == "--agent"
RESULTS = "" if AGENT else sys.argv[1]
OUT = os.environ["RUSTMIG_OUT"]
DEVICES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "devices")
with open(DEVICES) as _f:
    BDF = {line.split()[0]: os.environ.get("RUSTMIG_BDF_" + line.split()[0], "")
           for line in _f if line.strip() and not line.startswith("#")}
TAP = os.path.join(RESULTS, "qemu-migration.tap")
RUN = "/tmp/qemu-migrate"
QEMU = os.environ.get("RUSTMIG_INNER_QEMU", "qemu-system-x86_64")
QEMU_11 = os.environ.get("RUSTMIG_QEMU_11", "")
PEER = os.environ.get("RUSTMIG_XHOST_PEER", "")
PEER_OUT = os.environ.get("RUSTMIG_XHOST_PEER_OUT", "")
HERE = os.environ.get("RUSTMIG_XHOST_ADDR", "127.0.0.1")
AGENT_PORT = 4500
# Where a QEMU on the second host writes its log and trace (its output share),
# and where this host reads them.
PEER_RUN = "/tmp/out/xhost"
MIB = 1 << 20
PAGE = 4096
WRITER = os.path.join(os.environ.get("RUSTMIG_TESTS", ""), "rustmig_bar_writer.bin")
KO = os.path.join(os.environ.get("RUSTMIG_OBJ", ""), "drivers/vfio/pci/rustmig/rustmig_vfio_pci.ko")
# edu's id, liveness, factorial, status and irq status registers, and the low
# halves of its DMA source, destination and count.
EDU_REGS = (0x00, 0x04, 0x08, 0x20, 0x24, 0x80, 0x88, 0x90)

# QEMU's own account of the migration, in each QEMU's log: the device state
# each side set, and every read and write of the data_fd with its result.
TRACE = ("vfio_migration_set_state", "vfio_migration_set_device_state", "vfio_save_setup",
         "vfio_save_block", "vfio_save_complete_precopy", "vfio_save_cleanup",
         "vfio_load_state", "vfio_load_state_device_data", "vfio_load_device_config_state_*",
         "vfio_load_cleanup", "vfio_save_complete_precopy_thread_*", "vfio_load_bufs_thread_*",
         # QEMU 11.1's (patterns: no warning from 10.0, which has neither).
         "vfio_migration_init*", "vfio_query_precopy_size*")

os.makedirs(RUN, exist_ok=True)
tap_n = 0
tap_failed = 0
rows = []
ratios = []


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


# How long a QEMU may take to listen for QMP: a start takes seconds, and many more while the
# other VMs of make check load this machine's cores.
QMP_TIMEOUT = 240


class Qmp:
    """A QMP connection to one QEMU."""

    def __init__(self, path, timeout=QMP_TIMEOUT):
        """@path: a UNIX socket's path, or (address, port) for TCP."""
        deadline = time.time() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_INET if isinstance(path, tuple)
                                          else socket.AF_UNIX)
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

    def __init__(self, name, bdfs, incoming=False, boot=None, paused=False, peer=None,
                 qemu=QEMU, machine="q35", props="", lazy=False):
        """A QEMU here, or with @peer (an Agent) on the second host, listening for QMP
        on TCP port @peer_port there. @props: more vfio-pci properties. @lazy: connect()
        later, so that the next QEMU starts meanwhile (a start takes seconds here)."""
        self.name = name
        self.peer = peer
        # The address a migration to this QEMU connects to.
        self.addr = PEER if peer else "127.0.0.1"
        # Where this QEMU writes its files, and where this program reads them.
        where, self.dir = (PEER_RUN, os.path.join(PEER_OUT, "xhost")) if peer else (RUN, RUN)
        self.log = os.path.join(self.dir, name + ".log")
        # The trace goes to a file of its own: in the log it would also reach the output of
        # human monitor commands.
        self.trace = os.path.join(self.dir, name + ".trace")
        self.qemu_dir = where
        if peer:
            qmp = "tcp:%s:%d,server=on,wait=off" % (PEER, peer.qmp_port(name))
        else:
            sock = os.path.join(RUN, name + ".qmp")
            if os.path.exists(sock):
                os.unlink(sock)
            qmp = "unix:%s,server=on,wait=off" % sock
        args = [qemu, "-accel", "tcg", "-M", machine, "-m", "64", "-nodefaults",
                "-display", "none", "-serial", "none", "-monitor", "none",
                "-qmp", qmp, "-msg", "timestamp=on", "-D", os.path.join(where, name + ".trace")]
        for event in TRACE:
            args += ["-trace", event]
        for i, bdf in enumerate(bdfs):
            # The same guest address on both sides: QEMU matches device state by it.
            args += ["-device", "vfio-pci,host=%s,enable-migration=on,id=dev%d,addr=0x%x%s"
                     % (bdf, i, 4 + i, props)]
        if boot:
            # The guest program's disk: read once by the firmware, never written. Without
            # drop-cache, a destination's block layer calls fadvise(), which the test
            # kernel lacks (no CONFIG_ADVISE_SYSCALLS), when it starts.
            args += ["-drive", "file=%s,format=raw,if=ide,file.locking=off,file.drop-cache=off"
                     % boot]
        if paused:
            args += ["-S"]
        if incoming:
            args += ["-incoming", "defer"]
        if peer:
            self.proc = None
            peer.call("qemu", name=name, args=args)
            self.qmp_at = (PEER, peer.qmp_port(name))
        else:
            self.proc = subprocess.Popen(args, stdout=open(self.log, "w"),
                                         stderr=subprocess.STDOUT)
            self.qmp_at = sock
        self.qmp = None
        if not lazy:
            self.connect()

    def connect(self):
        """Connects to the QEMU's QMP, once it listens; says why not, with the QEMU's log."""
        start = time.time()
        try:
            self.qmp = Qmp(self.qmp_at)
        except OSError as e:
            # Stopped, so that it holds no device for the cases after this one.
            why = self.status_of_process()
            self.kill()
            raise RuntimeError("%s: no QMP at %s after %.0f s: %s\n%s" % (
                self.name, self.qmp_at, time.time() - start, e, why)) from e

    def status_of_process(self):
        """Whether this QEMU still runs, and the end of its log."""
        if self.proc is None:
            return "(on the second host: its log is %s)" % self.log
        rc = self.proc.poll()
        return "QEMU %s; the end of its log:\n%s" % (
            "still runs" if rc is None else "exited with status %d" % rc, self.output()[-1500:])

    def wait(self, timeout):
        """Waits for this QEMU to exit; returns its exit status (None: still running)."""
        if self.peer:
            return self.peer.call("wait", name=self.name, timeout=timeout)["rc"]
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

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
        name = "%s-%s-bar%d.bin" % (self.name, dev, bar)
        self.qmp.cmd("pmemsave", val=addr, size=length or size,
                     filename=os.path.join(self.qemu_dir, name))
        with open(os.path.join(self.dir, name), "rb") as f:
            return f.read()

    def status(self):
        return self.qmp.cmd("query-status")["status"]

    def quit(self):
        try:
            if self.qmp:
                self.qmp.cmd("quit")
        except (OSError, RuntimeError, ValueError):
            pass
        if self.wait(30) is None:
            self.kill()

    def kill(self):
        """Kills this QEMU (SIGKILL) and waits for it."""
        if self.peer:
            self.peer.call("kill", name=self.name)
        else:
            self.proc.kill()
            self.proc.wait()


class Agent:
    """The second test host's agent (this program with --agent)."""

    def __init__(self, timeout=600):
        deadline = time.time() + timeout
        while True:
            try:
                self.sock = socket.create_connection((PEER, AGENT_PORT), timeout=5)
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("no agent at %s:%d after %d s" % (PEER, AGENT_PORT,
                                                                         timeout))
                time.sleep(2)
        self.sock.settimeout(None)
        self.f = self.sock.makefile("rw")
        self.ports = {}

    def qmp_port(self, name):
        """The TCP port of QEMU @name's QMP on the second host."""
        return self.ports.setdefault(name, 4600 + len(self.ports))

    def call(self, op, **args):
        args["op"] = op
        self.f.write(json.dumps(args) + "\n")
        self.f.flush()
        line = self.f.readline()
        if not line:
            raise RuntimeError("the agent at %s closed the connection" % PEER)
        r = json.loads(line)
        if "error" in r:
            raise RuntimeError("agent %s: %s" % (op, r["error"]))
        return r


def agent_main(addr, port):
    """The agent of the second test host: starts and stops its QEMUs, and writes its
    devices' backing files, as the first host's qemu-migrate.py asks."""
    os.makedirs(PEER_RUN, exist_ok=True)
    procs = {}
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(1)
    # Host 1 connects once its in-guest cases are done; a host 1 that never does fails
    # this host's run rather than hold it until the runner's timeout.
    srv.settimeout(1500)
    print("agent: listening on %s:%d" % (addr, port), flush=True)
    while True:
        conn, _ = srv.accept()
        conn.settimeout(None)
        f = conn.makefile("rw")
        for line in f:
            req = json.loads(line)
            op = req.pop("op")
            try:
                if op == "qemu":
                    log = open(os.path.join(PEER_RUN, req["name"] + ".log"), "w")
                    procs[req["name"]] = subprocess.Popen(req["args"], stdout=log,
                                                          stderr=subprocess.STDOUT)
                    r = {}
                elif op == "wait":
                    try:
                        r = {"rc": procs[req["name"]].wait(req["timeout"])}
                    except subprocess.TimeoutExpired:
                        r = {"rc": None}
                elif op == "kill":
                    procs[req["name"]].kill()
                    r = {"rc": procs[req["name"]].wait()}
                elif op == "pattern":
                    set_pattern(req["letter"], req["seed"])
                    r = {}
                elif op == "kmsg":
                    with open("/dev/kmsg", "w") as k:
                        k.write(req["line"] + "\n")
                    r = {}
                elif op == "dmesg":
                    r = {"log": subprocess.run(["dmesg"], capture_output=True,
                                               text=True).stdout}
                elif op == "bye":
                    for p in procs.values():
                        if p.poll() is None:
                            p.kill()
                            p.wait()
                    f.write("{}\n")
                    f.flush()
                    return
                else:
                    r = {"error": "unknown op %r" % op}
            except Exception as e:  # noqa: BLE001 - every failure goes back to the caller
                r = {"error": "%s: %s" % (type(e).__name__, e)}
            f.write(json.dumps(r) + "\n")
            f.flush()
        conn.close()
        raise RuntimeError("host 1 closed the connection without saying bye")


def file_bytes(path, length):
    with open(path, "rb") as f:
        return f.read(length)


def pattern_of(seed):
    """A MiB whose byte i is (seed * 131 + i * 7 + (i >> 12)) mod 256: each page is one
    256-byte cycle repeated, shifted by the page's number (a byte at a time, this takes
    seconds under TCG)."""
    cycle = bytes(i * 7 & 0xff for i in range(256)) * (PAGE // 256)
    return b"".join(cycle.translate(bytes((b + seed * 131 + p) & 0xff for b in range(256)))
                    for p in range(MIB // PAGE))


def set_pattern(letter, seed, peer=None):
    """Fill ivshmem @letter's memory with a pattern, through its backing file (on the second
    host's if @peer, its Agent, is given)."""
    if peer:
        peer.call("pattern", letter=letter, seed=seed)
    pattern = pattern_of(seed)
    if peer:
        return pattern
    with open(os.path.join(OUT, "ivshmem-" + letter), "r+b") as f:
        f.write(pattern)
    return pattern


def migrate(src, dst, port, caps=(), params=None, cancel_after=None, both=None, during=None):
    """Migrate @src to @dst; returns the final query-migrate of the source. @both: parameters
    for both sides; @during(info): called with each query-migrate while it runs."""
    for vm in (src, dst):
        if caps:
            vm.qmp.cmd("migrate-set-capabilities",
                       capabilities=[{"capability": c, "state": True} for c in caps])
        if both:
            vm.qmp.cmd("migrate-set-parameters", **both)
    # Under TCG inside TCG the measured bandwidth is low: with the default
    # 300 ms downtime limit the device state alone would never fit and the
    # migration would stay in pre-copy. The cancel case keeps it there.
    src.qmp.cmd("migrate-set-parameters", **(params or {"downtime-limit": 20000}))
    uri = "tcp:%s:%d" % (dst.addr, port)
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
        if during:
            during(info)
        if time.time() - start > 300:
            src.qmp.cmd("migrate_cancel")
            return {"status": "timeout", "last": info}
        time.sleep(0.2)


def report(case, info, device_bytes, split=("-", "-")):
    rows.append((case, info.get("status", "?"), info.get("total-time", "-"),
                 info.get("downtime", "-"), device_bytes) + tuple(split))


def vfio_bytes(info):
    return (info.get("vfio") or {}).get("transferred", "-")


def step(what):
    """Prints how long the running case has taken so far: where its time goes, in the log."""
    print("   %s: %s at %.1f s" % (_case[0], what, time.time() - _case[1]), flush=True)


_case = ["-", 0.0]


def run_case(name, fn):
    vms = []
    failed = tap_failed
    marker = kmsg_mark("qemu " + name)
    _case[:] = [name, time.time()]
    try:
        fn(vms)
    except Exception as e:  # noqa: BLE001 - every failure becomes a TAP line
        lines = str(e).splitlines() or [repr(e)]
        tap(False, name + ": " + lines[0], *lines[1:])
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
    step("done")


def plain(vms):
    pattern = set_pattern("c", 1)
    set_pattern("d", 2)
    src = Vm("plain-src", [BDF["C"]], lazy=True)
    vms.append(src)
    dst = Vm("plain-dst", [BDF["D"]], incoming=True)
    vms.append(dst)
    src.connect()
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
    src = Vm("precopy-src", [BDF["C"]], lazy=True)
    vms.append(src)
    dst = Vm("precopy-dst", [BDF["D"]], incoming=True)
    vms.append(dst)
    src.connect()
    info = migrate(src, dst, 4442, caps=("return-path", "switchover-ack"))
    report("PRE_COPY + switchover-ack C -> D", info, vfio_bytes(info))
    tap(info["status"] == "completed", "precopy: C -> D with switchover-ack completed",
        json.dumps(info), dst.output())
    tap(dst.status() == "running", "precopy: the destination runs")
    tap(dst.read_bar("dev0", 2) == pattern, "precopy: D's memory is the pattern")
    if re.match(r"11\.[1-9]|1[2-9]\.|[2-9]\d\.", qemu_version(QEMU)):
        qemu_11_precopy(src, dst)


def qemu_11_precopy(src, dst):
    """What QEMU 11.1 asks of a PRE_COPY device that 10.0 does not: the PRECOPY_INFOv2
    opt-in at realize, and with switchover-ack in its new mode (machine q35 = pc-q35-11.1),
    a last PRECOPY_INFO when the VM stops, before PRE_COPY_P2P, which must not report
    REINIT (new initial data would fail the switchover)."""
    for vm in (src, dst):
        tap(re.search(r"vfio_migration_init .*precopy_info_v2_used 1", vm.traced()) is not None,
            "precopy, QEMU 11.1: %s's device accepted the PRECOPY_INFOv2 opt-in" % vm.name,
            "\n".join(l for l in vm.traced().splitlines() if "vfio_migration_init" in l))
    lines = src.traced().splitlines()
    p2p = [i for i, l in enumerate(lines) if re.search(r"set_state\b.*new state PRE_COPY_P2P", l)]
    queries = [i for i, l in enumerate(lines) if "vfio_query_precopy_size " in l]
    last = max((i for i in queries if p2p and i < p2p[0]), default=None)
    tap(p2p and last is not None and "reinit 0, ret 0" in lines[last] and
        all("reinit 0" in lines[i] for i in queries),
        "precopy, QEMU 11.1: the last PRECOPY_INFO before PRE_COPY_P2P succeeds, no REINIT",
        "\n".join(lines[-40:]))


def p2p(vms):
    pc, pe = set_pattern("c", 5), set_pattern("e", 6)
    set_pattern("d", 7)
    set_pattern("f", 8)
    src = Vm("p2p-src", [BDF["C"], BDF["E"]], lazy=True)
    vms.append(src)
    dst = Vm("p2p-dst", [BDF["D"], BDF["F"]], incoming=True)
    vms.append(dst)
    src.connect()
    info = migrate(src, dst, 4443, caps=("return-path",))
    report("two devices (P2P) C+E -> D+F", info, vfio_bytes(info))
    tap(info["status"] == "completed", "p2p: C+E -> D+F completed", json.dumps(info),
        dst.output())
    tap(dst.read_bar("dev0", 2) == pc and dst.read_bar("dev1", 2) == pe,
        "p2p: D and F hold C's and E's patterns")


def kernel_log_since(marker, peer=None):
    """The kernel log's lines after the line MARKER (written by kmsg_mark), on the second
    host if @peer is given."""
    if peer:
        lines = peer.call("dmesg")["log"].splitlines()
    else:
        lines = subprocess.run(["dmesg"], capture_output=True, text=True).stdout.splitlines()
    at = max((i for i, l in enumerate(lines) if l.endswith(marker)), default=None)
    return lines[at + 1:] if at is not None else []


def kmsg_mark(name, peer=None):
    """Writes a line into the kernel log (the second host's if @peer is given), so a case
    reads only what it caused."""
    marker = "rustmig-test: %s starts at %.6f" % (name, time.monotonic())
    if peer:
        peer.call("kmsg", line=marker)
        return marker
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
    dst.wait(30)
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
    src = Vm("cancel-src", [BDF["C"]], lazy=True)
    vms.append(src)
    dst = Vm("cancel-dst", [BDF["D"]], incoming=True)
    vms.append(dst)
    src.connect()
    # Slow enough to still be in pre-copy a second in.
    info = migrate(src, dst, 4446, caps=("return-path", "switchover-ack"),
                   params={"max-bandwidth": 64 * 1024}, cancel_after=1.0)
    report("PRE_COPY cancelled", info, vfio_bytes(info))
    tap(info["status"] == "cancelled", "cancel: migrate_cancel mid-precopy cancels",
        json.dumps(info))
    tap(src.status() == "running", "cancel: the source runs")
    tap(src.read_bar("dev0", 2) == pattern, "cancel: C's memory is intact")


def writer_disk(name, pages, stride):
    """The disk of a guest that keeps writing a counter into every @stride-th page of the
    first @pages pages of dev0's BAR2 (tools/testing/selftests/vfio/rustmig_bar_writer.S)."""
    with open(WRITER, "rb") as f:
        sector = bytearray(f.read())
    # dev0 sits in guest slot 4 (Vm), its BAR2 at configuration offset 0x18.
    struct.pack_into("<III", sector, 0x1f0, 0x80000000 | 4 << 11 | 0x18, stride * PAGE,
                     (pages - 1) // stride + 1)
    path = os.path.join(RUN, name + ".img")
    with open(path, "wb") as f:
        f.write(sector)
        # SeaBIOS cannot read a disk of one sector ("could not read the boot disk").
        f.truncate(MIB)
    return path


def counter(letter):
    """The counter the writer stored last into ivshmem @letter's first page."""
    with open(os.path.join(OUT, "ivshmem-" + letter), "rb") as f:
        return struct.unpack("<I", f.read(4))[0]


def wait_counter(letter, above, what, timeout=120):
    """Waits for the counter in ivshmem @letter to pass @above; returns it."""
    deadline = time.time() + timeout
    while True:
        c = counter(letter)
        if c > above:
            return c
        if time.time() > deadline:
            raise RuntimeError("%s: the counter in ivshmem-%s stayed at %d, below %d"
                               % (what, letter, c, above + 1))
        time.sleep(0.2)


def bar_memory(letter, write=False):
    """ivshmem @letter's memory as this VM reads it: its BAR2, mapped through sysfs.

    The same bytes as its backing file, whose share (9p, uncached) moves them at a few MiB
    a second under TCG: the writer case's fill and compare of 2 x 64 MiB took 134 s and
    130 s through it. The BAR is the backing file's memory, mapped by the test VM's QEMU."""
    path = "/sys/bus/pci/devices/%s/resource2" % BDF[letter.upper()]
    fd = os.open(path, os.O_RDWR if write else os.O_RDONLY)
    try:
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if write else 0)
        return mmap.mmap(fd, os.fstat(fd).st_size, mmap.MAP_SHARED, prot)
    finally:
        os.close(fd)


def bar_is_backing(letter, bar):
    """Whether @bar (bar_memory(@letter)) shows ivshmem @letter's backing file: its second
    page is the file's (a BAR whose decoding is off would read all ones)."""
    return bar[PAGE:2 * PAGE] == file_bytes(os.path.join(OUT, "ivshmem-" + letter), 2 * PAGE)[PAGE:]


def fill_random(letter):
    """Fills ivshmem @letter with random bytes but a zero counter; returns its size."""
    # One random MiB, rotated by a number of bytes that is no multiple of a page for each
    # MiB: no two pages alike, and much faster under TCG than as many random bytes.
    block = os.urandom(MIB)
    with bar_memory(letter, write=True) as bar:
        size = len(bar)
        for i in range(size // MIB):
            at = i * 4099 % MIB
            bar[i * MIB:(i + 1) * MIB] = block[at:] + block[:at]
        bar[0:4] = bytes(4)
        if not bar_is_backing(letter, bar):
            raise RuntimeError("ivshmem-%s: its BAR2, mapped through sysfs, is not its backing "
                               "file" % letter)
    return size


def differing_pages(a, b):
    """ivshmem @a's and @b's memory: their sizes and the pages that differ."""
    with bar_memory(a) as ma, bar_memory(b) as mb:
        for letter, m in ((a, ma), (b, mb)):
            if not bar_is_backing(letter, m):
                return ["ivshmem-%s: its BAR2, mapped through sysfs, is not its backing file"
                        % letter]
        if len(ma) != len(mb):
            return ["sizes %d and %d" % (len(ma), len(mb))]
        if ma[:] == mb[:]:
            return []
        return [p for p in range(len(ma) // PAGE)
                if ma[p * PAGE:(p + 1) * PAGE] != mb[p * PAGE:(p + 1) * PAGE]]


def vfio_split(vm):
    """The device bytes @vm (a source) read before and after it set STOP_COPY, from its trace."""
    pre = stop = 0
    stopped = False
    for line in vm.traced().splitlines():
        m = re.search(r"vfio_migration_set_state\b.*new state (\w+)", line)
        if m and m.group(1) == "STOP_COPY":
            stopped = True
        m = re.search(r"vfio_save_block\b.*data_size (\d+)", line)
        if m:
            if stopped:
                stop += int(m.group(1))
            else:
                pre += int(m.group(1))
    return pre, stop


def reload_rustmig(live):
    """Loads rustmig again with live_precopy=@live: the devices it drove bind again through
    their driver_override."""
    def driver(bdf):
        return os.path.basename(os.path.realpath("/sys/bus/pci/devices/%s/driver" % bdf))
    bound = [b for b in BDF.values() if b and driver(b) == "rustmig_vfio_pci"]
    for cmd in (["rmmod", "rustmig_vfio_pci"], ["insmod", KO, "live_precopy=%d" % live]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), r.returncode, r.stderr))
    lost = [b for b in bound if driver(b) != "rustmig_vfio_pci"]
    if lost:
        raise RuntimeError("live_precopy=%d: %s did not bind again" % (live, lost))


def writer_migration(vms, label, pair, live, port, stride=100):
    """Migrates a guest that keeps writing every @stride-th page of ivshmem @pair[0]'s
    memory to ivshmem @pair[1], with rustmig's memory moving in PRE_COPY (@live) or all
    in STOP_COPY; the destination must then hold the source's final memory and its guest
    must go on counting. Returns the downtime."""
    s, d = pair
    mode = "PRE_COPY" if live else "stop-and-copy"
    name = "%s, %s" % (label, mode)
    size = fill_random(s)
    fill_random(d)
    step("ivshmem-%s and ivshmem-%s filled" % (s, d))
    pages = size // PAGE
    disk = writer_disk("writer-" + s, pages, stride)
    src = Vm("writer-%s-%s" % (s, int(live)), [BDF[s.upper()]], boot=disk)
    vms.append(src)
    first = wait_counter(s, 0, name + ": the guest writes")
    step("the source's guest writes")
    dst = Vm("writer-%s-%s" % (d, int(live)), [BDF[d.upper()]], incoming=True, boot=disk,
             paused=True)
    vms.append(dst)
    # QEMU switches over once what is left fits the downtime limit at the bandwidth it
    # measured. While only dirty bits move it measures almost none, and a stop-and-copy
    # source, whose memory is all left, would stay in pre-copy for ever: both modes get
    # the same fixed bandwidth instead, so both switch over once the destination
    # acknowledged the initial data.
    info = migrate(src, dst, port, caps=("return-path", "switchover-ack"),
                   params={"downtime-limit": 20000, "avail-switchover-bandwidth": 1 << 30})
    step("migrated")
    pre, stop = vfio_split(src)
    # Both sides' vfio traces, kept with the results: where the downtime went.
    for vm in (src, dst):
        with open(os.path.join(RESULTS, vm.name + ".trace"), "w") as f:
            f.write(vm.traced())
    report("%s %s %s -> %s" % (label, mode, s.upper(), d.upper()), info, vfio_bytes(info),
           (pre, stop))
    tap(info["status"] == "completed", name + ": completed", json.dumps(info), dst.output())
    tap(src.status() == "postmigrate" and dst.status() == "paused",
        name + ": the source is left paused, the destination waits (-S)",
        "source %s, destination %s" % (src.status(), dst.status()))
    final = counter(s)
    tap(final > first, name + ": the guest wrote during the migration",
        "counter %d when it started, %d when the source stopped" % (first, final))
    diff = differing_pages(s, d)
    step("ivshmem-%s and ivshmem-%s compared" % (s, d))
    tap(not diff, name + ": ivshmem-%s holds ivshmem-%s's final memory, byte for byte" % (d, s),
        "%d page(s) differ, the first: %s" % (len(diff), diff[:8]))
    if live:
        tap(pre > size > stop, name + ": the memory moved in pre-copy",
            "bytes before STOP_COPY %d, after %d, memory %d" % (pre, stop, size))
    else:
        tap(stop > size > pre, name + ": the memory moved in STOP_COPY",
            "bytes before STOP_COPY %d, after %d, memory %d" % (pre, stop, size))
    dst.qmp.cmd("cont")
    went_on = wait_counter(d, final, name + ": the guest goes on on the destination")
    tap(dst.status() == "running", name + ": the guest counts on from %d on the destination"
        % final, "counter %d" % went_on)
    return info.get("downtime")


def writers(vms, label, pair, port):
    """The same writer migration with rustmig's memory moving in PRE_COPY and all in STOP_COPY,
    and the ratio of their downtimes."""
    down = writer_migration(vms, label, pair, True, port)
    for vm in vms:
        vm.quit()
    del vms[:]
    reload_rustmig(False)
    try:
        base = writer_migration(vms, label, pair, False, port + 1)
    finally:
        for vm in vms:
            vm.quit()
        del vms[:]
        reload_rustmig(True)
    if down and base:
        ratios.append("%s: downtime with PRE_COPY %d ms, stop-and-copy %d ms: %.3fx"
                      % (label, down, base, down / base))


def writer(vms):
    """make check's writer case: rustmig's memory moves in PRE_COPY. Its stop-and-copy half,
    which only gives the downtime ratio a baseline, is make bench's writer-ratio."""
    writer_migration(vms, "64 MiB, ~1% written", ("g", "h"), True, 4447)


def writer_ratio(vms):
    writers(vms, "64 MiB, ~1% written", ("g", "h"), 4447)


def writer_big(vms):
    writers(vms, "%d MiB, ~1%% written" % (os.path.getsize(os.path.join(OUT, "ivshmem-a")) // MIB),
            ("a", "b"), 4449)


def writer_cost(vms):
    """The tracker's cost: the writes per second of a guest that writes every page of G,
    untracked, then while QEMU's pre-copy passes track them (a downtime limit that the
    migration never meets, cancelled after a while)."""
    pages = fill_random("g") // PAGE
    disk = writer_disk("writer-cost", pages, 1)
    src = Vm("writer-cost-src", [BDF["G"]], boot=disk)
    vms.append(src)
    wait_counter("g", 0, "writer-cost: the guest writes")

    def rate(seconds):
        c0, t0 = counter("g"), time.time()
        time.sleep(seconds)
        c1, t1 = counter("g"), time.time()
        return (c1 - c0) * pages / (t1 - t0)

    off = rate(10)
    dst = Vm("writer-cost-dst", [BDF["H"]], incoming=True, boot=disk, paused=True)
    vms.append(dst)
    for vm in (src, dst):
        vm.qmp.cmd("migrate-set-capabilities",
                   capabilities=[{"capability": "return-path", "state": True}])
    src.qmp.cmd("migrate-set-parameters", **{"downtime-limit": 1})
    dst.qmp.cmd("migrate-incoming", uri="tcp:127.0.0.1:4451")
    src.qmp.cmd("migrate", uri="tcp:127.0.0.1:4451")
    time.sleep(2)
    on = rate(10)
    st = src.qmp.cmd("query-migrate").get("status")
    src.qmp.cmd("migrate_cancel")
    tap(st == "active" and on > 0 and off > 0,
        "writer-cost: the guest writes with and without tracking",
        "untracked %.0f writes/s, tracked %.0f writes/s, migration %s" % (off, on, st))
    ratios.append("tracker cost (a guest writing all %d pages): %.0f writes/s untracked, "
                  "%.0f tracked in pre-copy: %.3fx" % (pages, off, on, on / off if off else 0))


_agent = []
xrows = []
# One machine type on both sides, whatever their QEMU versions.
XMACHINE = "pc-q35-10.0"


def agent():
    """The second host's agent, connected once."""
    if not _agent:
        _agent.append(Agent())
    return _agent[0]


def file_name(case, role):
    """The name of a cross-host case's QEMU, for its files: xhost-CASE-ROLE."""
    return "xhost-%s-%s" % (re.sub(r"[^a-z0-9]+", "-", case.lower()).strip("-"), role)


def qemu_version(qemu):
    out = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version (\d+\.\d+)", out)
    return m.group(1) if m else "?"


def same_backing(letter):
    """Whether ivshmem @letter's backing file on the second host holds the same bytes as
    the one on this host (both read through the host's files, not the guests')."""
    with open(os.path.join(OUT, "ivshmem-" + letter), "rb") as a, \
            open(os.path.join(PEER_OUT, "ivshmem-" + letter), "rb") as b:
        return a.read() == b.read()


def xhost(vms, case, letters, port, caps=("return-path",), params=None, both=None,
          props="", dst_qemu=QEMU, channels=1):
    """Migrates a guest with ivshmem @letters from this host to the same devices on the
    second host: it must complete, leave the source paused and the destination running,
    and the destination devices' backing files must equal the source's."""
    peer = agent()
    seed = 20 + port % 100
    patterns = [set_pattern(l, seed + i) for i, l in enumerate(letters)]
    for i, l in enumerate(letters):
        set_pattern(l, seed + 50 + i, peer)
    devs = [BDF[l.upper()] for l in letters]
    # Both QEMUs start at once, each on its host.
    dst = Vm(file_name(case, "dst"), devs, incoming=True, peer=peer, qemu=dst_qemu,
             machine=XMACHINE, props=props, lazy=True)
    vms.append(dst)
    src = Vm(file_name(case, "src"), devs, machine=XMACHINE, props=props)
    vms.append(src)
    dst.connect()
    info = migrate(src, dst, port, caps=caps, params=params, both=both)
    names = "+".join(l.upper() for l in letters)
    xreport("%s %s -> %s" % (case, names, names), info, channels, QEMU, dst_qemu)
    tap(info["status"] == "completed", "xhost %s: %s on host 1 -> host 2 completed"
        % (case, names), json.dumps(info), dst.output())
    tap(src.status() == "postmigrate" and dst.status() == "running",
        "xhost %s: the source is left paused, the destination runs" % case,
        "source %s, destination %s" % (src.status(), dst.status()))
    for l, pattern in zip(letters, patterns):
        tap(same_backing(l) and file_bytes(os.path.join(PEER_OUT, "ivshmem-" + l), MIB)
            == pattern, "xhost %s: host 2's ivshmem-%s equals host 1's, byte for byte"
            % (case, l))
    return src, dst


def xreport(case, info, channels, src_qemu, dst_qemu):
    xrows.append((case, info.get("status", "?"), info.get("total-time", "-"),
                  info.get("downtime", "-"), vfio_bytes(info), channels,
                  "%s -> %s" % (qemu_version(src_qemu), qemu_version(dst_qemu))))


def xhost_plain(vms):
    xhost(vms, "stop-and-copy", "c", 4460)


def xhost_precopy(vms):
    xhost(vms, "PRE_COPY + switchover-ack", "c", 4461, caps=("return-path", "switchover-ack"))


def xhost_p2p(vms):
    xhost(vms, "two devices (P2P)", "ce", 4462)


def xhost_multifd(vms):
    src, dst = xhost(vms, "multifd", "ce", 4463, caps=("return-path", "multifd"),
                     both={"multifd-channels": 4}, props=",x-migration-multifd-transfer=on",
                     channels=4)
    # The device state came through the multifd channels: the destination ran the thread
    # that loads what they bring (vfio_load_bufs_thread), which runs only with multifd device
    # state transfer, once for each device. (The source's save threads' trace events never
    # showed in its trace, in two runs out of two.)
    loaded = re.findall(r"vfio_load_bufs_thread_end", dst.traced())
    tap(len(loaded) == 2,
        "xhost multifd: both devices' state came through the multifd channels",
        "load threads that ended: %d" % len(loaded), dst.traced()[-3000:])


def xhost_versions(vms):
    if not QEMU_11:
        raise RuntimeError("no QEMU 11.1 (RUSTMIG_QEMU_11)")
    xhost(vms, "QEMU 10.0 -> 11.1, PRE_COPY", "c", 4464, caps=("return-path", "switchover-ack"),
          dst_qemu=QEMU_11)


def xhost_refused(vms):
    """edu on host 1 to ivshmem D on host 2: refused there; the source runs on, and the
    retry to host 2's edu completes."""
    peer = agent()
    marker = kmsg_mark("xhost refused", peer)
    dst = Vm("xhost-refused-dst", [BDF["D"]], incoming=True, peer=peer, machine=XMACHINE,
             lazy=True)
    vms.append(dst)
    src = Vm("xhost-refused-src", [BDF["EDU"]], machine=XMACHINE)
    vms.append(src)
    before = src.read_regs("dev0", 0, EDU_REGS)
    dst.connect()
    info = migrate(src, dst, 4465, caps=("return-path",))
    xreport("refused: edu -> ivshmem D", info, 1, QEMU, QEMU)
    dst.wait(30)
    out = dst.output()
    tap(info["status"] == "failed", "xhost refused: edu -> host 2's ivshmem fails",
        json.dumps(info), out)
    tap("load of migration failed: Protocol error" in out,
        "xhost refused: host 2's QEMU fails its load with EPROTO", out)
    since = kernel_log_since(marker, peer)
    tap(any("resume: stream refused, its backend differs" in l for l in since),
        "xhost refused: host 2's kernel log names the field that differs",
        "\n".join(since[-10:]))
    tap(src.status() == "running", "xhost refused: the source still runs")
    after = src.read_regs("dev0", 0, EDU_REGS)
    tap(after == before and before[0] == 0x010000ed, "xhost refused: edu's registers are intact",
        "before: %s" % [hex(r) for r in before], "after:  %s" % [hex(r) for r in after])
    dst2 = Vm("xhost-refused-retry", [BDF["EDU"]], incoming=True, peer=peer, machine=XMACHINE)
    vms.append(dst2)
    info = migrate(src, dst2, 4466, caps=("return-path",))
    xreport("retry: edu -> edu", info, 1, QEMU, QEMU)
    tap(info["status"] == "completed", "xhost refused: the retry to host 2's edu completes",
        json.dumps(info), dst2.output())
    moved = dst2.read_regs("dev0", 0, EDU_REGS)
    tap(moved == after, "xhost refused: host 2's edu has host 1's edu registers",
        "host 1: %s" % [hex(r) for r in after], "host 2: %s" % [hex(r) for r in moved])


def xhost_interrupted(vms, case, port, interrupt):
    """A migration of C in pre-copy, slowed down, that @interrupt(src, dst) stops after a
    second of device data: the source must run on with C intact, and a retry to the same
    device on host 2, after its QEMU is gone, must complete byte for byte."""
    peer = agent()
    pattern = set_pattern("c", 40 + port % 10)
    set_pattern("c", 90, peer)
    dst = Vm(file_name(case, "dst"), [BDF["C"]], incoming=True, peer=peer, machine=XMACHINE,
             lazy=True)
    vms.append(dst)
    src = Vm(file_name(case, "src"), [BDF["C"]], machine=XMACHINE)
    vms.append(src)
    dst.connect()
    state = {}

    def during(info):
        if "at" not in state and vfio_bytes(info) not in ("-", 0):
            state["at"] = time.time()
        if "at" in state and "done" not in state and time.time() - state["at"] > 1:
            state["done"] = interrupt(src, dst)

    # Slowed down, and paused before the switchover, which only migrate-continue would let
    # happen: the migration cannot complete before it is interrupted, however fast the
    # device's data moved (a downtime limit of 1 ms was not enough: once the device's
    # pre-copy data had moved, what was left fitted).
    info = migrate(src, dst, port,
                   caps=("return-path", "switchover-ack", "pause-before-switchover"),
                   params={"max-bandwidth": 64 * 1024, "downtime-limit": 1}, during=during)
    xreport("%s, C" % case, info, 1, QEMU, QEMU)
    tap("done" in state and info["status"] in ("cancelled", "failed"),
        "xhost %s: the migration stops mid-stream" % case, json.dumps(info),
        "interrupted: %s" % state.get("done"))
    tap(src.status() == "running", "xhost %s: the source runs" % case)
    tap(src.read_bar("dev0", 2) == pattern and
        file_bytes(os.path.join(OUT, "ivshmem-c"), MIB) == pattern,
        "xhost %s: host 1's C is intact" % case)
    # The destination QEMU waits for a stream that never comes: gone, its device was
    # reset when its file closed.
    dst.kill()
    dst2 = Vm(file_name(case, "retry"), [BDF["C"]], incoming=True, peer=peer,
              machine=XMACHINE)
    vms.append(dst2)
    # The source keeps the interrupted migration's capabilities, which the destination must
    # share, and its limits: at full speed again, and no pause.
    src.qmp.cmd("migrate-set-capabilities",
                capabilities=[{"capability": "pause-before-switchover", "state": False}])
    info = migrate(src, dst2, port + 1, caps=("return-path", "switchover-ack"),
                   params={"downtime-limit": 20000, "max-bandwidth": 1 << 30})
    xreport("%s, retry C" % case, info, 1, QEMU, QEMU)
    tap(info["status"] == "completed" and same_backing("c"),
        "xhost %s: a retry to host 2's C completes, byte for byte" % case,
        json.dumps(info), dst2.output())


def xhost_cancel(vms):
    def cancel(src, _dst):
        src.qmp.cmd("migrate_cancel")
        return "migrate_cancel"
    xhost_interrupted(vms, "cancel", 4467, cancel)


def xhost_netdrop(vms):
    def drop(src, _dst):
        # The link goes down under the stream; QEMU would wait for TCP to give up, so the
        # operator cancels, then the link comes back.
        subprocess.run(["ip", "link", "set", XLINK, "down"], check=True)
        time.sleep(3)
        st = src.qmp.cmd("query-migrate").get("status")
        src.qmp.cmd("migrate_cancel")
        deadline = time.time() + 60
        while src.qmp.cmd("query-migrate").get("status") not in ("cancelled", "failed"):
            if time.time() > deadline:
                break
            time.sleep(0.2)
        subprocess.run(["ip", "link", "set", XLINK, "up"], check=True)
        return "link down 3 s (migration %s), cancelled, link up" % st
    xhost_interrupted(vms, "network drop", 4469, drop)


XLINK = os.environ.get("RUSTMIG_XHOST_LINK", "eth0")


# P2P last but the edu case: the host then checks that C = D and E = F.
CASES = (("plain", plain), ("precopy", precopy), ("cancel", cancelled),
         ("p2p", p2p), ("refused", refused), ("writer", writer))
BENCH = (("writer-ratio", writer_ratio), ("writer-big", writer_big), ("writer-cost", writer_cost))
XHOST = (("xhost-plain", xhost_plain), ("xhost-precopy", xhost_precopy), ("xhost-p2p", xhost_p2p),
         ("xhost-refused", xhost_refused), ("xhost-cancel", xhost_cancel),
         ("xhost-netdrop", xhost_netdrop), ("xhost-multifd", xhost_multifd),
         ("xhost-versions", xhost_versions))
if AGENT:
    agent_main(sys.argv[2], int(sys.argv[3]))
    sys.exit(0)
wanted = sys.argv[2:] or [name for name, _ in CASES]
for name, fn in CASES + BENCH + XHOST:
    if name in wanted:
        print("== qemu migration: " + name, flush=True)
        run_case(name, fn)
if _agent:
    _agent[0].call("bye")

if rows:
    print("QEMU migration report (TCG inside the test VM, QEMU %s):" % qemu_version(QEMU))
    print("  %-42s %-10s %9s %11s %12s %12s %12s" % (
        "migration", "status", "total ms", "downtime ms", "device bytes", "pre-copy B",
        "stop-copy B"))
    for r in rows:
        print("  %-42s %-10s %9s %11s %12s %12s %12s" % r)
for r in ratios:
    print("  " + r)
if xrows:
    print("Cross-host migration report (host 1 -> host 2 over their virtual network):")
    print("  %-42s %-10s %9s %11s %12s %8s %14s" % (
        "migration", "status", "total ms", "downtime ms", "device bytes", "channels",
        "QEMU versions"))
    for r in xrows:
        print("  %-42s %-10s %9s %11s %12s %8s %14s" % r)
with open(TAP, "a") as f:
    f.write("1..%d\n" % tap_n)
