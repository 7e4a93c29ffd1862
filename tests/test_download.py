"""Stage download: the real HTTP code against a local server, checksums, safe extraction and every format."""

import hashlib
import http.client
import os
import ssl
import stat
import urllib.error
from pathlib import Path

import pandas as pd
import pytest

import download
from conftest import Server, TinyRelease, make_zip, needs_real_archive, run_main, serve_release, write_params
from lenscf.archive import MIRROR_VARIABLE, _is_transient, parse_md5_file
from lenscf.errors import PipelineError
from lenscf.releases import RELEASES

OUTPUTS = [Path("data/raw/ratings.parquet"), Path("data/raw/movies.parquet"), Path("data/raw/source.json")]


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch):
    return lambda: run_main(download, monkeypatch)


def assert_no_outputs() -> None:
    assert not any(p.exists() for p in OUTPUTS)
    assert not Path("data/raw").exists() or not any(Path("data/raw").iterdir())


def test_good_archive_is_downloaded_verified_and_normalised(project: Path, server: Server, run) -> None:
    release = TinyRelease()
    serve_release(server, project, release)
    run()
    ratings = pd.read_parquet("data/raw/ratings.parquet")
    assert list(ratings.columns) == ["userId", "movieId", "rating", "timestamp"]
    assert ratings.dtypes.astype(str).tolist() == ["int32", "int32", "float32", "int64"]
    pd.testing.assert_frame_equal(ratings, release.ratings, check_dtype=False)
    assert list(pd.read_parquet("data/raw/movies.parquet").columns) == ["movieId", "title"]
    assert server.requests == ["/ml-latest-small.zip"]


def test_download_is_byte_identical_when_repeated(project: Path, server: Server, run) -> None:
    serve_release(server, project, TinyRelease())
    run()
    first = [p.read_bytes() for p in OUTPUTS]
    run()
    assert [p.read_bytes() for p in OUTPUTS] == first


def test_corrupted_archive_is_refused(project: Path, server: Server, run) -> None:
    release = TinyRelease()
    serve_release(server, project, release)
    server.files["/ml-latest-small.zip"] = release.archive[: len(release.archive) // 2]
    with pytest.raises(PipelineError, match="not a valid zip archive"):
        run()
    assert_no_outputs()


def test_wrong_checksum_is_refused(project: Path, server: Server, run) -> None:
    release = TinyRelease()
    serve_release(server, project, release)
    write_params(project, data={"sha256": {"ml-latest-small": {**release.pins, "ratings.csv": "0" * 64}}})
    with pytest.raises(PipelineError, match=r"ratings.csv: SHA-256 .* does not match data.sha256"):
        run()
    assert_no_outputs()


def test_member_outside_its_folder_is_refused(project: Path, server: Server, tmp_path: Path, run) -> None:
    release = TinyRelease()
    serve_release(server, project, release)
    server.files["/ml-latest-small.zip"] = make_zip(
        {
            "ml-latest-small/ratings.csv": release.ratings_csv,
            "ml-latest-small/movies.csv": release.movies_csv,
            "../../evil.txt": b"owned",
        }
    )
    with pytest.raises(PipelineError, match=r"refusing member '\.\./\.\./evil\.txt'"):
        run()
    assert_no_outputs()
    assert not list(tmp_path.parent.rglob("evil.txt"))


def test_503_is_retried_then_succeeds(project: Path, server: Server, no_backoff: None, run) -> None:
    serve_release(server, project, TinyRelease())
    server.fail["/ml-latest-small.zip"] = 2
    run()
    assert server.requests == ["/ml-latest-small.zip"] * 3
    assert Path("data/raw/ratings.parquet").exists()


def test_persistent_failure_names_the_url_and_the_mirror(project: Path, server: Server, no_backoff: None, run) -> None:
    serve_release(server, project, TinyRelease())
    server.fail["/ml-latest-small.zip"] = 99
    with pytest.raises(PipelineError, match=rf"{server.url}/ml-latest-small.zip .* after 3 tries.*{MIRROR_VARIABLE}"):
        run()
    assert_no_outputs()


def test_404_is_not_retried(project: Path, server: Server, no_backoff: None, run) -> None:
    serve_release(server, project, TinyRelease())
    del server.files["/ml-latest-small.zip"]
    with pytest.raises(PipelineError, match="after 1 tries"):
        run()


def test_mirror_folder_replaces_the_url(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run) -> None:
    release = TinyRelease()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "ml-latest-small.zip").write_bytes(release.archive)
    write_params(project, data={"url": "http://127.0.0.1:9/{dataset}.zip", "sha256": {"ml-latest-small": release.pins}})
    monkeypatch.setenv(MIRROR_VARIABLE, str(mirror))
    run()
    assert pd.read_parquet("data/raw/ratings.parquet").shape == release.ratings.shape


