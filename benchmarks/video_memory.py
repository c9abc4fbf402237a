"""Peak memory and frames/s of tracking a short and a long video: ours (streaming) against the usual way.

Same SAM 2 video model (a tiny random-weight one by default, no download; ``--sam`` for a real one), same frames (a
synthetic x264 video of moving shapes), three boxes on frame 0, each run in a fresh process:

  stream  ``VideoSegmenter.track(video_file, boxes=...)``: frames decoded one at a time, SAM 2's state released as it
          goes, each frame's Detections consumed and dropped (what ``grounded-sam track`` does with them);
  usual   Grounded-SAM-2's tracking demo on transformers: dump the video to JPEGs with supervision, load the whole
          folder into the session (``init_video_session(video=...)``), add the boxes, ``propagate_in_video_iterator``
          and keep every frame's masks ({frame: {object id: mask}}) for drawing afterwards, as the demo does.

Prints one row per (mode, frames): seconds, frames/s, RSS once the model is loaded, peak RSS, peak GPU memory (CUDA
only), then each mode's growth from the shortest to the longest video.

    python benchmarks/video_memory.py                            # 60 and 600 frames, both modes, CPU
    python benchmarks/video_memory.py --frames 240 --device cuda --sam facebook/sam2.1-hiera-tiny
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

WIDTH, HEIGHT = 160, 120
BOXES = {0: {1: [8, 28, 48, 72], 2: [96, 20, 140, 52], 3: [60, 80, 110, 115]}}
MODES = ("stream", "usual")


def make_video(path: Path, count: int, width: int = WIDTH, height: int = HEIGHT) -> Path:
    """An x264 mp4 of ``count`` frames: a blocky textured background, a red box moving right, a blue one left."""
    import av

    rng = np.random.default_rng(0)
    tiles = rng.uniform(40, 200, (height // 8, width // 8, 3))
    background = np.kron(tiles, np.ones((8, 8, 1))).astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(count):
            frame = background.copy()
            x = 8 + (index * 2) % 100
            frame[28:72, x : x + 40] = (220, 40, 40)
            shift = (index % 60) // 2
            frame[20:52, 96 - shift : 140 - shift] = (40, 60, 230)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def run_stream(sam: str, video: Path, device: str) -> Iterator[int | None]:
    from grounded_sam import VideoSegmenter

    segmenter = VideoSegmenter(sam=sam, device=device, dtype="float32")
    yield  # model loaded
    count = 0
    for _, detections in segmenter.track(video, boxes=BOXES):
        _ = detections.mask, detections.xyxy  # what a writer consumes, then drops
        count += 1
    yield count


def run_usual(sam: str, video: Path, device: str) -> Iterator[int | None]:
    import supervision as sv
    import torch
    from PIL import Image
    from transformers import Sam2VideoModel, Sam2VideoProcessor

    model = Sam2VideoModel.from_pretrained(sam).to(device).eval()
    processor = Sam2VideoProcessor.from_pretrained(sam)
    yield  # model loaded
    folder = Path(tempfile.mkdtemp(prefix="frames-"))
    with sv.ImageSink(target_dir_path=str(folder), overwrite=True, image_name_pattern="{:05d}.jpg") as sink:
        for frame in sv.get_video_frames_generator(str(video)):
            sink.save_image(frame)
    frames = [np.asarray(Image.open(path).convert("RGB")) for path in sorted(folder.glob("*.jpg"))]
    height, width = frames[0].shape[:2]
    session = processor.init_video_session(video=frames, inference_device=device, dtype=torch.float32)
    del frames
    boxes = BOXES[0]
    processor.add_inputs_to_inference_session(
        session, frame_idx=0, obj_ids=list(boxes), input_boxes=[list(boxes.values())], original_size=(height, width)
    )
    segments = {}
    with torch.inference_mode():
        for output in model.propagate_in_video_iterator(session, start_frame_idx=0):
            masks = processor.post_process_masks([output.pred_masks], [[height, width]], binarize=True)[0]
            segments[output.frame_idx] = {obj: masks[i].cpu().numpy() for i, obj in enumerate(output.object_ids)}
    yield len(segments)


def child(mode: str, sam: str, video: Path, device: str) -> dict:
    import torch

    cuda = device.startswith("cuda")
    steps = (run_stream if mode == "stream" else run_usual)(sam, video, device)
    next(steps)
    loaded = _rss_mb()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    frames = next(steps)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    return {
        "mode": mode,
        "frames": frames,
        "seconds": round(seconds, 2),
        "fps": round(frames / seconds, 2),
        "rss_after_load_mb": round(loaded, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
    }


def main(lengths: list[int], modes: list[str], sam: str | None, device: str, threads: int) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix="video-memory-"))
    if sam is None:
        from grounded_sam.testing import build_tiny_sam2

        sam = str(build_tiny_sam2(work / "tiny-sam2"))
    print(f"SAM 2 {sam}, {WIDTH}x{HEIGHT} frames, 3 objects, device {device}, {threads} threads")
    print(f"{'mode':8}{'frames':>8}{'seconds':>9}{'frames/s':>10}{'loaded MB':>11}{'peak MB':>9}{'peak GPU MB':>13}")
    rows = []
    for count in lengths:
        video = make_video(work / f"video_{count}.mp4", count)
        for mode in modes:
            command = [sys.executable, __file__, "--child", mode, sam, str(video), device, str(threads)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"{mode} on {count} frames failed:\n{done.stderr[-3000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            gpu = "-" if row["peak_gpu_mb"] is None else row["peak_gpu_mb"]
            print(
                f"{mode:8}{row['frames']:>8}{row['seconds']:>9}{row['fps']:>10}{row['rss_after_load_mb']:>11}"
                f"{row['peak_rss_mb']:>9}{gpu:>13}",
                flush=True,
            )
    for mode in modes:
        mine = sorted((row for row in rows if row["mode"] == mode), key=lambda row: row["frames"])
        if len(mine) > 1:
            short, long = mine[0], mine[-1]
            growth = long["peak_rss_mb"] / short["peak_rss_mb"] - 1
            text = f"{mode}: peak RSS {short['frames']} -> {long['frames']} frames {growth:+.1%}"
            if short["peak_gpu_mb"]:
                text += f", peak GPU {long['peak_gpu_mb'] / short['peak_gpu_mb'] - 1:+.1%}"
            print(text)
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        import torch

        torch.set_num_threads(int(sys.argv[6]))
        print(json.dumps(child(sys.argv[2], sys.argv[3], Path(sys.argv[4]), sys.argv[5])))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--frames", type=int, nargs="+", default=[60, 600])
        parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
        parser.add_argument("--sam", help="SAM 2 hub id or folder saved from Sam2VideoModel; default a tiny one")
        parser.add_argument("--device", default="cpu")
        parser.add_argument("--threads", type=int, default=1)
        arguments = parser.parse_args()
        main(arguments.frames, arguments.modes, arguments.sam, arguments.device, arguments.threads)
