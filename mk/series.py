#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""`make series` and `make series-check`: the repository as an upstream patch
series against pristine Linux 7.3.

  series.py series REPO TARBALL WORK OUT AUTHOR
      commits each step of mk/series.txt on top of the pristine tree (a git
      repository kept in WORK/tree), signed off by AUTHOR ("Name <email>"),
      with the MAINTAINERS entry growing as files are added; writes the
      series with `git format-patch` into OUT and runs
      `scripts/checkpatch.pl --strict` on every patch. Exit 1 when a patch
      has a checkpatch error, warning or check (each is printed).

  series.py check WORK OUT CONFIG...
      applies OUT's patches one by one to the pristine tree (`git am`) and
      builds the kernel after each (O=WORK/obj, the config fragments
      CONFIG... on top of tinyconfig): every step must apply and build.
"""
import glob
import os
import re
import shutil
import subprocess
import sys

ENTRY = "RUST [VFIO]"
ENTRY_HEAD = [
    "L:\tkvm@vger.kernel.org",
    "L:\trust-for-linux@vger.kernel.org",
    "S:\tMaintained",
]


def run(cmd, cwd=None, env=None, quiet=True):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=quiet, text=True)
    if r.returncode:
        out = (r.stdout or "") + (r.stderr or "") if quiet else ""
        raise SystemExit("series: %s failed (exit %d)\n%s" % (" ".join(cmd), r.returncode,
                                                            out[-4000:]))
    return r.stdout if quiet else ""


def parse(repo):
    """The steps of mk/series.txt: dicts of subject, patches, adds, maintainers, body."""
    steps, cur, in_body = [], None, False
    with open(os.path.join(repo, "mk", "series.txt")) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("== "):
                cur = {"subject": line[3:], "patches": [], "adds": [], "maintainers": [],
                       "body": []}
                steps.append(cur)
                in_body = False
            elif cur is None:
                continue
            elif not in_body and line.startswith("patch: "):
                cur["patches"].append(line[7:])
            elif not in_body and line.startswith("add: "):
                cur["adds"].append(line[5:])
            elif not in_body and line.startswith("maintainers: "):
                cur["maintainers"].append(line[13:])
            elif not in_body and not line:
                in_body = True
            elif in_body:
                cur["body"].append(line)
    for s in steps:
        while s["body"] and not s["body"][-1]:
            s["body"].pop()
    return steps


def git(tree, *args, env=None):
    return run(["git", "-C", tree] + list(args), env=env)


def pristine(tarball, work):
    """The pristine tree as a git repository, made once per tarball."""
    tree = os.path.join(work, "tree")
    stamp = os.path.join(work, "tree.stamp")
    st = os.stat(tarball)
    want = "%s %d %d\n" % (tarball, st.st_size, int(st.st_mtime))
    if os.path.isfile(stamp) and open(stamp).read() == want:
        return tree
    print("series: unpacking %s into a git repository (once)" % os.path.basename(tarball),
          flush=True)
    shutil.rmtree(tree, ignore_errors=True)
    os.makedirs(tree)
    run(["tar", "-xf", tarball, "-C", tree, "--strip-components=1"])
    env = dict(os.environ, GIT_AUTHOR_NAME="Linux", GIT_AUTHOR_EMAIL="linux@localhost",
               GIT_COMMITTER_NAME="Linux", GIT_COMMITTER_EMAIL="linux@localhost")
    git(tree, "init", "-q")
    git(tree, "add", "-A", "-f")
    git(tree, "commit", "-q", "-m", "Linux 7.3 (linux-source-7.3)", env=env)
    git(tree, "tag", "-f", "pristine")
    with open(stamp, "w") as f:
        f.write(want)
    return tree


def maintainers_entry(tree, patterns):
    """Adds the entry, or its file patterns, to MAINTAINERS, keeping the order."""
    path = os.path.join(tree, "MAINTAINERS")
    with open(path) as f:
        lines = f.read().split("\n")
    author = os.environ["SERIES_AUTHOR"]
    if ENTRY not in lines:
        # Entries are sorted by title (not everywhere): after the last entry of the same
        # first word that sorts before it ("RUST [SYNC]").
        start = lines.index("Maintainers List")
        word = ENTRY.split()[0]
        after = None
        for i in range(start, len(lines) - 1):
            if (lines[i] and not lines[i - 1] and re.match(r"^[A-Z]:\t", lines[i + 1])
                    and lines[i].split()[0] == word and lines[i].upper() < ENTRY):
                after = i
        at = after
        while lines[at]:
            at += 1
        at += 1
        lines[at:at] = [ENTRY, "M:\t" + author] + ENTRY_HEAD + [""]
    i = lines.index(ENTRY) + 1
    end = i
    while lines[end]:
        end += 1
    files = [l for l in lines[i:end] if l.startswith("F:\t")]
    files = sorted(set(files + ["F:\t" + p for p in patterns]))
    rest = [l for l in lines[i:end] if not l.startswith("F:\t")]
    lines[i:end] = rest + files
    with open(path, "w") as f:
        f.write("\n".join(lines))


def uapi_camelcase(tree, issue):
    """Whether @issue is checkpatch's CamelCase check on a name the uAPI headers define
    (VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2): code that uses the uAPI must spell it so."""
    m = re.match(r"^CHECK: Avoid CamelCase: <(\w+)>$", issue)
    if not m:
        return False
    r = subprocess.run(["git", "-C", tree, "grep", "-q", "-w", "-e", "#define " + m.group(1),
                        "--", "include/uapi"], capture_output=True)
    return r.returncode == 0


def series(repo, tarball, work, out, author):
    os.environ["SERIES_AUTHOR"] = author
    m = re.match(r"^(.*\S)\s*<([^>]+)>$", author)
    if not m:
        raise SystemExit("series: AUTHOR must be 'Name <email>', not %r" % author)
    env = dict(os.environ, GIT_AUTHOR_NAME=m.group(1), GIT_AUTHOR_EMAIL=m.group(2),
               GIT_COMMITTER_NAME=m.group(1), GIT_COMMITTER_EMAIL=m.group(2))
    steps = parse(repo)
    os.makedirs(work, exist_ok=True)
    tree = pristine(tarball, work)
    git(tree, "checkout", "-q", "-f", "-B", "series", "pristine")
    git(tree, "clean", "-q", "-fdx")
    used = set()
    for s in steps:
        for p in s["patches"]:
            used.add(p)
            run(["git", "apply", "--index", os.path.join(repo, "patches", p)], cwd=tree)
        for a in s["adds"]:
            src = os.path.join(repo, a)
            dst = os.path.join(tree, a)
            if os.path.isdir(src):
                shutil.copytree(src, dst, dirs_exist_ok=True)
            else:
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy2(src, dst)
            git(tree, "add", "-f", a)
        if s["maintainers"]:
            maintainers_entry(tree, s["maintainers"])
            git(tree, "add", "-f", "MAINTAINERS")
        msg = s["subject"] + "\n\n" + "\n".join(s["body"]) + "\n"
        git(tree, "commit", "-q", "-s", "-m", msg, env=env)
    listed = [l.strip() for l in open(os.path.join(repo, "patches", "series"))
              if l.strip() and not l.startswith("#")]
    missing = [p for p in listed if p not in used]
    if missing:
        raise SystemExit("series: mk/series.txt does not use these patches: %s" % missing)
    # Every file of the repository at a kernel path is in the series.
    ours = run(["git", "-C", repo, "ls-files", "Documentation", "drivers", "include", "rust",
                "samples", "tools/testing"]).split()
    absent = [f for f in ours if not os.path.exists(os.path.join(tree, f))]
    if absent:
        raise SystemExit("series: mk/series.txt does not add these files: %s" % absent)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    git(tree, "format-patch", "-q", "--base=pristine", "-o", out, "pristine..series")
    patches = sorted(glob.glob(os.path.join(out, "*.patch")))
    print("series: %d patches in %s" % (len(patches), out))
    bad = 0
    for p in patches:
        r = subprocess.run(["perl", "scripts/checkpatch.pl", "--strict", "-q", p], cwd=tree,
                           capture_output=True, text=True)
        issues = [l for l in r.stdout.splitlines() if re.match(r"^(ERROR|WARNING|CHECK):", l)
                  and not uapi_camelcase(tree, l)]
        print("  %-72s %s" % (os.path.basename(p)[:72],
                              "checkpatch clean" if not issues else "%d issue(s)" % len(issues)))
        if issues:
            bad += 1
            for l in r.stdout.rstrip().splitlines():
                print("    | " + l)
    if bad:
        print("series: FAILED: checkpatch --strict finds issues in %d patch(es)" % bad,
              file=sys.stderr)
        return 1
    print("series: every patch is checkpatch --strict clean")
    return 0


def check(work, out, configs):
    tree = os.path.join(work, "tree")
    obj = os.path.join(work, "obj")
    patches = sorted(glob.glob(os.path.join(out, "*.patch")))
    if not patches or not os.path.isdir(os.path.join(tree, ".git")):
        raise SystemExit("series: run `make series` first")
    git(tree, "checkout", "-q", "-f", "-B", "series-check", "pristine")
    git(tree, "clean", "-q", "-fdx")
    os.makedirs(obj, exist_ok=True)
    env = dict(os.environ, PATH="/usr/bin:/usr/sbin:" + os.environ.get("PATH", ""))
    jobs = "-j%d" % ((os.cpu_count() or 1) + 1)
    for i, p in enumerate(patches, 1):
        name = os.path.basename(p)
        r = subprocess.run(["git", "-C", tree, "am", "-q", p], capture_output=True, text=True)
        if r.returncode:
            print("series-check: %s does not apply:\n%s" % (name, r.stdout + r.stderr))
            return 1
        run(["make", "-C", tree, "O=" + obj, "LLVM=1", "tinyconfig"], env=env)
        run(["scripts/kconfig/merge_config.sh", "-m", "-O", obj, os.path.join(obj, ".config")]
            + configs, cwd=tree, env=env)
        run(["make", "-C", tree, "O=" + obj, "LLVM=1", "olddefconfig"], env=env)
        log = os.path.join(work, "build-%02d.log" % i)
        with open(log, "w") as f:
            r = subprocess.run(["make", "-C", tree, "O=" + obj, "LLVM=1", jobs, "all"],
                               stdout=f, stderr=subprocess.STDOUT, env=env)
        if r.returncode:
            print("series-check: the kernel does not build after %s (log %s):" % (name, log))
            with open(log) as f:
                print("".join(l for l in f if "error" in l.lower())[-3000:])
            return 1
        print("series-check: %s applies and builds" % name, flush=True)
    print("series-check: all %d patches apply and build, one at a time" % len(patches))
    return 0


def main():
    if len(sys.argv) == 7 and sys.argv[1] == "series":
        return series(*sys.argv[2:])
    if len(sys.argv) >= 4 and sys.argv[1] == "check":
        return check(sys.argv[2], sys.argv[3], sys.argv[4:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
