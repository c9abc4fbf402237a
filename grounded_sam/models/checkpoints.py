"""Meta's official SAM 2 / 2.1 checkpoint files (``sam2.1_hiera_tiny.pt`` ... ``sam2_hiera_large.pt``) as
transformers ``Sam2Model`` (images) or ``Sam2VideoModel`` (video), with no conversion step on the user's side.

transformers ships no converter in its wheel, so the key mapping of its own scripts
(huggingface/transformers, src/transformers/models/sam2/convert_sam2_to_hf.py and
models/sam2_video/convert_sam2_video_to_hf.py) is restated here as one table of ordered rules: the image rules, and
the memory-bank rules the video model applies before them. The image model sets the memory-bank keys aside by name;
for either model, any other key that is missing or left over is an error that names it.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from grounded_sam.errors import InvalidCheckpointError, UserInputError

# Hiera trunk per size, from Meta's sam2/configs/sam2[.1]/*.yaml (2.0 and 2.1 share the image path). Heads and the
# global-attention blocks cannot be read off tensor shapes, so they come from this table.
HIERA = {
    "tiny": dict(hidden=96, heads=1, stages=[1, 2, 7, 2], global_blocks=[5, 7, 9], windows=[8, 4, 14, 7], bkg=[7, 7]),
    "small": dict(
        hidden=96, heads=1, stages=[1, 2, 11, 2], global_blocks=[7, 10, 13], windows=[8, 4, 14, 7], bkg=[7, 7]
    ),
    "base_plus": dict(
        hidden=112, heads=2, stages=[2, 3, 16, 3], global_blocks=[12, 16, 20], windows=[8, 4, 14, 7], bkg=[14, 14]
    ),
    "large": dict(
        hidden=144, heads=2, stages=[2, 6, 36, 4], global_blocks=[23, 33, 43], windows=[8, 4, 16, 8], bkg=[7, 7]
    ),
}
CHECKPOINT_SUFFIXES = (".pt", ".pth")

# Used only by Meta's video predictor (memory bank, object pointers); "no_obj_embed_spatial" and
# "obj_ptr_tpos_proj.*" exist in 2.1 files only.
VIDEO_ONLY_PREFIXES = (
    "maskmem_tpos_enc",
    "no_mem_pos_enc",
    "no_obj_ptr",
    "no_obj_embed_spatial",
    "mask_downsample.",
    "memory_attention.",
    "memory_encoder.",
    "obj_ptr_proj.",
    "obj_ptr_tpos_proj.",
)

_THREE_LAYER_MLPS = r"(output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head)"
_RULES = [  # (pattern, replacement), applied in order to every image-model key
    (r"^image_encoder\.trunk\.", "vision_encoder.backbone."),
    (r"^image_encoder\.neck\.convs\.(\d+)\.conv\.", r"vision_encoder.neck.convs.\1."),
    (r"^sam_prompt_encoder\.", "prompt_encoder."),
    (r"^sam_mask_decoder\.", "mask_decoder."),
    (r"^no_mem_embed$", "no_memory_embedding"),
    (r"\.patch_embed\.proj\.", ".patch_embed.projection."),
    (r"\.norm(\d*|_final_attn)\.", r".layer_norm\1."),
    (r"\.out_proj\.", ".o_proj."),
    (r"(blocks\.\d+|transformer\.layers\.\d+)\.mlp\.layers\.0\.", r"\1.mlp.proj_in."),
    (r"(blocks\.\d+|transformer\.layers\.\d+)\.mlp\.layers\.1\.", r"\1.mlp.proj_out."),
    (_THREE_LAYER_MLPS + r"\.layers\.0\.", r"\1.proj_in."),
    (_THREE_LAYER_MLPS + r"\.layers\.2\.", r"\1.proj_out."),
    (_THREE_LAYER_MLPS + r"\.layers\.1\.", r"\1.layers.0."),
    (r"\.output_upscaling\.0\.", ".upscale_conv1."),
    (r"\.output_upscaling\.1\.", ".upscale_layer_norm."),
    (r"\.output_upscaling\.3\.", ".upscale_conv2."),
    (r"\.mask_downscaling\.0\.", ".mask_embed.conv1."),
    (r"\.mask_downscaling\.1\.", ".mask_embed.layer_norm1."),
    (r"\.mask_downscaling\.3\.", ".mask_embed.conv2."),
    (r"\.mask_downscaling\.4\.", ".mask_embed.layer_norm2."),
    (r"\.mask_downscaling\.6\.", ".mask_embed.conv3."),
]


def _mask_downsampler(match: re.Match) -> str:
    # Meta's MaskDownSampler is one nn.Sequential: [conv, LayerNorm2d, GELU] x 4, then a 1x1 conv (index 12).
    index = int(match.group(1))
    layer, kind = divmod(index, 3)
    if index == 12:
        return "memory_encoder.mask_downsampler.final_conv."
    if kind == 2:
        raise InvalidCheckpointError(f"memory_encoder.mask_downsampler.encoder.{index} is an activation, not a weight")
    return f"memory_encoder.mask_downsampler.layers.{layer}.{'conv' if kind == 0 else 'layer_norm'}."


# The memory bank (memory attention, memory encoder, object pointers), applied before _RULES: those then rename
# .norm -> .layer_norm and .out_proj -> .o_proj inside memory attention. Anchored at the key's start so that the
# memory encoder's "out_proj" (a projection) is renamed here, before the image rule takes it for attention's.
_VIDEO_RULES = [
    (r"^maskmem_tpos_enc$", "memory_temporal_positional_encoding"),
    (r"^no_mem_pos_enc$", "no_memory_positional_encoding"),
    (r"^no_obj_ptr$", "no_object_pointer"),
    (r"^no_obj_embed_spatial$", "occlusion_spatial_embedding_parameter"),  # 2.1 only
    (r"^obj_ptr_tpos_proj\.", "temporal_positional_encoding_projection_layer."),  # 2.1 only
    (r"^obj_ptr_proj\.layers\.0\.", "object_pointer_proj.proj_in."),  # a 3-layer MLP
    (r"^obj_ptr_proj\.layers\.1\.", "object_pointer_proj.layers.0."),
    (r"^obj_ptr_proj\.layers\.2\.", "object_pointer_proj.proj_out."),
    (r"^memory_encoder\.out_proj\.", "memory_encoder.projection."),
    (r"^memory_encoder\.pix_feat_proj\.", "memory_encoder.feature_projection."),
    (r"^memory_encoder\.mask_downsampler\.encoder\.(\d+)\.", _mask_downsampler),
    (r"^memory_encoder\.fuser\.layers\.(\d+)\.dwconv\.", r"memory_encoder.memory_fuser.layers.\1.depthwise_conv."),
    (
        r"^memory_encoder\.fuser\.layers\.(\d+)\.pwconv(\d)\.",
        r"memory_encoder.memory_fuser.layers.\1.pointwise_conv\2.",
    ),
    (r"^memory_encoder\.fuser\.layers\.(\d+)\.gamma$", r"memory_encoder.memory_fuser.layers.\1.scale"),
    (r"^memory_encoder\.fuser\.", "memory_encoder.memory_fuser."),
]  # mask_downsample.* and memory_attention.* keep their names but for the image rules' renames
_POSITIONAL = "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
_POINT_EMBEDDING = re.compile(r"^sam_prompt_encoder\.point_embeddings\.(\d+)\.weight$")


def is_checkpoint_file(source: str | os.PathLike) -> bool:
    return str(source).endswith(CHECKPOINT_SUFFIXES) and Path(source).expanduser().is_file()


def infer_size(state_dict: dict[str, torch.Tensor]) -> tuple[str, str]:
    """(size, version) of a Meta state dict: trunk width and block count pick the size, checked against the
    positional embeddings; 2.1 files have ``no_obj_embed_spatial``."""
    try:
        width = state_dict["image_encoder.trunk.patch_embed.proj.weight"].shape[0]
        blocks = 1 + max(
            int(match.group(1))
            for key in state_dict
            if (match := re.match(r"image_encoder\.trunk\.blocks\.(\d+)\.", key))
        )
    except (KeyError, ValueError):
        raise InvalidCheckpointError(
            "not a SAM 2 checkpoint: no Hiera image encoder (image_encoder.trunk.*) in it"
        ) from None
    sizes = [size for size, hiera in HIERA.items() if hiera["hidden"] == width and sum(hiera["stages"]) == blocks]
    if len(sizes) != 1:
        raise InvalidCheckpointError(
            f"unknown SAM 2 image encoder: width {width}, {blocks} blocks (known: {', '.join(HIERA)})"
        )
    size, hiera = sizes[0], HIERA[sizes[0]]
    background = state_dict.get("image_encoder.trunk.pos_embed")
    window = state_dict.get("image_encoder.trunk.pos_embed_window")
    if (
        background is None
        or window is None
        or list(background.shape[-2:]) != hiera["bkg"]
        or window.shape[-1] != hiera["windows"][0]
    ):
        raise InvalidCheckpointError(f"positional embeddings missing or not those of Hiera-{size}")
    return size, "2.1" if "no_obj_embed_spatial" in state_dict else "2.0"


def sam2_config(size: str):
    """transformers ``Sam2Config`` of a Meta size name (tiny, small, base_plus, large)."""
    from transformers import Sam2Config, Sam2HieraDetConfig, Sam2VisionConfig

    if size not in HIERA:
        raise UserInputError(f"unknown SAM 2 size {size!r}: choose one of {', '.join(HIERA)}")
    hiera = HIERA[size]
    dims = [hiera["hidden"] * 2**stage for stage in range(4)]
    backbone = Sam2HieraDetConfig(
        hidden_size=hiera["hidden"],
        num_attention_heads=hiera["heads"],
        embed_dim_per_stage=dims,
        num_attention_heads_per_stage=[hiera["heads"] * 2**stage for stage in range(4)],
        blocks_per_stage=hiera["stages"],
        global_attention_blocks=hiera["global_blocks"],
        window_size_per_stage=hiera["windows"],
        window_positional_embedding_background_size=hiera["bkg"],
    )
    return Sam2Config(vision_config=Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=dims[::-1]))


def convert_state_dict(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Meta keys -> ``Sam2Model`` keys. Returns (converted state dict, video-only keys set aside)."""
    video_only = [key for key in state_dict if key.startswith(VIDEO_ONLY_PREFIXES)]
    image = {key: value for key, value in state_dict.items() if not key.startswith(VIDEO_ONLY_PREFIXES)}
    return _convert(image, _RULES), video_only