def test_mirror_url_replaces_the_url(project: Path, server: Server, monkeypatch: pytest.MonkeyPatch, run) -> None:
    release = TinyRelease()
    serve_release(server, project, release)
    server.files = {"/copies/ml-latest-small.zip": release.archive}
    monkeypatch.setenv(MIRROR_VARIABLE, server.url + "/copies/")
    run()
    assert server.requests == ["/copies/ml-latest-small.zip"]


def test_mirror_is_still_checked(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run) -> None:
    release = TinyRelease()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "ml-latest-small.zip").write_bytes(TinyRelease(release.ratings.iloc[:-1]).archive)
    write_params(project, data={"sha256": {"ml-latest-small": release.pins}})
    monkeypatch.setenv(MIRROR_VARIABLE, str(mirror))
    with pytest.raises(PipelineError, match="does not match"):
        run()


def test_missing_mirror_file_is_named(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run) -> None:
    monkeypatch.setenv(MIRROR_VARIABLE, str(tmp_path / "nowhere"))
    with pytest.raises(PipelineError, match=f"{MIRROR_VARIABLE}: cannot read .*nowhere/ml-latest-small.zip"):
        run()


def test_unknown_dataset_is_a_parameter_error(project: Path, run) -> None:
    write_params(project, data={"dataset": "ml-5b"})
    with pytest.raises(PipelineError, match=r"data\.dataset must be one of"):
        run()


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ("7,1,abc,1000", r"line 3: rating is non-numeric \('abc'\)"),
        ("7,1,9.5,1000", r"line 3: rating 9.5 is outside \[0.5, 5.0\]"),
        ("7,1.5,4.0,1000", r"line 3: movieId 1.5 is not whole"),
        (",1,4.0,1000", "line 3: userId is empty"),
        ("7,,4.0,1000", "line 3: movieId is empty"),
    ],
)
def test_bad_rating_rows_are_named(project: Path, server: Server, bad_row: str, message: str, run) -> None:
    release = TinyRelease()
    text = "userId,movieId,rating,timestamp\n1,2,4.0,1000\n" + bad_row + "\n"
    serve_release(server, project, release)
    archive = {"ml-latest-small/ratings.csv": text.encode(), "ml-latest-small/movies.csv": release.movies_csv}
    server.files["/ml-latest-small.zip"] = make_zip(archive)
    write_params(project, data={"sha256": {"ml-latest-small": {}}})  # unpinned: fetches the .md5
    server.files["/ml-latest-small.zip.md5"] = hashlib.md5(server.files["/ml-latest-small.zip"]).hexdigest().encode()
    with pytest.raises(PipelineError, match=rf"ml-latest-small/ratings.csv, {message}"):
        run()
    assert_no_outputs()


def test_missing_column_is_named(project: Path, server: Server, run) -> None:
    release = TinyRelease(TinyRelease().ratings.drop(columns="timestamp"))
    serve_release(server, project, release)
    with pytest.raises(PipelineError, match=r"ratings.csv: missing column\(s\) timestamp"):
        run()


