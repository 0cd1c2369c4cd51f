"""The newest Orthanc Debian offers (1.13 with DICOMweb 1.24 and GDCM, from the unstable
suite) as a benchmark peer, run from a chroot beside the host's Debian 12 (see
shared/ENVIRONMENT.md for why each step is there).

    python -m benchmarks.orthanc_sid [DIR]    # set up once (3-5 minutes), then reused

The chroot lives outside the checkout (default /var/tmp/orthanc-sid). Setting it up needs
root, debootstrap and Debian's archive; `ensure` answers None when that is not possible, and
the benchmark then runs without this peer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

DEFAULT_DIR = Path(os.environ.get("DICOMWEB_BENCH_ORTHANC_SID", "/var/tmp/orthanc-sid"))
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("orthanc", "orthanc-dicomweb", "orthanc-gdcm")
BINARY = "usr/sbin/Orthanc"
PLUGINS = "usr/share/orthanc/plugins"
PRELOAD = "usr/local/lib/benchmark-preload.so"


def ready(root: Path) -> bool:
    return (
        (root / BINARY).is_file()
        and (root / PLUGINS / "libOrthancDicomWeb.so").is_file()
        and (root / PRELOAD).is_file()
    )


def _run(*command: str, root: Path | None = None) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    full = ["chroot", str(root), *command] if root is not None else list(command)
    done = subprocess.run(full, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print((done.stdout + done.stderr)[-2000:], file=sys.stderr)
        raise subprocess.CalledProcessError(done.returncode, full)


def ensure(root: Path = DEFAULT_DIR) -> Path | None:
    """The chroot with Orthanc 1.13 installed, set up when missing; None if impossible."""
    if ready(root):
        return root
    if os.geteuid() != 0:
        return None
    if shutil.which("debootstrap") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "debootstrap"], check=False)
    if shutil.which("debootstrap") is None or shutil.which("gcc") is None:
        return None
    try:
        if not (root / "usr/bin/apt-get").is_file():
            shutil.rmtree(root, ignore_errors=True)
            _run("debootstrap", "--variant=minbase", "sid", str(root), MIRROR)
        # The package's postinst would start a server on every interface: forbid it.
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        # This machine's clock may be past the archive's Valid-Until.
        (root / "etc/apt/apt.conf.d/99benchmark").write_text(
            'Acquire::Check-Valid-Until "false";\n'
        )
        # DCMTK resolves the hostname for every UID unless /etc/hostid exists.
        shutil.copy("/etc/hosts", root / "etc/hosts")
        (root / "etc/hostid").write_bytes(b"\x7f\x00\x01\x00")
        _run("apt-get", "update", "-qq", root=root)
        _run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES, root=root)
        source = Path(__file__).with_name("orthanc_preload.c")
        (root / PRELOAD).parent.mkdir(parents=True, exist_ok=True)
        _run("gcc", "-O2", "-shared", "-fPIC", "-o", str(root / PRELOAD), str(source), "-ldl")
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"orthanc 1.13 set-up failed: {exc}", file=sys.stderr)
        return None
    return root if ready(root) else None


def version(root: Path) -> str:
    found = subprocess.run(
        ["chroot", str(root), "/" + BINARY, "--version"], capture_output=True, text=True
    )
    return found.stdout.splitlines()[0] if found.stdout else "unknown"


if __name__ == "__main__":
    where = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR
    made = ensure(where)
    if made is None:
        print("Orthanc 1.13 cannot be set up here", file=sys.stderr)
        sys.exit(1)
    print(f"{version(made)} in {made}")
