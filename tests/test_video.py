"""VideoSegmenter on the tiny SAM 2 (random weights): what track() yields, prompts of every kind, reverse tracking,
and the state it releases, which must change no result and keep what is held flat."""

import numpy as np
import pytest
import supervision as sv
import torch
from helpers import write_mp4
from transformers import Sam2VideoModel

from grounded_sam import Segmenter, VideoSegmenter
from grounded_sam.errors import InvalidCheckpointError, UserInputError
from grounded_sam.models.hub import load_sam2_video
from grounded_sam.segmentation.video import OBJECT_SCORE, tracked_detections
from grounded_sam.segmentation.video_session import StreamingSession
from grounded_sam.testing import build_tiny_sam2

FRAMES, HEIGHT, WIDTH = 30, 120, 160
BOXES = {1: [8, 28, 48, 72], 2: [96, 20, 140, 52], 3: [60, 80, 110, 115]}


def shapes_video(count: int = FRAMES) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    background = np.kron(rng.uniform(40, 200, (HEIGHT // 8, WIDTH // 8, 3)), np.ones((8, 8, 1)))
    frames = []
    for index in range(count):
        frame = background + rng.normal(0, 8, background.shape)
        frame[28:72, 8 + 2 * index : 48 + 2 * index] = (220, 40, 40)
        frame[80:110, 120 - index : 150 - index] = (40, 60, 230)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


@pytest.fixture(scope="module")
def frames():
    return shapes_video()


@pytest.fixture(scope="module")
def segmenter(sam_dir):
    torch.set_num_threads(1)  # tiny matrices: more threads only wait on each other
    return VideoSegmenter(sam=sam_dir, device="cpu", dtype="float32")


def raw(segmenter, frames, **prompts):
    return list(segmenter.propagate(frames, **prompts))


def assert_identical(first, second, ids=None) -> None:
    assert [frame.frame_index for frame in first] == [frame.frame_index for frame in second]
    for a, b in zip(first, second):
        for obj_id in ids or a.object_ids:
            i, j = a.object_ids.index(obj_id), b.object_ids.index(obj_id)
            assert np.array_equal(a.mask_logits[i], b.mask_logits[j]), (a.frame_index, obj_id)
            assert a.object_score_logits[i] == b.object_score_logits[j], (a.frame_index, obj_id)


def test_track_yields_every_frame_with_well_formed_detections(segmenter, frames):
    results = list(segmenter.track(frames, boxes={5: {7: BOXES[1], 9: BOXES[2]}}))
    assert [index for index, _ in results] == list(range(FRAMES))
    for index, found in results:
        assert isinstance(found, sv.Detections) and found.mask.shape[1:] == (HEIGHT, WIDTH)
        assert found.mask.dtype == bool and found.xyxy.dtype == np.float32 and found.confidence.dtype == np.float32
        assert len(found.tracker_id) == len(found) and set(found.tracker_id) <= ({7, 9} if index >= 5 else set())
        if len(found):
            np.testing.assert_array_equal(found.xyxy, sv.mask_to_xyxy(found.mask))
            expected = 1 / (1 + np.exp(-found.data[OBJECT_SCORE].astype(np.float64)))
            np.testing.assert_allclose(found.confidence, expected, rtol=1e-6)
            assert (found.data[OBJECT_SCORE] > 0).all() and found.mask.any(axis=(1, 2)).all()
    assert all(len(found) == 0 for index, found in results[:5])  # before the prompt: nothing


def test_track_gives_the_detections_of_propagates_raw_frames(segmenter, frames):
    prompts = {"boxes": {0: {1: BOXES[1]}}, "points": {3: {2: [[110, 35]]}}, "labels": {3: {2: [1]}}}
    for (index, found), frame in zip(segmenter.track(frames, **prompts), raw(segmenter, frames, **prompts)):
        expected = tracked_detections(frame)
        assert index == frame.frame_index and found.tracker_id.tolist() == expected.tracker_id.tolist()
        assert np.array_equal(found.mask, expected.mask)


def test_a_mask_prompt_is_the_output_on_its_frame(segmenter, frames):
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[28:72, 8:48] = True
    first = raw(segmenter, frames[:3], masks={0: {4: mask}})[0]
    assert first.object_ids == [4] and first.object_score_logits[0] == 10.0  # SAM 2 takes a mask as given
    assert ((first.mask_logits[0] > 0) == mask).mean() > 0.99


def test_releasing_state_changes_no_result(segmenter, frames, monkeypatch):
    """40 frames is more than both windows SAM 2 reads (7 memories, 16 object pointers); an object enters on frame
    12. The released run must equal, bit for bit, one whose session keeps everything but the pixels."""
    video = shapes_video(40)
    prompts = {"boxes": {0: {1: BOXES[1], 2: BOXES[2]}, 12: {3: BOXES[3]}}}
    released = raw(segmenter, video, **prompts)
    held: list[StreamingSession] = []

    def keep_everything(session, frame_index, reverse, keep_memory, keep_pointer):
        session.processed_frames.pop(frame_index, None)
        held.append(session)

    monkeypatch.setattr(StreamingSession, "release", keep_everything)
    kept = raw(segmenter, video, **prompts)
    assert_identical(released, kept)
    assert len(held[-1].output_dict_per_obj[0]["non_cond_frame_outputs"]) == 39  # what released runs drop


def test_what_is_held_stays_flat_however_long_the_video(segmenter):
    def held_after(count: int) -> list[int]:
        tracker = segmenter.tracker(count)
        from grounded_sam.segmentation.video_session import ObjectPrompt

        video = shapes_video(count)
        tracker.add_prompts(0, {1: ObjectPrompt(box=np.array(BOXES[1], np.float32))}, (HEIGHT, WIDTH))
        for index, frame in enumerate(video):
            tracker.step(index, frame)
        session = tracker.session
        outputs = session.output_dict_per_obj[0]
        return [
            len(outputs["non_cond_frame_outputs"]),
            sum("maskmem_features" in out for out in outputs["non_cond_frame_outputs"].values()),
            len(session.processed_frames),
            len(session.frames_tracked_per_obj[0]),
        ]

    assert held_after(25) == held_after(60) == [15, 6, 0, 15]


def test_an_object_entering_changes_nothing_for_the_others(segmenter, frames, monkeypatch):
    """Pins SplitMemoryVideoModel: transformers alone binarizes the tracked objects' memories on a frame where
    another object is prompted, and object 1 drifts from frame 9 on (checked below on transformers' own class)."""

    def drift() -> float:
        alone = raw(segmenter, frames, boxes={0: {1: BOXES[1]}})
        joined = raw(segmenter, frames, boxes={0: {1: BOXES[1]}, 8: {2: BOXES[2]}})
        return max(
            max(
                np.abs(a.mask_logits[0] - b.mask_logits[0]).max(),
                abs(a.object_score_logits[0] - b.object_score_logits[0]),
            )
            for a, b in zip(alone, joined)
        )

    assert drift() < 1e-6  # float noise: from frame 9 on, object 1's memory is encoded in a batch of two
    monkeypatch.setattr(segmenter.model, "__class__", Sam2VideoModel)
    assert drift() > 1e-5


def test_removing_an_object_leaves_the_others_as_they_were(segmenter, frames):
    from grounded_sam.segmentation.video_session import ObjectPrompt

    def run(remove: bool):
        tracker, results = segmenter.tracker(FRAMES), []
        prompts = {obj_id: ObjectPrompt(box=np.array(BOXES[obj_id], np.float32)) for obj_id in (1, 2, 3)}
        tracker.add_prompts(0, prompts, (HEIGHT, WIDTH))
        for index, frame in enumerate(frames):
            results.append(tracker.step(index, frame))
            if remove and index == 10:
                tracker.remove_objects([2])
        return results

    removed = run(remove=True)
    assert all(frame.object_ids == [1, 3] for frame in removed[11:])
    assert_identical(removed, run(remove=False), ids=[1, 3])


def test_reverse_tracks_backwards_from_the_prompts(segmenter, frames):
    results = raw(segmenter, frames, boxes={20: {1: BOXES[1]}}, reverse=True)
    assert [frame.frame_index for frame in results] == list(range(FRAMES - 1, -1, -1))
    assert all(frame.object_ids == [] for frame in results[:9]) and results[9].object_ids == [1]
    assert all(frame.object_ids == [1] for frame in results[9:])


def test_reverse_from_a_video_file_equals_reverse_from_its_decoded_frames(segmenter, tmp_path):
    pytest.importorskip("av")
    path = write_mp4(tmp_path / "clip.mp4", shapes_video(12))
    from grounded_sam.video_frames import open_video

    decoded = [frame for _, frame in open_video(path)]
    prompts = {"boxes": {9: {1: BOXES[1]}}, "reverse": True}
    assert_identical(raw(segmenter, path, **prompts), raw(segmenter, decoded, **prompts))


@pytest.mark.parametrize(
    "prompts, message",
    [
        ({"points": {0: {1: [[10, 10]]}}}, "points and labels go together"),
        ({"boxes": {-1: {1: BOXES[1]}}}, "frame indices must be integers >= 0"),
        ({"boxes": {0: {"a": BOXES[1]}}}, "object ids must be integers"),
        ({"boxes": {0: {1: BOXES[1]}}, "masks": {0: {1: np.ones((HEIGHT, WIDTH), bool)}}}, "a mask prompt goes alone"),
        ({"boxes": {0: {1: [50, 50, 10, 10]}}}, "object 1 on frame 0: boxes must be x1, y1, x2, y2"),
        ({"boxes": {0: {1: [0, 0, 500, 50]}}}, "lies outside the 160x120 image"),
        ({"masks": {0: {1: np.ones((10, 10), bool)}}}, r"must be \(H, W\) = \(120, 160\)"),
        ({"boxes": {99: {1: BOXES[1]}}}, r"Prompts on frames \[99\] were never used"),
    ],
)
def test_bad_prompts_are_refused_naming_what_is_wrong(segmenter, frames, prompts, message):
    with pytest.raises(UserInputError, match=message):
        list(segmenter.track(frames[:3], **prompts))


def test_one_folder_serves_images_and_video_and_the_image_view_shares_weights(segmenter, sam_dir, rng):
    image = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    view, loaded = segmenter.image_segmenter(), Segmenter(sam=sam_dir, device="cpu", dtype="float32")
    box = [[10, 10, 90, 80]]
    ours, theirs = view.predict(view.set_image(image), boxes=box), loaded.predict(loaded.set_image(image), boxes=box)
    assert np.array_equal(ours.mask, theirs.mask) and np.array_equal(ours.confidence, theirs.confidence)
    video_weight = segmenter.model.vision_encoder.backbone.patch_embed.projection.weight
    assert view.model.vision_encoder.backbone.patch_embed.projection.weight.data_ptr() == video_weight.data_ptr()
    assert view.settings()["model"] == segmenter.settings()["model"]


def test_an_image_only_folder_is_refused_for_video(tmp_path):
    from transformers import Sam2Model

    folder = build_tiny_sam2(tmp_path / "video")
    Sam2Model.from_pretrained(folder).save_pretrained(tmp_path / "image_only")
    with pytest.raises(InvalidCheckpointError, match="image model only"):
        load_sam2_video(tmp_path / "image_only", torch.device("cpu"))