def test_unpinned_release_is_checked_against_its_md5(project: Path, server: Server, run) -> None:
    release = TinyRelease()
    serve_release(server, project, release, dataset="ml-25m")
    server.files["/ml-25m.zip"] = make_zip(
        {"ml-25m/ratings.csv": release.ratings_csv, "ml-25m/movies.csv": release.movies_csv}
    )
    write_params(project, data={"sha256": {}})
    server.files["/ml-25m.zip.md5"] = f"{hashlib.md5(server.files['/ml-25m.zip']).hexdigest()}  ml-25m.zip\n".encode()
    run()
    assert len(pd.read_parquet("data/raw/ratings.parquet")) == len(release.ratings)
    server.files["/ml-25m.zip.md5"] = b"0" * 32
    with pytest.raises(PipelineError, match="MD5 does not match"):
        run()


# Each release's own format, written small by the test: (ratings member, its text, movies member, its text,
# the movies file's encoding, the two ratings and the second title it must give).
FORMATS = {
    "ml-100k": (
        "u.data",
        "1\t10\t4\t881250949\n2\t20\t3\t891717742\n",
        "u.item",
        "10|Toy Story (1995)|01-Jan-1995||http://x|0\n20|Café (1996)|01-Jan-1996||http://y|0\n",
        "latin-1",
        [4.0, 3.0],
        "Café (1996)",
    ),
    "ml-1m": (
        "ratings.dat",
        "1::10::4::978300760\n2::20::3::978302109\n",
        "movies.dat",
        "10::Toy Story (1995)::Animation\n20::Star Wars: Episode IV (1977)::Sci-Fi\n",
        "latin-1",
        [4.0, 3.0],
        "Star Wars: Episode IV (1977)",
    ),
    "ml-10m": (
        "ratings.dat",
        "1::10::4.5::838985046\n2::20::3::838983525\n",
        "movies.dat",
        "10::Toy Story (1995)::Animation\n20::Café: A Story (1996)::Drama\n",
        "utf-8",
        [4.5, 3.0],
        "Café: A Story (1996)",
    ),
    "ml-20m": (
        "ratings.csv",
        "userId,movieId,rating,timestamp\n1,10,4.5,1112486027\n2,20,0.5,1112484676\n",
        "movies.csv",
        'movieId,title,genres\n10,Toy Story (1995),Animation\n20,"Café, A (1996)",Drama\n',
        "utf-8",
        [4.5, 0.5],
        "Café, A (1996)",
    ),
}


@pytest.mark.parametrize("dataset", [*FORMATS, "ml-25m", "ml-32m"])
def test_each_release_format_is_normalised(dataset: str, tmp_path: Path) -> None:
    ratings_name, ratings_text, movies_name, movies_text, encoding, stars, title = FORMATS.get(
        dataset, FORMATS["ml-20m"]
    )
    release = RELEASES[dataset]
    assert (release.ratings_member, release.movies_member) == (ratings_name, movies_name)
    (tmp_path / ratings_name).write_text(ratings_text, encoding="utf-8")
    (tmp_path / movies_name).write_text(movies_text, encoding=encoding)
    ratings = release.load_ratings(tmp_path / ratings_name).to_pandas()
    assert list(ratings.columns) == ["userId", "movieId", "rating", "timestamp"]
    assert ratings["userId"].tolist() == [1, 2] and ratings["movieId"].tolist() == [10, 20]
    assert ratings["rating"].tolist() == stars
    assert ratings["timestamp"].tolist() == [
        int(line.replace("::", "\t").replace(",", "\t").split("\t")[3]) for line in ratings_text.splitlines()[-2:]
    ]
    movies = release.load_movies(tmp_path / movies_name).to_pandas()
    assert movies["movieId"].tolist() == [10, 20]
    assert movies["title"].tolist() == ["Toy Story (1995)", title]


