#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""`make mutants`: build each mutant of mk/mutants.txt, or print the table of
a run of them.

  mutants.py build REPO SRC OBJ OUT   the driver with each of its mutations,
                                      built as an external module in
                                      OUT/NAME/rustmig_vfio_pci.ko (OUT/list
                                      names them, one a line; OUT/core-list
                                      names the kernel crate's mutants)
  mutants.py build-core REPO SRC OBJ OBJ_M OUT NAME
                                      the kernel with the kernel crate's
                                      mutation NAME, built in OBJ_M (a build
                                      tree of its own, with OBJ's config);
                                      its rustmig module is copied to
                                      OUT/core/NAME/NAME/ and OUT/core/NAME/list
                                      names it. SRC is restored afterwards.
  mutants.py report REPO RESULTS      the table: each mutant, killed by which
                                      test, or survived and why; exit 1 when
                                      fewer than 90% are killed or a survivor
                                      has no reason
"""
import os
import shutil
import subprocess
import sys

DRV = "drivers/vfio/pci/rustmig"
KO = "rustmig_vfio_pci.ko"


def is_core(m):
    """A mutant of the kernel crate, not of the driver."""
    return "/" in m["file"]


def mutate(text, m):
    """The text with the mutation of @m, or None when its text is not found once."""
    n = text.count(m["old"])
    if n != 1:
        print("mutants: %s: its text is found %d times in %s, not once" %
              (m["name"], n, m["file"]), file=sys.stderr)
        return None
    return text.replace(m["old"], m["new"])


def make_env():
    return dict(os.environ, PATH="/usr/bin:/usr/sbin:" + os.environ.get("PATH", ""))


def parse(repo):
    """The mutants: dicts of name, file, what, old, new, survives."""
    out, cur, part = [], None, None
    with open(os.path.join(repo, "mk", "mutants.txt")) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("== "):
                name, file = line[3:].split()
                cur = {"name": name, "file": file, "what": "", "old": [], "new": [],
                       "survives": ""}
                out.append(cur)
                part = "what"
            elif cur is None or (part == "what" and line.startswith("#")):
                continue
            elif line == "---":
                part = "old"
            elif line == "+++":
                part = "new"
            elif line.startswith("survives: "):
                cur["survives"] = line[len("survives: "):]
            elif part == "what" and line:
                cur["what"] = line
            elif part in ("old", "new"):
                cur[part].append(line)
    for m in out:
        for k in ("old", "new"):
            while m[k] and not m[k][-1]:
                m[k].pop()
            m[k] = "\n".join(m[k]) + ("\n" if m[k] else "")
    return out


def build(repo, src, obj, out):
    mutants = parse(repo)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    driver = [m for m in mutants if not is_core(m)]
    core = [m for m in mutants if is_core(m)]
    for m in core:
        # Checked now, built one at a time by build-core.
        with open(os.path.join(repo, m["file"])) as f:
            if mutate(f.read(), m) is None:
                return 1
    for m in driver:
        d = os.path.join(out, m["name"])
        shutil.copytree(os.path.join(repo, DRV), d)
        path = os.path.join(d, m["file"])
        with open(path) as f:
            text = mutate(f.read(), m)
        if text is None:
            return 1
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run(["make", "-C", src, "O=" + obj, "LLVM=1", "M=" + d, "modules"],
                           capture_output=True, text=True, env=make_env())
        if r.returncode or not os.path.exists(os.path.join(d, KO)):
            print("mutants: %s does not build:\n%s" % (m["name"], (r.stdout + r.stderr)[-3000:]),
                  file=sys.stderr)
            return 1
        print("mutants: built %s" % m["name"], flush=True)
    with open(os.path.join(out, "list"), "w") as f:
        f.write("".join(m["name"] + "\n" for m in driver))
    with open(os.path.join(out, "core-list"), "w") as f:
        f.write("".join(m["name"] + "\n" for m in core))
    print("mutants: %d driver mutants built in %s; %d kernel crate mutants to build one by one"
          % (len(driver), out, len(core)))
    return 0


def build_core(repo, src, obj, obj_m, out, name):
    m = next((m for m in parse(repo) if m["name"] == name and is_core(m)), None)
    if m is None:
        print("mutants: no kernel crate mutant %s" % name, file=sys.stderr)
        return 2
    os.makedirs(obj_m, exist_ok=True)
    shutil.copyfile(os.path.join(obj, ".config"), os.path.join(obj_m, ".config"))
    path = os.path.join(src, m["file"])
    st = os.stat(path)
    with open(path) as f:
        text = f.read()
    mutated = mutate(text, m)
    if mutated is None:
        return 1
    jobs = str((os.cpu_count() or 1) + 1)
    try:
        with open(path, "w") as f:
            f.write(mutated)
        r = subprocess.run(["make", "-C", src, "O=" + obj_m, "LLVM=1", "-j" + jobs,
                            "olddefconfig", "bzImage", "modules"],
                           capture_output=True, text=True, env=make_env())
    finally:
        # The test kernel's tree sees the file it was built from, as it was.
        with open(path, "w") as f:
            f.write(text)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    ko = os.path.join(obj_m, DRV, KO)
    if r.returncode or not os.path.exists(ko):
        print("mutants: %s does not build:\n%s" % (name, (r.stdout + r.stderr)[-3000:]),
              file=sys.stderr)
        return 1
    d = os.path.join(out, "core", name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, name))
    shutil.copyfile(ko, os.path.join(d, name, KO))
    with open(os.path.join(d, "list"), "w") as f:
        f.write(name + "\n")
    print("mutants: built the kernel of %s in %s" % (name, obj_m), flush=True)
    return 0


def report(repo, results):
    mutants = parse(repo)
    killed, rows, bad = 0, [], 0
    for m in mutants:
        try:
            with open(os.path.join(results, "mutant-%s.txt" % m["name"])) as f:
                verdict = f.read().strip().splitlines()[-1]
        except (OSError, IndexError):
            verdict = "not run"
        if verdict.startswith("killed"):
            killed += 1
            how = verdict[len("killed by "):] if verdict.startswith("killed by ") else verdict
            rows.append((m["name"], "killed", how))
        elif verdict.startswith("survived"):
            if not m["survives"]:
                bad += 1
            rows.append((m["name"], "SURVIVED", m["survives"] or "(no reason given: a defect)"))
        else:
            bad += 1
            rows.append((m["name"], "NOT RUN", verdict))
    w = max(len(r[0]) for r in rows)
    print("mutants of the driver and the kernel crate (mk/mutants.txt), run against the fast suite:")
    print("  %-*s  %-8s  %s" % (w, "mutant", "result", "killed by / why it survives"))
    for r in rows:
        print("  %-*s  %-8s  %s" % (w, r[0], r[1], r[2]))
    pct = 100.0 * killed / len(mutants) if mutants else 0
    print("mutants: %d of %d killed (%.0f%%); %d survived" %
          (killed, len(mutants), pct, sum(1 for r in rows if r[1] == "SURVIVED")))
    ok = pct >= 90 and bad == 0
    if not ok:
        print("mutants: FAILED: fewer than 90%% killed, or a mutant not run or surviving "
              "without a reason", file=sys.stderr)
    return 0 if ok else 1


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "build":
        return build(*sys.argv[2:])
    if len(sys.argv) == 8 and sys.argv[1] == "build-core":
        return build_core(*sys.argv[2:])
    if len(sys.argv) == 4 and sys.argv[1] == "report":
        return report(*sys.argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
