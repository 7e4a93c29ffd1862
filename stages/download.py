"""Stage download: fetch a MovieLens archive, verify it, and write its ratings and titles in one format."""

import argparse
import os
import tempfile
from pathlib import Path

from lenscf.archive import MIRROR_VARIABLE, fetch, file_digest, resolve_source, safe_extract, verify_md5, verify_pins
from lenscf.artifacts import write_json, write_table
from lenscf.errors import run_stage
from lenscf.params import DataParams, load_params
from lenscf.releases import RELEASES

OUT = Path("data/raw")


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    params = DataParams.load(load_params())
    release = RELEASES[params.dataset]
    url = params.url.format(dataset=params.dataset)
    mirror = os.environ.get(MIRROR_VARIABLE)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / url.rsplit("/", 1)[-1]
        fetch(resolve_source(url, mirror), archive, params.timeout_s, params.retries)
        if not params.sha256:
            verify_md5(archive, resolve_source(url + ".md5", mirror), params.timeout_s, params.retries)
        ratings_member = f"{release.folder}/{release.ratings_member}"
        movies_member = f"{release.folder}/{release.movies_member}"
        extracted = safe_extract(archive, [ratings_member, movies_member], Path(tmp) / "extracted")
        digests = {member: digest for member, (_, digest) in extracted.items()}
        verify_pins(digests, params.sha256, f"data.sha256.{params.dataset}")
        ratings = release.load_ratings(extracted[ratings_member][0])
        movies = release.load_movies(extracted[movies_member][0])
        source = {
            "dataset": params.dataset,
            "archive_sha256": file_digest(archive, "sha256"),
            "members_sha256": digests,
            "rating_scale": list(release.rating_scale),
        }
    write_table(OUT / "ratings.parquet", ratings)
    write_table(OUT / "movies.parquet", movies)
    write_json(OUT / "source.json", source)


if __name__ == "__main__":
    run_stage(main)