def test_dat_format_names_a_malformed_line(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_text("1::10::4::978300760\n2::20::x::978302109\n")
    with pytest.raises(PipelineError, match=r"ratings.dat, line 2: rating is non-numeric"):
        RELEASES["ml-1m"].load_ratings(path)


@needs_real_archive
def test_real_archive_matches_its_published_checksums_and_counts(real_project: Path, run) -> None:
    run()
    ratings = pd.read_parquet("data/raw/ratings.parquet")
    assert len(ratings) == 100_836
    assert ratings["userId"].nunique() == 610
    assert len(pd.read_parquet("data/raw/movies.parquet")) == 9_742


def test_transient_failures_are_told_from_final_ones() -> None:
    assert _is_transient(urllib.error.HTTPError("u", 503, "busy", {}, None))
    assert _is_transient(ConnectionResetError())
    assert _is_transient(http.client.IncompleteRead(b"partial"))
    assert _is_transient(urllib.error.URLError(TimeoutError()))
    assert not _is_transient(urllib.error.HTTPError("u", 404, "gone", {}, None))
    assert not _is_transient(urllib.error.URLError(ssl.SSLCertVerificationError()))


def test_each_release_knows_its_rating_scale(tmp_path: Path) -> None:
    """ml-100k and ml-1m have whole stars from 1; a 0.5 there is bad input, while ml-latest-small allows it."""
    assert RELEASES["ml-1m"].rating_scale == (1.0, 5.0) and RELEASES["ml-100k"].rating_scale == (1.0, 5.0)
    assert RELEASES["ml-latest-small"].rating_scale == (0.5, 5.0)
    path = tmp_path / "ratings.dat"
    path.write_text("1::10::4::978300760\n2::20::0.5::978302109\n")
    with pytest.raises(PipelineError, match=r"line 2: rating 0.5 is outside \[1.0, 5.0\]"):
        RELEASES["ml-1m"].load_ratings(path)


def test_published_ml25m_md5_format_is_read() -> None:
    """GroupLens' ml-25m.zip.md5 reads `6b51fb2759a8657d3bfcbfc42b592ada  ml-25m.zip` (md5sum's format)."""
    text = "6b51fb2759a8657d3bfcbfc42b592ada  ml-25m.zip\n"
    assert parse_md5_file(text, "ml-25m.zip.md5") == "6b51fb2759a8657d3bfcbfc42b592ada"
    with pytest.raises(PipelineError, match="expected an MD5 digest"):
        parse_md5_file("<html>Not Found</html>", "ml-25m.zip.md5")


def test_truncated_member_is_refused_without_outputs(project: Path, server: Server, run) -> None:
    """A ratings file cut mid-line is bad input: one clear line, and nothing written."""
    release = TinyRelease()
    serve_release(server, project, release)
    text = release.ratings_csv
    cut = text[: text.rindex(b",", 0, len(text) - 12)]  # the last line loses its last fields
    server.files["/ml-latest-small.zip"] = make_zip(
        {"ml-latest-small/ratings.csv": cut, "ml-latest-small/movies.csv": release.movies_csv}
    )
    write_params(project, data={"sha256": {"ml-latest-small": {}}})
    server.files["/ml-latest-small.zip.md5"] = hashlib.md5(server.files["/ml-latest-small.zip"]).hexdigest().encode()
    with pytest.raises(PipelineError, match=r"ml-latest-small/ratings.csv: cannot parse"):
        run()
    assert_no_outputs()


def test_missing_member_is_named(project: Path, server: Server, run) -> None:
    release = TinyRelease()
    serve_release(server, project, release)
    server.files["/ml-latest-small.zip"] = make_zip({"ml-latest-small/ratings.csv": release.ratings_csv})
    with pytest.raises(PipelineError, match=r"has no member ml-latest-small/movies\.csv"):
        run()
    assert_no_outputs()


def test_outputs_get_the_mode_a_plain_write_gives(project: Path, server: Server, run) -> None:
    serve_release(server, project, TinyRelease())
    old = os.umask(0o022)
    try:
        run()
    finally:
        os.umask(old)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in OUTPUTS)
