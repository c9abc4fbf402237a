"""Tiny Florence-2, SAM 2, Grounding DINO, OWLv2 and SAM 3 models with random weights, for tests and demos that
must run without network (their tokenizers are built locally too).

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


# --- Grounding DINO, OWLv2 and SAM 3 -----------------------------------------------------------------------------
# Their tokenizers are built here too (WordPiece for Grounding DINO's BERT, byte-level BPE for CLIP), so nothing is
# downloaded; words outside this corpus are spelled from pieces, which is fine for tests.
_DETECTOR_WORDS = (
    "a an the of in on with dog puppy cat kitten person people car truck bus bicycle motorcycle photo picture "
    "astronaut coffee cup rocket animal remote control brown red small big tree chair table bird horse"
).split()
# Grounding DINO hard-codes bert-base-uncased's ids of its phrase delimiters ([CLS], [SEP], ".", "?" in
# modeling_grounding_dino.SPECIAL_TOKENS) and takes id 0 for [PAD]: a tiny vocabulary must put them at the same ids,
# or every prompt melts into one phrase.
BERT_SPECIAL_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103, ".": 1012, "?": 1029}
SAM3_IMAGE_SIZE = 112  # 8 x 8 patches of 14 pixels; FPN levels 32, 16 and 8; masks 32 x 32


def build_bert_tokenizer():
    """A lower-casing BERT WordPiece tokenizer whose special and delimiter ids are bert-base-uncased's."""
    from transformers import BertTokenizer

    pieces = [*_DETECTOR_WORDS, ",", "!", "'", "-", *"abcdefghijklmnopqrstuvwxyz0123456789"]
    pieces += [f"##{letter}" for letter in "abcdefghijklmnopqrstuvwxyz"]
    size = max(BERT_SPECIAL_IDS.values()) + 1 + len(pieces)
    vocab = [f"[unused{i}]" for i in range(size)]
    for token, index in BERT_SPECIAL_IDS.items():
        vocab[index] = token
    free = [index for index, token in enumerate(vocab) if token.startswith("[unused")]
    for index, piece in zip(free[-len(pieces) :], pieces):
        vocab[index] = piece
    # transformers 5: BertTokenizer(vocab_file=...) silently builds an empty vocabulary; a dict as vocab= works
    return BertTokenizer(vocab={token: index for index, token in enumerate(vocab)}, do_lower_case=True)


def build_clip_tokenizer(model_max_length: int):
    """A byte-level BPE tokenizer laid out like CLIP's: pad "!" is id 0 and end-of-text has the highest id (OWLv2's
    text tower pools at ``input_ids.argmax(-1)``, which is the end-of-text token in CLIP's vocabulary)."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    trainer_tokenizer = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    trainer_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["!"],
        end_of_word_suffix="</w>",
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    trainer_tokenizer.train_from_iterator([" ".join(_DETECTOR_WORDS)] * 8, trainer)
    state = json.loads(trainer_tokenizer.to_str())["model"]
    vocab = dict(state["vocab"])
    for character in pre_tokenizers.ByteLevel.alphabet():  # every byte may also end a word
        vocab.setdefault(character + "</w>", len(vocab))
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    merges = [tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ")) for merge in state["merges"]]
    return CLIPTokenizer(vocab=vocab, merges=merges, pad_token="!", model_max_length=model_max_length)


def build_tiny_grounding_dino(directory: str | os.PathLike, mm: bool = False, seed: int = 0) -> Path:
    """Builds a tiny Grounding DINO (``mm=True``: MM Grounding DINO) with random weights and saves model + processor.

    Swin with 4 one-block stages at 64 px, a one-layer BERT, d_model 64, 30 queries; images are resized to a shortest
    edge of 64 (longest 96). Loads with ``AutoModelForZeroShotObjectDetection`` and ``AutoProcessor``.
    """
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        MMGroundingDinoConfig,
        MMGroundingDinoForObjectDetection,
        SwinConfig,
    )

    directory = Path(directory)
    tokenizer = build_bert_tokenizer()
    backbone = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=4,
        out_indices=[2, 3, 4],
        drop_path_rate=0.0,
    )
    text = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    # d_model 64: the extra feature level is 1 x 1 on small inputs, and GroupNorm(32, d_model) needs more than one
    # value per group. Two decoder layers: with one, post_init finds no bbox_embed to tie and raises.
    config = (MMGroundingDinoConfig if mm else GroundingDinoConfig)(
        backbone_config=backbone,
        text_config=text,
        d_model=64,
        num_queries=30,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_n_points=2,
        decoder_n_points=2,
        dropout=0.0,
        fusion_droppath=0.0,
    )
    torch.manual_seed(seed)
    (MMGroundingDinoForObjectDetection if mm else GroundingDinoForObjectDetection)(config).eval().save_pretrained(
        directory
    )
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def build_tiny_owlv2(directory: str | os.PathLike, seed: int = 0) -> Path:
    """Builds a tiny OWLv2 (ViT at 96 px with 16-px patches: 36 boxes; one-layer text tower; 16 text tokens) with
    random weights and saves model + processor."""
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    directory = Path(directory)
    tokenizer = build_clip_tokenizer(model_max_length=16)
    config = Owlv2Config(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=96,
            patch_size=16,
        ),
        projection_dim=32,  # the class head compares projected text with image features of the text's width
    )
    torch.manual_seed(seed)
    model = Owlv2ForObjectDetection(config).eval()
    with torch.no_grad():  # a random box head saturates its sigmoid (boxes of size 0 or 1): keep boxes near their cell
        model.box_head.dense2.weight.mul_(0.01)
        model.box_head.dense2.bias.zero_()
    model.save_pretrained(directory)
    image_processor = Owlv2ImageProcessor(size={"height": 96, "width": 96})
    Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def build_tiny_sam3(directory: str | os.PathLike, seed: int = 0) -> Path:
    """Builds a tiny SAM 3 (two-layer ViT at 112 px, one-layer CLIP text tower with 32 tokens, one-layer DETR
    encoder and decoder with 20 queries) with random weights and saves ``Sam3Model`` + ``Sam3Processor``."""
    from transformers import Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor

    directory = Path(directory)
    tokenizer = build_clip_tokenizer(model_max_length=32)
    side, patches, hidden = SAM3_IMAGE_SIZE, SAM3_IMAGE_SIZE // 14, 32
    layer = dict(hidden_size=hidden, num_layers=1, num_attention_heads=2, intermediate_size=64)
    config = Sam3Config(
        vision_config=dict(
            backbone_config=dict(
                model_type="sam3_vit_model",  # without it the config cannot tell its backbone's class
                hidden_size=hidden,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=side,
                patch_size=14,
                window_size=4,
                global_attn_indexes=[1],
                pretrain_image_size=56,
            ),
            fpn_hidden_size=hidden,
            backbone_feature_sizes=[[patches * 4] * 2, [patches * 2] * 2, [patches] * 2],
        ),
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=64,
            projection_dim=hidden,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=32,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        geometry_encoder_config=layer,
        detr_encoder_config=layer,
        detr_decoder_config={**layer, "num_queries": 20},
        mask_decoder_config=dict(hidden_size=hidden, num_attention_heads=2),
    )
    torch.manual_seed(seed)
    Sam3Model(config).eval().save_pretrained(directory)
    image_processor = Sam3ImageProcessor(
        size={"height": side, "width": side}, mask_size={"height": patches * 4, "width": patches * 4}
    )
    Sam3Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory
