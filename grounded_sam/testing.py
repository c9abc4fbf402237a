"""Tiny Florence-2 and SAM 2 models with random weights, for tests and demos that must run without network.

They are built from configs, saved with ``save_pretrained`` and loaded back through the same ``from_pretrained`` path
real weights take. Random weights almost never write a well-formed box, so :func:`build_tiny_florence2` can also
*script* the decoder: with ``script="a dog<loc_100><loc_120><loc_500><loc_600>"`` the model writes exactly that text
for any image and any prompt, with known, varying token probabilities.

The scripted decoder works because every decoder block's output projection is zero (each block passes its input
through), token embeddings are zero, position ``p`` is a one-hot embedding, and an untied ``lm_head`` maps position
``p`` to the ``p``-th target token. The encoder and vision tower keep their random weights, so images still flow
through the whole model.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

# Words the tiny tokenizer learns whole; anything else is spelled from bytes, which is fine for tests.
_CORPUS = (
    "Locate the phrases in the caption: Locate the objects with category name in the image. "
    "What does the image describe? Locate a dog in the image. puppy person cat car truck bus "
    "bicycle motorcycle people photo picture of an astronaut coffee cup rocket kitten animal"
)
FLORENCE_MARKUP_TOKENS = ["<od>", "</od>", "<ocr>", "</ocr>", "<poly>", "</poly>", "<sep>", "<ground>", "<obj>"]
# What the tiny Florence-2 of `grounded-sam models tiny` (and the tests) writes for any image: two "a dog" boxes, one
# phrase that matches no prompt ("the image"), and "Persons" (matches "a person": case and plural), one normal box and
# one a single location bin wide, which is under a pixel on images narrower than 1000 px.
DEMO_SCRIPT = (
    "a dog<loc_100><loc_120><loc_450><loc_600><loc_600><loc_550><loc_900><loc_950>"
    "the image<loc_0><loc_0><loc_999><loc_999>"
    "Persons<loc_400><loc_100><loc_900><loc_400><loc_10><loc_10><loc_11><loc_300>"
)
FLORENCE_IMAGE_SIZE = 32  # pixels; with one 4x-stride stage this gives 8 x 8 + 1 = 65 image tokens
SAM_IMAGE_SIZE = 128
_D_MODEL = 128  # also the longest script the decoder can hold, one position per dimension


def build_tiny_florence2(directory: str | os.PathLike, script: str | None = None, seed: int = 0) -> Path:
    """Builds a tiny Florence-2 (model, tokenizer, processor) and saves it to ``directory``.

    Args:
        directory: where to ``save_pretrained``; created if missing.
        script: text the decoder writes for every input, without ``<s>``/``</s>``; None keeps random weights.
        seed: torch seed for the random weights.

    Returns:
        The directory, loadable with ``Florence2ForConditionalGeneration.from_pretrained`` and ``AutoProcessor``.
    """
    from transformers import CLIPImageProcessor, Florence2Config, Florence2ForConditionalGeneration, Florence2Processor

    directory = Path(directory)
    tokenizer = _train_florence_tokenizer()
    config = Florence2Config(
        text_config=dict(
            model_type="bart",
            vocab_size=len(tokenizer),
            max_position_embeddings=256,
            d_model=_D_MODEL,
            encoder_layers=1,
            decoder_layers=1,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            dropout=0.0,
            attention_dropout=0.0,
            bos_token_id=0,
            pad_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=2,
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            depths=[1],
            patch_size=[7],
            patch_stride=[4],
            patch_padding=[3],
            patch_prenorm=[False],
            embed_dim=[16],
            num_heads=[1],
            num_groups=[1],
            window_size=4,
            projection_dim=_D_MODEL,
            drop_path_rate=0.0,
        ),
        image_token_id=tokenizer.image_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Florence2ForConditionalGeneration(config).eval()
    if script is not None:
        target = tokenizer("<s>" + script + "</s>", add_special_tokens=False)["input_ids"]
        _script_decoder(model, target)
    side = FLORENCE_IMAGE_SIZE
    image_processor = CLIPImageProcessor(
        size={"height": side, "width": side},
        crop_size={"height": side, "width": side},
        do_center_crop=False,
        image_seq_length=(side // 4) ** 2 + 1,
    )
    model.save_pretrained(directory)
    Florence2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def _train_florence_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([_CORPUS] * 4, trainer)
    tokenizer.add_special_tokens(["<mask>", "<image>", *[f"<loc_{i}>" for i in range(1000)], *FLORENCE_MARKUP_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        extra_special_tokens={"image_token": "<image>"},
    )


@torch.no_grad()
def _script_decoder(model, target_ids: list[int]) -> None:
    """Sets decoder weights so that greedy decoding writes ``target_ids`` after the decoder start token."""
    decoder = model.model.language_model.decoder
    if len(target_ids) > _D_MODEL - 1:
        raise ValueError(f"script is {len(target_ids)} tokens long; the tiny decoder holds at most {_D_MODEL}")
    model.model.language_model.shared.weight.zero_()
    decoder.embed_tokens.weight.zero_()
    for layer in decoder.layers:
        for projection in (layer.self_attn.out_proj, layer.encoder_attn.out_proj, layer.fc2):
            projection.weight.zero_()
            projection.bias.zero_()
    positions = decoder.embed_positions
    positions.weight.zero_()
    offset = getattr(positions, "offset", 2)
    model.lm_head.weight.zero_()
    for step, token in enumerate(target_ids):
        positions.weight[step + offset, step] = 1.0
        # Strength varies with the step so that token probabilities, and box confidences, differ.
        model.lm_head.weight[token, step] = 0.6 + 0.04 * ((step * 7) % 10)


def build_tiny_sam2(directory: str | os.PathLike, seed: int = 0) -> Path:
    """Builds a tiny SAM 2 (Hiera backbone, 128-pixel input) with random weights and saves it as the hub's sam2.1
    repos are saved: a ``Sam2VideoModel`` and its processor, so that the folder loads as ``Sam2Model`` (images) and
    as ``Sam2VideoModel`` (video, with its memory bank) alike."""
    from transformers import Sam2ImageProcessor, Sam2VideoModel, Sam2VideoProcessor, Sam2VideoVideoProcessor

    directory = Path(directory)
    torch.manual_seed(seed)
    model = Sam2VideoModel(_tiny_sam2_video_config()).eval()
    with torch.no_grad():  # random also where transformers initialises zeros (no-memory and no-object embeddings)
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
        # random weights score every object within 0.01 of the present / absent boundary: objects are present
        model.mask_decoder.pred_obj_score_head.proj_out.bias.add_(1.0)
    model.save_pretrained(directory)
    side = SAM_IMAGE_SIZE
    Sam2VideoProcessor(
        image_processor=Sam2ImageProcessor(
            size={"height": side, "width": side}, mask_size={"height": side // 4, "width": side // 4}
        ),
        video_processor=Sam2VideoVideoProcessor(size={"height": side, "width": side}),
    ).save_pretrained(directory)
    return directory


def _tiny_sam2_video_config():
    from transformers import Sam2VideoConfig

    side = SAM_IMAGE_SIZE
    backbone = dict(
        model_type="sam2_hiera_det_model",
        hidden_size=12,
        num_attention_heads=1,
        image_size=[side, side],
        patch_kernel_size=[7, 7],
        patch_stride=[4, 4],
        patch_padding=[3, 3],
        query_stride=[2, 2],
        window_positional_embedding_background_size=[4, 4],
        num_query_pool_stages=3,
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[12, 24, 48, 96],
        num_attention_heads_per_stage=[1, 1, 1, 1],
        window_size_per_stage=[4, 4, 4, 4],
        global_attention_blocks=[3],
    )
    feature_sizes = [[side // 4, side // 4], [side // 8, side // 8], [side // 16, side // 16]]
    # The memory bank scaled down with the image path (8 x 8 memory tokens), within two limits of transformers'
    # Sam2VideoModel: memory cross-attention is built with kv_in_dim=64 whatever the config says, so the memory
    # channels stay 64; object pointers are split into 64-wide tokens only when the hidden size is larger than 64
    # (else the concatenation with the memories fails), hence a hidden size of 128.
    return Sam2VideoConfig(
        vision_config=dict(
            model_type="sam2_vision_model",
            backbone_config=backbone,
            backbone_channel_list=[96, 48, 24, 12],
            backbone_feature_sizes=feature_sizes,
            fpn_hidden_size=128,
        ),
        prompt_encoder_config=dict(hidden_size=128, image_size=side, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(
            hidden_size=128, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=32
        ),
        image_size=side,
        memory_attention_hidden_size=128,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64,
        memory_attention_rope_feat_sizes=[side // 16, side // 16],
        memory_encoder_hidden_size=128,
        memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=128,
        memory_fuser_embed_dim=128,
        memory_fuser_intermediate_dim=64,
        memory_fuser_num_layers=1,
    )
