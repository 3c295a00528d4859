#!/usr/bin/env python3
"""Golden fixtures for the anti-spoofing networks: MiniFASNet run in PyTorch on real crops.

For each image and its face box (the box face-service's pipeline reports, read from the JSON
lines of `face-service analyze`), this cuts the two crops the way Silent-Face-Anti-Spoofing
does (the box scaled 2.7x and 4.0x about its centre, shrunk to fit and shifted into the frame,
resized to 80x80 with OpenCV's INTER_LINEAR, BGR 0-255 unnormalised), runs each network on
its crop in PyTorch, and writes the crop (as an RGB PNG) and the softmax probabilities.

The networks are built here from the checkpoints' own tensors (weights/*.pth, read with
weights_only), following the published architecture (MiniFASNet.py upstream): this is the
reference the burn port is checked against, not the port.

    face-service analyze IMAGES... > /tmp/boxes.jsonl
    python tests/golden/make_anti_spoofing_golden.py /tmp/boxes.jsonl

Needs what tests/golden/requirements-anti-spoofing.txt lists (torch: its CPU wheel will do).
"""
import json
import pathlib
import sys

import cv2
import numpy as np
import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests/golden/fixtures/anti_spoofing"
# (network, checkpoint, box scale), as the checkpoints' names say.
NETWORKS = [
    ("MiniFASNetV2", "2.7_80x80_MiniFASNetV2.pth", 2.7),
    ("MiniFASNetV1SE", "4_0_0_80x80_MiniFASNetV1SE.pth", 4.0),
]
SIZE = 80
EPS = 1e-5  # PyTorch's BatchNorm default; the checkpoints do not store it


class Net:
    """A MiniFASNet evaluated straight off its state dict (inference mode)."""

    def __init__(self, state):
        self.s = {k.removeprefix("module."): v for k, v in state.items()}

    def bn(self, x, p):
        s = self.s
        return F.batch_norm(x, s[p + ".running_mean"], s[p + ".running_var"],
                            s[p + ".weight"], s[p + ".bias"], False, 0.0, EPS)

    def conv(self, x, p, stride=1, act=True):
        w = self.s[p + ".conv.weight"]
        groups = x.shape[1] // w.shape[1]
        pad = (w.shape[2] // 2) if w.shape[2] == 3 else 0
        x = self.bn(F.conv2d(x, w, stride=stride, padding=pad, groups=groups), p + ".bn")
        return F.prelu(x, self.s[p + ".prelu.weight"]) if act else x

    def depth_wise(self, x, p, stride, residual):
        y = self.conv(x, p + ".conv")
        y = self.conv(y, p + ".conv_dw", stride=stride)
        y = self.conv(y, p + ".project", act=False)
        if p + ".se_module.fc1.weight" in self.s:
            q = p + ".se_module"
            z = F.adaptive_avg_pool2d(y, 1)
            z = F.relu(self.bn(F.conv2d(z, self.s[q + ".fc1.weight"]), q + ".bn1"))
            z = torch.sigmoid(self.bn(F.conv2d(z, self.s[q + ".fc2.weight"]), q + ".bn2"))
            y = y * z
        return x + y if residual else y

    def blocks(self, stage):
        return sorted({int(k.split(".")[2]) for k in self.s if k.startswith(stage + ".model.")})

    def __call__(self, x):
        x = self.conv(x, "conv1", stride=2)
        x = self.conv(x, "conv2_dw")
        for transition, stage in [("conv_23", "conv_3"), ("conv_34", "conv_4"), ("conv_45", "conv_5")]:
            x = self.depth_wise(x, transition, 2, False)
            for i in self.blocks(stage):
                x = self.depth_wise(x, f"{stage}.model.{i}", 1, True)
        x = self.conv(x, "conv_6_sep")
        x = self.conv(x, "conv_6_dw", act=False).flatten(1)
        x = self.bn(x @ self.s["linear.weight"].T, "bn")
        return F.softmax(x @ self.s["prob.weight"].T, dim=1)


def crop_box(width, height, box, scale):
    """Silent-Face-Anti-Spoofing's CropImage._get_new_box: the inclusive pixel box."""
    x, y, w, h = box
    scale = min((height - 1) / h, (width - 1) / w, scale)
    new_w, new_h = w * scale, h * scale
    cx, cy = x + w / 2, y + h / 2
    left, top, right, bottom = cx - new_w / 2, cy - new_h / 2, cx + new_w / 2, cy + new_h / 2
    if left < 0:
        right, left = right - left, 0
    if top < 0:
        bottom, top = bottom - top, 0
    if right > width - 1:
        left, right = left - (right - width + 1), width - 1
    if bottom > height - 1:
        top, bottom = top - (bottom - height + 1), height - 1
    return int(left), int(top), int(right), int(bottom)


def main(boxes_path):
    nets = [(name, Net(torch.load(ROOT / "weights" / ckpt, map_location="cpu", weights_only=True)), scale)
            for name, ckpt, scale in NETWORKS]
    cases = []
    for line in pathlib.Path(boxes_path).read_text().splitlines():
        record = json.loads(line)
        if not record.get("faces"):
            continue
        image_path = pathlib.Path(record["image"])
        bgr = cv2.imread(str(image_path if image_path.is_absolute() else ROOT / image_path))
        box = record["faces"][0]["bbox"]
        name = image_path.stem
        case = {"image": str(record["image"]), "box": box, "networks": []}
        for net_name, net, scale in nets:
            left, top, right, bottom = crop_box(bgr.shape[1], bgr.shape[0], box, scale)
            crop = cv2.resize(bgr[top:bottom + 1, left:right + 1], (SIZE, SIZE))
            crop_name = f"{name}_{net_name}.png"
            cv2.imwrite(str(OUT / crop_name), crop)
            tensor = torch.from_numpy(crop.transpose(2, 0, 1).astype(np.float32))[None]
            with torch.no_grad():
                probabilities = net(tensor)[0].tolist()
            case["networks"].append({
                "network": net_name, "crop": crop_name,
                "crop_box": [left, top, right, bottom], "probabilities": probabilities,
            })
        real = sum(n["probabilities"][1] for n in case["networks"]) / len(nets)
        case["real_score"] = real
        print(f"{name}: real {real:.4f}", [round(p, 4) for n in case["networks"] for p in n["probabilities"]])
        cases.append(case)
    (OUT / "manifest.json").write_text(json.dumps({"cases": cases}, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
