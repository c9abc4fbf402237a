"""Text tracking (GroundedSAM2.track): detection every N frames, new ids for what overlaps nothing tracked, ids kept
and never reused, objects that stay absent ended, class and prompt carried with each id.

The id logic runs on a stand-in for SAM 2 that follows each prompted object by its colour (ColorSegmenter): random
tiny weights give masks unrelated to the objects (tests/test_video_parity.py pins SAM 2's tracking against Meta's),
so only a tracker that follows the shapes can show which detection is which object. The last tests run the same
path end to end on the tiny Florence-2 and SAM 2."""

import numpy as np
import pytest
import supervision as sv
import torch

from grounded_sam import CaptionOntology, GroundedSAM2, VideoSegmenter
from grounded_sam.errors import UserInputError
from grounded_sam.segmentation.video_session import TrackedFrame

HEIGHT, WIDTH = 96, 128
RED, BLUE = (230, 30, 30), (30, 30, 230)
ONTOLOGY = CaptionOntology({"a red square": "red", "a blue square": "blue"})


def shapes(count: int, red_missing=range(0), blue_from: int = 0) -> list[np.ndarray]:
    """A gray background, a red square moving right (gone on ``red_missing`` frames) and a blue square moving left
    (there from frame ``blue_from`` on)."""
    frames = []
    for index in range(count):
        frame = np.full((HEIGHT, WIDTH, 3), 120, np.uint8)
        if index not in red_missing:
            frame[10:40, 5 + index : 35 + index] = RED
        if index >= blue_from:
            frame[55:85, 90 - index // 2 : 120 - index // 2] = BLUE
        frames.append(frame)
    return frames


class ColorTracker:
    """SAM 2's tracker interface (add_prompts / step / remove_objects) following each object by the colour its box
    held on its prompt frame: mask = the pixels of that colour; score +5 when there are any, else -5."""

    def __init__(self):
        self.colors, self.pending = {}, {}

    def add_prompts(self, frame_index, prompts, frame_size):
        self.pending.update(prompts)

    def step(self, frame_index, frame, reverse=False):
        for obj_id, prompt in self.pending.items():
            x1, y1, x2, y2 = prompt.box.astype(int)
            self.colors[obj_id] = np.median(frame[y1:y2, x1:x2].reshape(-1, 3), axis=0)
        self.pending = {}
        masks = [np.abs(frame.astype(int) - color).max(axis=2) < 20 for color in self.colors.values()]
        logits = np.array([np.where(mask, 5.0, -1024.0) for mask in masks], np.float32).reshape(-1, *frame.shape[:2])
        scores = np.array([5.0 if mask.any() else -5.0 for mask in masks], np.float32)
        return TrackedFrame(frame_index, list(self.colors), logits, scores)

    def remove_objects(self, object_ids):
        for obj_id in object_ids:
            del self.colors[obj_id]


class ColorSegmenter:
    def __init__(self):
        self.trackers = []

    def tracker(self, total_frames=None, offload=False):
        self.trackers.append(ColorTracker())
        return self.trackers[-1]


class ScriptedDetector:
    """Boxes the red square on every detection frame, and the blue one from frame ``blue_from`` on (it is in the
    video before that: the detector just does not answer it). Frame numbers follow from the call count."""

    def __init__(self, detect_every: int, blue_from: int = 0, twice: bool = False):
        self.calls, self.every, self.blue_from, self.twice = 0, detect_every, blue_from, twice

    def detect(self, images):
        frame_index, self.calls = self.calls * self.every, self.calls + 1
        image = images[0]
        found = [("red", "a red square", RED)] + [("blue", "a blue square", BLUE)] * (frame_index >= self.blue_from)
        found += [("red", "a red thing", RED)] * self.twice  # a second prompt finding the same square
        rows = [(name, prompt, self._box(image, color)) for name, prompt, color in found]
        rows = [row for row in rows if row[2] is not None]
        if not rows:
            return [sv.Detections.empty()]
        return [
            sv.Detections(
                xyxy=np.array([box for _, _, box in rows], np.float32),
                confidence=np.linspace(0.9, 0.8, len(rows)).astype(np.float32),
                class_id=np.array([ONTOLOGY.classes().index(name) for name, _, _ in rows]),
                data={
                    "class_name": np.array([name for name, _, _ in rows]),
                    "prompt": np.array([p for _, p, _ in rows]),
                },
            )
        ]

    @staticmethod
    def _box(image, color):
        ys, xs = np.nonzero((image == color).all(axis=2))
        return None if len(xs) == 0 else [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def tracked(frames, detector, **options) -> list[tuple[int, sv.Detections]]:
    segmenter = ColorSegmenter()
    model = GroundedSAM2(ONTOLOGY, detector=detector, segmenter=object(), video_segmenter=segmenter, nms_threshold=None)
    return list(model.track(frames, **options)), segmenter


def ids_per_frame(results) -> list[list[int]]:
    return [found.tracker_id.tolist() for _, found in results]


def test_a_second_object_gets_a_new_id_at_the_next_detection_frame_and_the_first_keeps_its_own():
    results, _ = tracked(shapes(30), ScriptedDetector(detect_every=5, blue_from=12), detect_every=5)
    assert [index for index, _ in results] == list(range(30))
    assert ids_per_frame(results) == [[1]] * 15 + [[1, 2]] * 15  # answered from frame 12: a new id at frame 15
    for _, found in results[15:]:
        assert found.data["class_name"].tolist() == ["red", "blue"]
        assert found.data["prompt"].tolist() == ["a red square", "a blue square"]
        assert found.class_id.tolist() == [0, 1]
        blue = found.mask[1]
        assert (found.xyxy[1] == sv.mask_to_xyxy(blue[None])[0]).all() and not (blue & found.mask[0]).any()


def test_detections_of_a_tracked_object_leave_the_session_again():
    results, segmenter = tracked(shapes(30), ScriptedDetector(detect_every=3, twice=True), detect_every=3)
    assert set(np.concatenate([found.tracker_id for _, found in results])) == {1, 2}  # red, blue: nothing twice
    assert len(segmenter.trackers[0].colors) == 2  # the 28 rejected candidates were removed


def test_an_object_absent_for_patience_frames_ends_and_its_id_is_never_reused():
    frames = shapes(40, red_missing=range(12, 25))
    results, segmenter = tracked(frames, ScriptedDetector(detect_every=5), detect_every=5, patience=4)
    ids = ids_per_frame(results)
    assert ids[11] == [1, 2] and ids[12] == [2]  # red gone: absent from the detections at once
    assert all(1 not in frame_ids for frame_ids in ids[12:])  # ended after 4 absent frames, never back
    assert ids[24] == [2] and ids[25] == [2, 3]  # red seen again at the detection frame 25: a new id
    assert len(segmenter.trackers[0].colors) == 2  # in the session: blue and the new red; the old red is gone


def test_an_absent_object_within_its_patience_keeps_its_id():
    results, _ = tracked(shapes(30, red_missing=range(12, 15)), ScriptedDetector(detect_every=5), detect_every=5)
    ids = ids_per_frame(results)
    assert ids[12:15] == [[2]] * 3 and all(frame_ids == [1, 2] for frame_ids in ids[15:])


def test_frames_before_any_detection_are_empty_and_well_formed():
    results, _ = tracked(shapes(6, blue_from=100, red_missing=range(0, 6)), ScriptedDetector(detect_every=2))
    for _, found in results:
        assert len(found) == 0 and found.mask.shape == (0, HEIGHT, WIDTH) and found.tracker_id.shape == (0,)
        assert set(found.data) == {"class_name", "prompt", "object_score"}


@pytest.mark.parametrize(
    "options, message",
    [({"detect_every": 0}, "detect_every"), ({"iou_threshold": 0.0}, "iou_threshold"), ({"patience": 0}, "patience")],
)
def test_bad_tracking_options_are_refused(options, message):
    with pytest.raises(UserInputError, match=message):
        tracked(shapes(2), ScriptedDetector(detect_every=1), **options)


@pytest.fixture(scope="module")
def tiny_pipeline(florence_dir, sam_dir, ontology):
    torch.set_num_threads(1)
    video = VideoSegmenter(sam=sam_dir, device="cpu", dtype="float32")
    segmenter = video.image_segmenter()
    return GroundedSAM2(
        ontology, florence=florence_dir, segmenter=segmenter, video_segmenter=video, device="cpu", max_new_tokens=64
    )


@pytest.mark.slow
def test_text_tracking_end_to_end_on_the_tiny_models(tiny_pipeline):
    frames = shapes(12)
    results = list(tiny_pipeline.track(frames, detect_every=4))
    assert [index for index, _ in results] == list(range(12))
    seen = []
    for _, found in results:
        assert found.mask.shape[1:] == (HEIGHT, WIDTH) and found.confidence.dtype == np.float32
        assert set(found.data["class_name"]) <= {"dog", "person"} and len(found.class_id) == len(found)
        seen += [obj_id for obj_id in found.tracker_id if obj_id not in seen]
    assert seen == list(range(1, len(seen) + 1)) and seen  # ids count up from 1 in order of appearance


@pytest.mark.slow
def test_track_loads_sams_video_model_from_the_pipelines_own_source(florence_dir, sam_dir, ontology):
    model = GroundedSAM2(ontology, florence=florence_dir, sam=sam_dir, device="cpu", dtype="float32", max_new_tokens=64)
    assert model.video_segmenter is None
    first = next(iter(model.track(shapes(2))))
    assert first[0] == 0 and isinstance(model.video_segmenter, VideoSegmenter)
    assert model.video_segmenter.settings()["model"] == model.settings()["segmenter"]["model"]
