#!/usr/bin/env python3
"""Convert MiniFASNet's two PyTorch checkpoints into the safetensors file face-service loads.

The originals, 2.7_80x80_MiniFASNetV2.pth and 4_0_0_80x80_MiniFASNetV1SE.pth, are committed
unchanged beside this script, from minivision-ai's Silent-Face-Anti-Spoofing (Apache-2.0),
resources/anti_spoof_models/ at commit b6d5f04ad78778917853b25c778acef6d5626d15:

    https://github.com/minivision-ai/Silent-Face-Anti-Spoofing/raw/b6d5f04ad78778917853b25c778acef6d5626d15/resources/anti_spoof_models/<name>

They are old-style (pre-zip) pickles, which Rust has no well-kept reader for. This script
unpickles them with PyTorch (weights_only: tensors and an OrderedDict, nothing executed) and
writes every tensor, values and names unchanged, into one safetensors file, each name prefixed
by its network ("MiniFASNetV2." / "MiniFASNetV1SE."). It then reads the file back and checks
each tensor equals the checkpoint's bit for bit, so anti_spoofing_minifasnet.safetensors is
traceable to the published bytes:

    python3 -m venv /tmp/torch && /tmp/torch/bin/pip install torch==2.5.1 safetensors==0.6.2 \
        --index-url https://download.pytorch.org/whl/cpu   (or torch's CPU wheel from PyPI)
    /tmp/torch/bin/python weights/convert_anti_spoofing.py

The digests of all three files are in SHA256SUMS; models/anti_spoofing_minifasnet.toml names
the converted file's, which the Rust loader checks.
"""
import hashlib
import pathlib
import sys

import torch
from safetensors.torch import load_file, save_file

HERE = pathlib.Path(__file__).resolve().parent
NETWORKS = {
    "MiniFASNetV2": "2.7_80x80_MiniFASNetV2.pth",
    "MiniFASNetV1SE": "4_0_0_80x80_MiniFASNetV1SE.pth",
}
OUTPUT = HERE / "anti_spoofing_minifasnet.safetensors"


def main():
    tensors = {}
    for network, checkpoint in NETWORKS.items():
        state = torch.load(HERE / checkpoint, map_location="cpu", weights_only=True)
        for name, tensor in state.items():
            tensors[f"{network}.{name}"] = tensor.contiguous()
    save_file(tensors, OUTPUT, metadata={"source": ", ".join(NETWORKS.values())})
    back = load_file(OUTPUT)
    if back.keys() != tensors.keys() or any(not torch.equal(back[k], v) for k, v in tensors.items()):
        sys.exit("the safetensors file does not read back as the checkpoints")
    digest = hashlib.sha256(OUTPUT.read_bytes()).hexdigest()
    print(f"{OUTPUT.name}: {len(tensors)} tensors, sha256 {digest}")


if __name__ == "__main__":
    main()
