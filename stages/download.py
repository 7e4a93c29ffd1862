"""Stage download: fetch a MovieLens archive, verify it, and write its ratings and titles in one format."""

import os
import tempfile
from pathlib import Path

from artifacts import write_csv, write_json
from datasets import RELEASES
from errors import PipelineError, run_stage
from fetch import MIRROR_VARIABLE, fetch, file_digest, parse_md5_file, resolve_source, safe_extract
from params import DataParams, load_params

OUT = Path("data/raw")


def verify_md5(archive: Path, url: str, params: DataParams) -> None:
    """Releases without pinned member checksums are checked against the .md5 GroupLens publishes beside them."""
    md5_file = archive.with_name(archive.name + ".md5")
    source = resolve_source(url + ".md5", os.environ.get(MIRROR_VARIABLE))
    fetch(source, md5_file, params.timeout_s, params.retries)
    expected = parse_md5_file(md5_file.read_text(errors="replace"), source)
    if file_digest(archive, "md5") != expected:
        raise PipelineError(f"{archive.name}: MD5 does not match {source}; the download is corrupt or altered")


def verify_pins(paths: dict[str, Path], pins: dict[str, str], dataset: str) -> dict[str, str]:
    """Compare each extracted member with its pinned SHA-256 in params.yaml."""
    digests = {member: file_digest(path, "sha256") for member, path in paths.items()}
    for member, path in paths.items():
        pinned = pins.get(path.name)
        if pinned is not None and digests[member] != pinned.lower():
            raise PipelineError(
                f"{member}: SHA-256 {digests[member]} does not match data.sha256.{dataset}.{path.name} in params.yaml"
            )
    return digests


def main() -> None:
    params = DataParams.load(load_params())
    release = RELEASES[params.dataset]
    url = params.url.format(dataset=params.dataset)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / url.rsplit("/", 1)[-1]
        fetch(resolve_source(url, os.environ.get(MIRROR_VARIABLE)), archive, params.timeout_s, params.retries)
        if not params.sha256:
            verify_md5(archive, url, params)
        members = [f"{release.folder}/{release.ratings_member}", f"{release.folder}/{release.movies_member}"]
        paths = safe_extract(archive, members, Path(tmp) / "extracted")
        digests = verify_pins(paths, params.sha256, params.dataset)
        ratings = release.read_ratings(paths[members[0]])
        movies = release.load_movies(paths[members[1]])
        archive_sha256 = file_digest(archive, "sha256")
        source = {"dataset": params.dataset, "archive_sha256": archive_sha256, "members_sha256": digests}
    write_csv(OUT / "ratings.csv", ratings)
    write_csv(OUT / "movies.csv", movies)
    write_json(OUT / "source.json", source)


if __name__ == "__main__":
    run_stage(main)
