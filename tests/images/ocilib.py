"""Test images built with the real tools (umoci, skopeo, GNU tar, mksquashfs) from a busybox tree.

    build_all(work) -> Images with
      tree          the busybox tree (tests/envs/build-mini-env.sh) + /opt/data/{doomed.txt,keep.txt}
      layout        OCI image layout, tag "v1", two layers:
                      1: the tree
                      2: (umoci unpack + repack) deletes /opt/data/doomed.txt (a whiteout), adds
                         /opt/data/b.txt and /opt/data/hard, a hard link to it
                    config: Env A=1, PATH=/usr/bin:/bin, WORDS=a b=c; WorkingDir /opt/data;
                    created 2024-01-02T03:04:05Z
      multi         a copy of layout with a second tag "v2" (another config: Env B=2)
      oci_archive   skopeo copy oci:layout:v1 oci-archive:...
      docker_archive skopeo copy oci:layout:v1 docker-archive:...:envsched/test:v1
      rootfs_tar    tar -czf of the unpacked v1 (numeric owners)
      squashfs      mksquashfs of the tree
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
BUILD_MINI = REPO / "tests" / "envs" / "build-mini-env.sh"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
CREATED = "2024-01-02T03:04:05Z"
V1_ENV = ("A=1", "PATH=/usr/bin:/bin", "WORDS=a b=c")


@dataclass
class Images:
    work: Path
    tree: Path
    layout: Path
    multi: Path
    oci_archive: Path
    docker_archive: Path
    rootfs_tar: Path
    squashfs: Path
    manifest_digest: str          # of layout:v1, from its index.json


def sh(*args: str, cwd: Path) -> str:
    p = subprocess.run(list(args), cwd=str(cwd), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout}")
    return p.stdout


def ref_digest(layout: Path, tag: str) -> str:
    index = json.loads((layout / "index.json").read_text())
    for m in index["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return m["digest"]
    raise KeyError(tag)


def build_all(work: Path) -> Images:
    work.mkdir(mode=0o755, parents=True, exist_ok=True)
    tree = work / "tree"
    subprocess.run([str(BUILD_MINI), str(tree), "debian", "12", "OCI test (mini)"], check=True,
                   stdout=subprocess.DEVNULL, env=ENV)
    (tree / "opt" / "data").mkdir(mode=0o755)
    (tree / "opt" / "data" / "doomed.txt").write_text("deleted in layer 2\n")
    (tree / "opt" / "data" / "keep.txt").write_text("kept\n")

    sh("umoci", "init", "--layout", "layout", cwd=work)
    sh("umoci", "new", "--image", "layout:v1", cwd=work)
    sh("umoci", "insert", "--image", "layout:v1", "tree", "/", cwd=work)
    sh("umoci", "unpack", "--image", "layout:v1", "bundle", cwd=work)
    data = work / "bundle" / "rootfs" / "opt" / "data"
    (data / "doomed.txt").unlink()
    (data / "b.txt").write_text("bee\n")
    os.link(data / "b.txt", data / "hard")
    sh("umoci", "repack", "--image", "layout:v1", "bundle", cwd=work)
    sh("umoci", "config", "--image", "layout:v1", *[f"--config.env={e}" for e in V1_ENV],
       "--config.workingdir", "/opt/data", "--created", CREATED, cwd=work)
    shutil.rmtree(work / "bundle")

    shutil.copytree(work / "layout", work / "multi", symlinks=True)
    sh("umoci", "config", "--image", "multi:v1", "--tag", "v2", "--config.env", "B=2", cwd=work)

    sh("skopeo", "copy", "-q", "oci:layout:v1", "oci-archive:image.oci.tar:v1", cwd=work)
    sh("skopeo", "copy", "-q", "oci:layout:v1", "docker-archive:image.docker.tar:envsched/test:v1", cwd=work)

    sh("umoci", "unpack", "--image", "layout:v1", "flat", cwd=work)
    sh("tar", "--numeric-owner", "-C", "flat/rootfs", "-czf", "rootfs.tar.gz", ".", cwd=work)
    shutil.rmtree(work / "flat")

    sh("mksquashfs", "tree", "tree.sqfs", "-noappend", "-no-progress", "-quiet", cwd=work)
    return Images(work, tree, work / "layout", work / "multi", work / "image.oci.tar", work / "image.docker.tar",
                  work / "rootfs.tar.gz", work / "tree.sqfs", ref_digest(work / "layout", "v1"))


def crafted_user_squashfs(tree: Path, work: Path, sqfs: Path, pw) -> None:
    """As crafted as a user can make one: `tree` copied to `work` (the user's), a setuid-root
    busybox at /opt/suid/busybox, PRETTY_NAME "my own (mini)", made into `sqfs` by the user `pw`
    with `mksquashfs -all-root` (every file claims to be root's). Raises if mksquashfs fails."""
    subprocess.run(["cp", "-a", str(tree), str(work)], check=True)
    (work / "opt" / "suid").mkdir()
    shutil.copy2(work / "usr" / "bin" / "busybox", work / "opt" / "suid" / "busybox")
    (work / "opt" / "suid" / "busybox").chmod(0o4755)
    (work / "etc" / "os-release").write_text('PRETTY_NAME="my own (mini)"\n')
    subprocess.run(["chown", "-R", f"{pw.pw_uid}:{pw.pw_gid}", str(work)], check=True)
    r = subprocess.run(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "mksquashfs",
                        str(work), str(sqfs), "-all-root", "-quiet", "-no-progress"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"mksquashfs as {pw.pw_name} failed: {r.stderr}")


if __name__ == "__main__":
    import sys
    imgs = build_all(Path(sys.argv[1]))
    for k, v in vars(imgs).items():
        print(f"{k}: {v}")
