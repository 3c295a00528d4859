#!/usr/bin/env python3
"""How well face-service's head-pose estimate (src/liveness/pose.rs) reads real faces.

No ground-truth head poses ship with the photos at hand, so this measures what can be known
exactly: MediaPipe FaceMesh (mediapipe 0.10.21, static mode) on the astronaut photo and on a
carphone frame, each turned in the image plane by -30, -15, 15 and 30 degrees (the roll must
follow the turn; the yaw must not move) and mirrored (the yaw must change sign). The estimate
is re-implemented here in numpy from the same landmark indices as the Rust.

    /var/tmp/mpvenv/bin/python tests/golden/measure_head_pose.py
"""
import cv2
import mediapipe as mp
import numpy as np
import skimage.data

from make_golden import carphone_frames
from make_face_mesh_golden import upscale


def head_pose(p):
    """(yaw, pitch, roll) in degrees, as src/liveness/pose.rs computes them."""
    across = (p[263] - p[33]) + (p[454] - p[234])
    across /= np.linalg.norm(across)
    up = p[10] - p[152]
    up -= across * np.dot(up, across)
    up /= np.linalg.norm(up)
    out = np.cross(across, up)
    return np.degrees([np.arcsin(across[2]), np.arctan2(up[2], -out[2]),
                       np.arctan2(across[1], across[0])])


def main():
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1)

    def landmarks(image):
        h, w = image.shape[:2]
        face = mesh.process(image).multi_face_landmarks[0]
        return np.array([[p.x * w, p.y * h, p.z * w] for p in face.landmark])

    worst_roll = worst_yaw_shift = worst_mirror = 0.0
    for name, image in [("astronaut", skimage.data.astronaut()),
                        ("carphone frame 40", upscale(carphone_frames()[40]))]:
        h, w = image.shape[:2]
        base = head_pose(landmarks(image))
        mirrored = head_pose(landmarks(np.ascontiguousarray(image[:, ::-1])))
        worst_mirror = max(worst_mirror, abs(base[0] + mirrored[0]))
        print(f"{name}: yaw {base[0]:.2f} pitch {base[1]:.2f} roll {base[2]:.2f}; "
              f"mirrored yaw {mirrored[0]:.2f}")
        for angle in (-30, -15, 15, 30):
            turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
            turned = cv2.warpAffine(image, turn, (w, h), borderMode=cv2.BORDER_REPLICATE)
            pose = head_pose(landmarks(turned))
            # OpenCV turns counter-clockwise for positive angles; roll is clockwise.
            worst_roll = max(worst_roll, abs(pose[2] - base[2] + angle))
            worst_yaw_shift = max(worst_yaw_shift, abs(pose[0] - base[0]))
    print(f"worst roll error {worst_roll:.2f} deg, worst yaw moved by a roll {worst_yaw_shift:.2f}"
          f" deg, worst mirrored-yaw asymmetry {worst_mirror:.2f} deg")


if __name__ == "__main__":
    main()
