"""A Python face server built the way the seed is, for face-service's speed comparison.

The seed ("Face Recognition Service", ../shared/seed/MULTI_WORKER_DEPLOYMENT.md) runs Django
Channels under gunicorn with uvicorn workers; each worker holds a pool of MediaPipe
`FaceMesh(static_image_mode=True)` instances (FACE_MESH_POOL_SIZE), decodes each JPEG frame with
OpenCV, runs it on a FaceMesh taken from the pool in a thread, computes the liveness indicators
and answers every frame. This server does the same on a bare ASGI app: without Django's
routing, middleware and channel layers, so it is if anything faster than the seed, which makes
face-service's ratio against it conservative.

It speaks the seed protocol face-service implements (shared/PROTOCOL.md): the WebSocket at
/ws/auth/process-image/{token}/, JSON frames with a base64 data URL, `frame_processed` answers
with the face box and 468 landmarks, `429` above 10 frames a second, `/api/health/`.

    gunicorn -k uvicorn.workers.UvicornWorker -w 2 -b 127.0.0.1:8013 seed_server:app

Settings (environment): FACE_MESH_POOL_SIZE (4), SEED_REFINE_LANDMARKS (0), SEED_MAX_FPS (10),
SEED_MAX_FRAMES (120 frames per session, 0 for no limit).
"""
import asyncio
import base64
import contextlib
import json
import os
import queue
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import cv2
import mediapipe as mp
import numpy as np

POOL_SIZE = int(os.environ.get("FACE_MESH_POOL_SIZE", "4"))
REFINE = os.environ.get("SEED_REFINE_LANDMARKS", "0") == "1"
MAX_FPS = float(os.environ.get("SEED_MAX_FPS", "10"))
MAX_FRAMES = int(os.environ.get("SEED_MAX_FRAMES", "120"))
LEFT_EYE = [33, 160, 158, 133, 153, 144]
RIGHT_EYE = [362, 385, 387, 263, 373, 380]

# One pool per worker process, as the seed's _face_mesh_pool.
_pool = queue.Queue()
for _ in range(POOL_SIZE):
    _pool.put(mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True, max_num_faces=1, refine_landmarks=REFINE))
_executor = ThreadPoolExecutor(max_workers=POOL_SIZE)


@contextlib.contextmanager
def _face_mesh():
    """The seed's safe_process: always give the instance back."""
    mesh = _pool.get()
    try:
        yield mesh
    finally:
        _pool.put(mesh)


def _eye_ratio(points, eye):
    d = lambda a, b: float(np.hypot(*(points[a] - points[b])))
    return (d(eye[1], eye[5]) + d(eye[2], eye[4])) / (2 * d(eye[0], eye[3]) + 1e-9)


def _process(jpeg):
    """Decode with OpenCV, run FaceMesh from the pool; landmarks in pixels or None."""
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("not a decodable image")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    with _face_mesh() as mesh:
        result = mesh.process(rgb)
    if not result.multi_face_landmarks:
        return None
    h, w = rgb.shape[:2]
    return np.array([[p.x * w, p.y * h] for p in result.multi_face_landmarks[0].landmark])


class _Session:
    def __init__(self):
        self.frames = 0
        self.recent = deque()
        self.ratios = deque(maxlen=10)
        self.closed_run = 0
        self.blinks = 0

    def blink(self, ratio):
        threshold = 0.22 if len(self.ratios) < 10 else 0.75 * sum(self.ratios) / 10
        if ratio < threshold:
            self.closed_run += 1
        else:
            if 1 <= self.closed_run <= 5:
                self.blinks += 1
            self.closed_run = 0
        self.ratios.append(ratio)


async def _websocket(scope, receive, send):
    token = scope["path"].rstrip("/").rsplit("/", 1)[-1]
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    session = _Session()
    reply = lambda message: send({"type": "websocket.send", "text": json.dumps(message)})
    await reply({"type": "connection_established", "session_token": token,
                 "session_type": "liveness", "status": "active", "timeout": 300})
    loop = asyncio.get_running_loop()
    while True:
        event = await receive()
        if event["type"] == "websocket.disconnect":
            return
        try:
            message = json.loads(event.get("text") or "")
        except ValueError:
            await reply({"type": "error", "error": "bad JSON", "code": 400})
            continue
        if message.get("type") == "ping":
            await reply({"type": "pong"})
            continue
        now = time.monotonic()
        while session.recent and now - session.recent[0] >= 1.0:
            session.recent.popleft()
        if len(session.recent) >= MAX_FPS:
            await reply({"type": "error", "error": "too many frames", "code": 429})
            continue
        if MAX_FRAMES and session.frames >= MAX_FRAMES:
            await send({"type": "websocket.close", "code": 4429})
            return
        session.recent.append(now)
        image = message.get("image", "")
        try:
            jpeg = base64.b64decode(image.split(";base64,", 1)[-1])
            points = await loop.run_in_executor(_executor, _process, jpeg)
        except ValueError as error:
            await reply({"type": "error", "error": str(error), "code": 415})
            continue
        session.frames += 1
        if points is None:
            await reply({"type": "frame_processed", "success": False,
                         "error": "No face detected", "frames_processed": session.frames})
            continue
        ratio = (_eye_ratio(points, LEFT_EYE) + _eye_ratio(points, RIGHT_EYE)) / 2
        session.blink(ratio)
        x0, y0 = points.min(axis=0)
        x1, y1 = points.max(axis=0)
        await reply({
            "type": "frame_processed", "success": True, "frames_processed": session.frames,
            "liveness_verified": False, "blinks_detected": session.blinks,
            "eye_aspect_ratio": ratio, "message": "Face detected",
            "visual_data": {"face_bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                            "landmarks": points.round(2).tolist()},
        })


async def app(scope, receive, send):
    if scope["type"] == "websocket" and scope["path"].startswith("/ws/auth/process-image/"):
        await _websocket(scope, receive, send)
    elif scope["type"] == "http":
        body = json.dumps({"status": "healthy", "pool_size": POOL_SIZE,
                           "available": _pool.qsize()}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
    elif scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
