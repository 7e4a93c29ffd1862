"""Getting an archive from GroupLens or a mirror, checking its digests, and extracting it safely."""

import hashlib
import http.client
import shutil
import ssl
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

from tqdm import tqdm

from lenscf.errors import PipelineError

MIRROR_VARIABLE = "MOVIELENS_MIRROR"
BACKOFF_S = 0.5  # doubled after each failed try
CHUNK = 1 << 16


def _bar(total: int | None, desc: str) -> tqdm:
    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False, disable=None)


def resolve_source(url: str, mirror: str | None) -> str:
    """The URL, or the same file name under the mirror (a folder or a URL) when one is set."""
    if not mirror:
        return url
    name = url.rsplit("/", 1)[-1]
    if "://" in mirror:
        return f"{mirror.rstrip('/')}/{name}"
    return str(Path(mirror) / name)


def _is_transient(err: Exception) -> bool:
    """Server errors, throttling, resets, cut-off bodies and time-outs may pass; a 404 or a bad certificate will not."""
    if isinstance(err, urllib.error.HTTPError):
        return err.code >= 500 or err.code == 429
    if isinstance(err, urllib.error.URLError):
        return not isinstance(err.reason, ssl.SSLError)
    return isinstance(err, ConnectionError | TimeoutError | http.client.HTTPException)


def _download_once(url: str, dest: Path, timeout_s: float) -> None:
    with urllib.request.urlopen(url, timeout=timeout_s) as response, dest.open("wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with _bar(total, url.rsplit("/", 1)[-1]) as bar:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))


def fetch(source: str, dest: Path, timeout_s: float, retries: int) -> None:
    """Copy `source` (a URL or a local path) to `dest`, retrying transient network failures with back-off."""
    if "://" not in source:
        try:
            shutil.copyfile(source, dest)
        except OSError as err:
            raise PipelineError(f"{MIRROR_VARIABLE}: cannot read {source}: {err.strerror}") from err
        return
    for attempt in range(retries + 1):
        try:
            _download_once(source, dest, timeout_s)
            return
        except Exception as err:
            if not _is_transient(err) or attempt == retries:
                raise PipelineError(
                    f"cannot download {source} ({err}) after {attempt + 1} tries. If the host is unreachable, "
                    f"set {MIRROR_VARIABLE} to a folder or URL that holds {source.rsplit('/', 1)[-1]}"
                ) from err
            time.sleep(BACKOFF_S * 2**attempt)


def file_digest(path: Path, algorithm: str) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def parse_md5_file(text: str, source: str) -> str:
    """GroupLens' .md5 files hold the digest first, optionally followed by the file name."""
    words = text.split()
    if not words or len(words[0]) != 32:
        raise PipelineError(f"{source}: expected an MD5 digest, got {text[:60]!r}")
    return words[0].lower()


def verify_md5(archive: Path, md5_source: str, timeout_s: float, retries: int) -> None:
    """Releases without pinned member checksums are checked against the .md5 GroupLens publishes beside them."""
    md5_file = archive.with_name(archive.name + ".md5")
    fetch(md5_source, md5_file, timeout_s, retries)
    expected = parse_md5_file(md5_file.read_text(errors="replace"), md5_source)
    if file_digest(archive, "md5") != expected:
        raise PipelineError(f"{archive.name}: MD5 does not match {md5_source}; the download is corrupt or altered")


def verify_pins(digests: dict[str, str], pins: dict[str, str], pin_key: str) -> None:
    """Compare each extracted member's SHA-256 with its pin in params.yaml (`pin_key`.<file name>)."""
    for member, digest in digests.items():
        name = member.rsplit("/", 1)[-1]
        pinned = pins.get(name)
        if pinned is not None and digest != pinned.lower():
            raise PipelineError(f"{member}: SHA-256 {digest} does not match {pin_key}.{name} in params.yaml")


def safe_extract(archive: Path, members: list[str], dest: Path) -> dict[str, tuple[Path, str]]:
    """Extract `members` and return each one's path and SHA-256, refusing the archive if any entry would land
    outside `dest`. The digest is taken while the bytes are written, so the data is read once."""
    root = dest.resolve()
    extracted = {}
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for name in names:
                if not (root / name).resolve().is_relative_to(root):
                    raise PipelineError(f"{archive.name}: refusing member {name!r}, which points outside its folder")
            for member in members:
                if member not in names:
                    raise PipelineError(f"{archive.name}: has no member {member}")
                path = root / member
                path.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                size = zf.getinfo(member).file_size
                with zf.open(member) as src, path.open("wb") as out, _bar(size, f"extract {member}") as bar:
                    while chunk := src.read(CHUNK * 16):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
                extracted[member] = (path, digest.hexdigest())
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise PipelineError(f"{archive.name}: not a valid zip archive ({err}); delete it or fix the mirror") from err
    return extracted