def convert_video_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every key of a Meta state dict -> ``Sam2VideoModel`` keys: the memory-bank rules, then the image rules."""
    return _convert(state_dict, _VIDEO_RULES + _RULES)


def _convert(state_dict: dict[str, torch.Tensor], rules) -> dict[str, torch.Tensor]:
    converted, point_embeddings = {}, {}
    for key, value in state_dict.items():
        if key == _POSITIONAL:  # one matrix in Meta's model, two buffers in transformers'
            converted["prompt_encoder.shared_embedding.positional_embedding"] = value
            converted["shared_image_embedding.positional_embedding"] = value.clone()
        elif match := _POINT_EMBEDDING.match(key):  # four Embedding(1, C) -> one Embedding(4, C)
            point_embeddings[int(match.group(1))] = value
        else:
            for pattern, replacement in rules:
                key = re.sub(pattern, replacement, key)
            converted[key] = value
    if point_embeddings:
        converted["prompt_encoder.point_embed.weight"] = torch.cat(
            [point_embeddings[i] for i in sorted(point_embeddings)]
        )
    return converted


def load_sam2_checkpoint(path: str | os.PathLike, size: str | None = None):
    """Builds a ``Sam2Model`` (float32, eval mode, on the CPU) from an official Meta ``.pt`` file.

    Args:
        path: ``sam2.1_hiera_*.pt`` or ``sam2_hiera_*.pt`` from Meta's download script (a dict whose ``"model"``
            entry is the state dict), read with ``torch.load(..., weights_only=True)``.
        size: "tiny", "small", "base_plus" or "large"; inferred from the file when None, checked when given.

    Raises:
        ValueError: not a SAM 2 checkpoint, a size that does not match, or keys that are missing or left over
            (named in the message; only the video-memory keys may be left over).
    """
    from transformers import Sam2Model

    state_dict, inferred, version = _read_checked(path, size)
    return _filled(Sam2Model(sam2_config(inferred)), convert_state_dict(state_dict)[0], path, version, inferred)


def load_sam2_video_checkpoint(
    path: str | os.PathLike, size: str | None = None, image_size: int = 1024, model_class=None
):
    """Builds a ``Sam2VideoModel`` (float32, eval mode, on the CPU) from an official Meta ``.pt`` file: every weight
    of the file, the memory bank included, lands in the model.

    Args:
        path, size: as for :func:`load_sam2_checkpoint`.
        image_size: the model's input side; Meta's is 1024. Smaller values (Meta's ``++model.image_size=...``) run the
            same weights on fewer tokens, for cheap comparisons on a CPU.
        model_class: a ``Sam2VideoModel`` subclass to build instead of transformers' own.

    Raises:
        ValueError: as :func:`load_sam2_checkpoint`, with no key allowed left over.
    """
    from transformers import Sam2VideoModel

    state_dict, inferred, version = _read_checked(path, size)
    model = (model_class or Sam2VideoModel)(sam2_video_config(inferred, version, image_size))
    return _filled(model, convert_video_state_dict(state_dict), path, version, inferred)


def sam2_video_config(size: str, version: str = "2.1", image_size: int = 1024):
    """transformers ``Sam2VideoConfig`` of a Meta size and version ("2.0" or "2.1").

    Meta's sam2/configs/sam2[.1]/*.yaml give every size the same memory settings, which are transformers' defaults;
    the versions differ in two switches: the object pointers' temporal encoding (``add_tpos_enc_to_obj_ptrs``,
    ``proj_tpos_enc_in_obj_ptrs``) and the no-object spatial embedding (``no_obj_embed_spatial``), both 2.1 only.
    Every size-dependent field follows ``image_size`` (feature maps, prompt grid, memory attention's RoPE grid).
    """
    from transformers import Sam2VideoConfig

    if version not in ("2.0", "2.1"):
        raise UserInputError(f"unknown SAM 2 version {version!r}: choose 2.0 or 2.1")
    vision = sam2_config(size).vision_config  # prompt encoder and mask decoder: transformers' defaults are Meta's
    vision.backbone_feature_sizes = [[image_size // stride] * 2 for stride in (4, 8, 16)]
    vision.backbone_config.image_size = [image_size, image_size]
    is_21 = version == "2.1"
    return Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config=dict(image_size=image_size),
        image_size=image_size,
        memory_attention_rope_feat_sizes=[image_size // 16] * 2,
        enable_temporal_pos_encoding_for_object_pointers=is_21,
        enable_occlusion_spatial_embedding=is_21,
    )


def _read_checked(path, size: str | None) -> tuple[dict[str, torch.Tensor], str, str]:
    state_dict = read_state_dict(path)
    try:
        inferred, version = infer_size(state_dict)
    except InvalidCheckpointError as error:
        raise InvalidCheckpointError(f"{path}: {error}") from None
    if size is not None and size != inferred:
        raise InvalidCheckpointError(f"{path} holds SAM {version} Hiera-{inferred}, not {size}")
    return state_dict, inferred, version


def _filled(model, converted: dict[str, torch.Tensor], path, version: str, size: str):
    """``model`` with ``converted`` loaded, in eval mode; any weight missing or left over is an error naming it."""
    result = model.load_state_dict(converted, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise InvalidCheckpointError(
            f"{path} (SAM {version} Hiera-{size}) does not fit transformers' {type(model).__name__}: "
            f"missing {result.missing_keys}, left over {result.unexpected_keys}"
        )
    model.config.name_or_path = str(Path(path).expanduser().resolve())
    return model.eval()


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of a Meta checkpoint file, read with ``torch.load(..., weights_only=True)`` (no code from the
    file runs); a file that is empty, cut short, not a torch file or holds anything but tensors is refused naming it."""
    path = Path(path).expanduser()
    fix = "download it again (checkpoints/download_ckpts.sh)"
    if path.stat().st_size == 0:
        raise InvalidCheckpointError(f"SAM 2 checkpoint {path} is empty (0 bytes); {fix}")
    if not zipfile.is_zipfile(path):  # torch.save's format; a cut-off download loses the zip's central directory
        raise InvalidCheckpointError(f"SAM 2 checkpoint {path} is not a complete PyTorch file (cut short?); {fix}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise InvalidCheckpointError(
            f"SAM 2 checkpoint {path} holds objects other than tensors, which grounded-sam never unpickles "
            "(weights_only=True); use Meta's official files"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        reason = " ".join(str(error).split())[:200]
        raise InvalidCheckpointError(f"SAM 2 checkpoint {path} cannot be read ({reason}); {fix}") from None
    state_dict = loaded["model"] if isinstance(loaded, dict) and "model" in loaded else loaded
    if not isinstance(state_dict, dict):
        raise InvalidCheckpointError(
            f"{path} is not a SAM 2 checkpoint: it holds a {type(state_dict).__name__}, not a state dict"
        )
    return state_dict


def default_sam2_processor(image_size: int = 1024):
    """The ``Sam2Processor`` every official SAM 2 checkpoint uses (1024 x 1024 input, ImageNet normalisation), or
    the same for a model of another input side."""
    from transformers import Sam2ImageProcessor, Sam2Processor

    if image_size == 1024:
        return Sam2Processor(image_processor=Sam2ImageProcessor())
    size, mask = {"height": image_size, "width": image_size}, {"height": image_size // 4, "width": image_size // 4}
    return Sam2Processor(image_processor=Sam2ImageProcessor(size=size, mask_size=mask))
