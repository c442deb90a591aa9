"""Fetching a data set's official files, verified, only when asked (`--download`).

The official source first, with a short timeout (offline machines fail fast); else, on a
Debian-family machine, Debian's package of the same files (`apt-get download` into a temporary
folder and `dpkg-deb -x`: no root needed); else one error naming both ways and the folder. Every
file is checked before anything is written: a `.gz` is accepted when its MD5 is the published one
or its content's SHA-256 is the known one (Debian recompresses the official files, so its `.gz`
bytes differ while the content is identical). The fetchers are arguments, so tests inject fakes.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import DataError

TIMEOUT_S = 5.0  # per request to the official source: fail fast where there is no network
APT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Source:
    """Where a family's files come from and how to check them."""
    pretty: str  # "Fashion-MNIST"
    names: tuple[str, ...]  # the uncompressed file names; the fetched files are NAME.gz
    urls: tuple[str, ...]  # official base URLs, tried in order (file URL = base + NAME.gz)
    gz_md5: dict[str, str] = field(default_factory=dict)  # published MD5 of the official NAME.gz
    sha256: dict[str, str] = field(default_factory=dict)  # SHA-256 of the uncompressed NAME
    deb_package: str | None = None  # Debian's package with the same files
    deb_dir: str | None = None  # the folder of the NAME.gz files inside that package


Fetcher = Callable[[Source, Path], Path]  # (source, empty work folder) -> folder holding NAME.gz


def fetch_official(src: Source, work: Path) -> Path:
    """Download every NAME.gz from the first official URL that answers (TIMEOUT_S per request)."""
    errors = []
    for base in src.urls:
        try:
            for name in src.names:
                with urllib.request.urlopen(base + name + ".gz", timeout=TIMEOUT_S) as resp, \
                        open(work / (name + ".gz"), "wb") as out:
                    shutil.copyfileobj(resp, out)
            return work
        except OSError as err:  # URLError, timeouts and refused connections are OSErrors
            errors.append(f"{base}: {getattr(err, 'reason', err)}")
    raise OSError("; ".join(errors) or "no official URL")


def fetch_debian(src: Source, work: Path) -> Path:
    """`apt-get download PACKAGE` into `work` and `dpkg-deb -x` it there; the folder of its files."""
    if not src.deb_package:
        raise OSError(f"Debian ships no package of {src.pretty}")
    missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        raise OSError(f"{' and '.join(missing)} not found: not a Debian-family machine")

    def run(*cmd: str) -> None:
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
        if proc.returncode != 0:
            last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise OSError(f"`{' '.join(cmd)}` failed: {last[0]}")

    run("apt-get", "download", src.deb_package)
    debs = sorted(work.glob(f"{src.deb_package}_*.deb"))
    if not debs:
        raise OSError(f"apt-get download {src.deb_package} left no .deb (run `apt-get update` first)")
    run("dpkg-deb", "-x", debs[-1].name, "unpacked")
    return work / "unpacked" / (src.deb_dir or "")


FETCHERS: tuple[tuple[str, Fetcher], ...] = (("the official source", fetch_official),
                                             ("Debian's package", fetch_debian))


def verified(gz: Path, name: str, src: Source, origin: str) -> bytes:
    """The uncompressed content of `gz` if its MD5 is the published one or the content's SHA-256 is
    the known one; DataError (naming both digests) otherwise."""
    data = gz.read_bytes()
    md5 = hashlib.md5(data).hexdigest()
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError) as err:
        raise DataError(f"{name}.gz from {origin} is not a gzip file ({err}): refused") from None
    sha = hashlib.sha256(raw).hexdigest()
    if src.gz_md5.get(name) == md5 or src.sha256.get(name) == sha:
        return raw
    raise DataError(f"{name}.gz from {origin} failed its checksum (MD5 {md5}, content SHA-256 {sha}; expected "
                    f"MD5 {src.gz_md5.get(name, '?')} or SHA-256 {src.sha256.get(name, '?')}): refused")


def fetch(src: Source, dest: Path, fetchers: Sequence[tuple[str, Fetcher]] | None = None) -> str:
    """Put every file of `src` into `dest`, uncompressed and verified, from the first source that
    gives all of them intact; returns that source's name. Nothing is written unless every file
    passed its check. DataError naming each way and the folder when none did. `fetchers`: (name,
    fetcher) pairs in the order to try (default FETCHERS, read at call time)."""
    failures = []
    for origin, fetcher in (FETCHERS if fetchers is None else fetchers):
        with tempfile.TemporaryDirectory(prefix="eclab-fetch-") as tmp:
            try:
                folder = fetcher(src, Path(tmp))
                lost = [n + ".gz" for n in src.names if not (folder / (n + ".gz")).is_file()]
                if lost:
                    raise OSError(f"no {', '.join(lost)} there")
                contents = {name: verified(folder / (name + ".gz"), name, src, origin) for name in src.names}
            except (OSError, subprocess.SubprocessError, DataError) as err:
                failures.append(f"{origin}: {err}")
                continue
        dest.mkdir(parents=True, exist_ok=True)
        for name, raw in contents.items():
            part = dest / (name + ".partial")
            part.write_bytes(raw)
            os.replace(part, dest / name)
        return origin
    how = f"download {src.urls[0]}{{{','.join(src.names)}}}.gz" if src.urls else "get the official files"
    debian = (f"; or, on a Debian-family machine, `apt-get download {src.deb_package}`, `dpkg-deb -x` the .deb "
              f"and copy the .gz files from its {src.deb_dir}/") if src.deb_package else ""
    raise DataError(f"could not fetch {src.pretty} into {dest} ({'; '.join(failures)}). Either {how}{debian}, "
                    f"and put the files into {dest}")
