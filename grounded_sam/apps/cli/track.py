"""``grounded-sam track``: a video tracked by text into an annotated video, a YouTube-VIS tracks file, MOT text and,
with ``--dataset-every``, a YOLO-seg + COCO dataset of every N-th frame."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from grounded_sam.apps.cli.common import (
    BoxThreshold,
    Compile,
    DetectorModel,
    DetectorName,
    Device,
    Dtype,
    Florence,
    MinConfidence,
    Nms,
    OntologyFile,
    Preset,
    Prompts,
    Sam,
    TextThreshold,
    class_table,
    console,
    ontology_from,
    pipeline_spec,
    user_errors,
)
from grounded_sam.images import DEFAULT_MAX_PIXELS


@user_errors
def track(
    video: Annotated[Path, typer.Argument(help="A video file (mp4, avi, mov, webm...) or a folder of frames.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the annotated video and the tracks.")],
    prompt: Prompts = None,
    ontology: OntologyFile = None,
    detect_every: Annotated[int, typer.Option(min=1, help="Frames between detections (new objects).")] = 10,
    iou_threshold: Annotated[
        float, typer.Option(min=0.01, max=1.0, help="Mask IoU at which a detection is an object already tracked.")
    ] = 0.5,
    patience: Annotated[int, typer.Option(min=1, help="Frames an object may be absent before it ends.")] = 30,
    dataset_every: Annotated[
        int, typer.Option(min=0, help="Also write every N-th frame as a YOLO-seg + COCO dataset in OUT/dataset; 0: no.")
    ] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace a dataset of other settings in OUT/dataset.")] = False,
    discard_corrections: Annotated[
        bool, typer.Option(help="With --overwrite, also replace OUT/dataset's frames whose labels a person corrected.")
    ] = False,
    fps: Annotated[float, typer.Option(min=0.0, help="Frame rate of the annotated video; 0: the video's own.")] = 0.0,
    offload: Annotated[bool, typer.Option(help="Keep SAM 2's state on the CPU (long videos, small GPUs).")] = False,
    max_pixels: Annotated[
        int, typer.Option(min=0, help="Refuse videos whose frames have more pixels than this; 0: no limit.")
    ] = DEFAULT_MAX_PIXELS,
    florence: Florence = None,
    sam: Sam = None,
    preset: Preset = "default",
    device: Device = "auto",
    dtype: Dtype = "auto",
    min_confidence: MinConfidence = 0.0,
    nms: Nms = 0.7,
    compile: Compile = False,
    detector: DetectorName = "florence2",
    detector_model: DetectorModel = None,
    box_threshold: BoxThreshold = None,
    text_threshold: TextThreshold = None,
) -> None:
    """Track what you name through a video: OUT/annotated.mp4, OUT/tracks.json (YouTube-VIS), OUT/tracks.txt (MOT).

    Example: grounded-sam track clip.mp4 -p "a dog" -o tracked/ --dataset-every 30
    """
    from grounded_sam.apps.track_files import DATASET_FOLDER, plan_track_files, track_files
    from grounded_sam.models.hub import require_available

    # Everything that can be checked is checked before the models load: options, the video (it opens, its first
    # frame decodes, within the pixel budget), the output folder and a dataset already there (locked).
    chosen = ontology_from(prompt, ontology)
    detector_options = dict(
        detector=detector, detector_model=detector_model, box_threshold=box_threshold, text_threshold=text_threshold
    )
    spec = pipeline_spec(chosen, florence, sam, preset, device, dtype, min_confidence, nms, compile, **detector_options)
    budget = max_pixels or None
    plan_track_files(video, output, budget)
    settings = _settings(spec, detect_every, iou_threshold, patience)
    require_available(spec.model_sources())
    spec.check_prompts()
    replace = {"overwrite": overwrite, "discard_corrections": discard_corrections}
    dataset = _dataset(output / DATASET_FOLDER, video, chosen, settings, dataset_every, replace)
    try:
        model = _build(chosen, spec)
        report = track_files(
            model, video, output, detect_every, iou_threshold, patience, offload, budget, dataset, fps or None
        )
    except KeyboardInterrupt:
        kept = f"; the dataset keeps every frame written ({dataset.folder})" if dataset else ""
        console().print(f"Interrupted{kept}. Run the same command again to track the video.", markup=False)
        raise typer.Exit(130) from None
    finally:
        if dataset is not None:
            dataset.close()
    _print_summary(report, class_table)


def _settings(spec, detect_every: int, iou_threshold: float, patience: int) -> dict:
    """What a frame's labels depend on, computed without loading a model: the detector, SAM 2's video model, the
    filtering and the tracking options."""
    from grounded_sam.device import resolve_autocast_dtype, resolve_device
    from grounded_sam.pipeline.tracking import TrackingOptions
    from grounded_sam.segmentation.video import video_settings

    TrackingOptions(detect_every, iou_threshold, patience)  # checked
    precision = resolve_autocast_dtype(spec.dtype, resolve_device(spec.device))
    model = {**spec.settings(), "segmenter": video_settings(spec.sam_source, precision)}
    tracking = {"detect_every": detect_every, "iou_threshold": iou_threshold, "patience": patience}
    return {"ontology": spec.ontology, "model": model, "tracking": tracking}


def _dataset(folder: Path, video: Path, ontology, settings: dict, every: int, replace: dict):
    if not every:
        return None
    from grounded_sam.apps.track_dataset import VideoDataset
    from grounded_sam.labeling.options import LabelOptions

    options = LabelOptions(**replace, progress=False, verbose=False)
    return VideoDataset(folder, video, ontology.classes(), settings, every, options)


def _build(ontology, spec):
    """The pipeline with one SAM 2 in memory: the video model, whose image part is the pipeline's segmenter."""
    from grounded_sam.pipeline.grounded_sam2 import GroundedSAM2
    from grounded_sam.segmentation.video import VideoSegmenter

    video = VideoSegmenter(sam=spec.sam_source, device=spec.device, dtype=spec.dtype, sam_size=spec.sam_size)
    options = {**spec.options(), "sam": None, "sam_size": None}
    options.update(segmenter=video.image_segmenter(), video_segmenter=video)
    return GroundedSAM2(ontology, **options)


def _print_summary(report, table) -> None:
    out = console()
    out.print(table(report.objects_per_class, f"{sum(report.objects_per_class.values())} objects tracked"))
    out.print(
        f"{report.frames} frames, {report.frames_with_objects} with objects; "
        f"{report.seconds:.1f} s, {report.frames_per_second:.2f} frames/s",
        markup=False,
    )
    out.print(f"written to {report.output}: {', '.join(report.files)} (video codec {report.codec})", markup=False)
    if report.dataset is not None:
        out.print(
            f"dataset: {report.dataset['folder']}, {report.dataset['frames']} frames "
            f"({report.dataset['written_now']} written now)",
            markup=False,
        )
    for item in report.skipped:
        out.print(f"skipped frame {item['frame']}: {item['reason']}", markup=False)
