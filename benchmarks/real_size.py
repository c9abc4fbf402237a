"""Real-size Florence-2 and SAM 2.1 with random weights, for speed benchmarks that must run without the hub.

The architectures match the published checkpoints layer for layer, so compute and memory match real weights; only the
numbers in the tensors are random (boxes and masks are meaningless). Like ``grounded_sam.testing`` (whose approach this
copies at full size), models and processors are saved with ``save_pretrained`` and load back through the same
``from_pretrained(directory)`` path real weights take::

    python benchmarks/real_size.py /tmp/real --florence base --sam tiny   # build, reload, print parameter counts

Sources of the numbers (each config below says which one it uses):

- [F-cfg] ``config.json`` of microsoft/Florence-2-base and microsoft/Florence-2-large (remote-code format; vision
  ``dim_embed``/``num_heads``/``num_groups``/``depths``/``window_size``/``projection_dim``, BART ``text_config``).
- [F-conv] transformers ``models/florence2/convert_florence2_original_pytorch_to_hf.py``, which made the native
  florence-community/* checkpoints: adds ``<image>`` (id 51289, the ``Florence2Config.image_token_id`` default) and
  resizes the embeddings to ``len(tokenizer)`` padded to a multiple of 64: 51290 -> 51328.
- [F-proc] microsoft ``processing_florence2.py``: BART tokenizer (50265 ids) + 4 + 1000 ``<loc_*>`` + 20 markup tokens
  = 51289; images resized to 768 x 768 (bicubic, ImageNet mean/std), ``image_seq_length`` 577 = 24 * 24 + 1.
- [S-conv] transformers ``models/sam2/convert_sam2_to_hf.py`` ``get_config`` (not shipped in the wheel; read from the
  transformers repository), on top of the ``Sam2HieraDetConfig`` defaults, which are sam2.1-hiera-tiny.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

# --- Florence-2 ---------------------------------------------------------------------------------------------------
_DAVIT_COMMON = dict(  # [F-cfg] both sizes; the Florence2VisionConfig defaults are the same
    patch_size=[7, 3, 3, 3],
    patch_stride=[4, 2, 2, 2],
    patch_padding=[3, 1, 1, 1],
    patch_prenorm=[False, True, True, True],
    depths=[1, 1, 9, 1],
    window_size=12,
    max_temporal_embeddings=100,
    max_position_embeddings=50,  # visual_temporal_embedding / image_pos_embed
)
_BART_COMMON = dict(  # [F-cfg] both sizes
    model_type="bart",
    activation_function="gelu",
    scale_embedding=False,
    bos_token_id=0,
    pad_token_id=1,
    eos_token_id=2,
    decoder_start_token_id=2,
    forced_bos_token_id=0,
    forced_eos_token_id=2,
)
FLORENCE2_SIZES = {
    "base": dict(  # [F-cfg] microsoft/Florence-2-base
        vision=dict(
            embed_dim=[128, 256, 512, 1024], num_heads=[4, 8, 16, 32], num_groups=[4, 8, 16, 32], projection_dim=768
        ),
        text=dict(
            d_model=768,
            encoder_layers=6,
            decoder_layers=6,
            encoder_attention_heads=12,
            decoder_attention_heads=12,
            encoder_ffn_dim=3072,
            decoder_ffn_dim=3072,
            max_position_embeddings=1024,
        ),
    ),
    "large": dict(  # [F-cfg] microsoft/Florence-2-large
        vision=dict(
            embed_dim=[256, 512, 1024, 2048], num_heads=[8, 16, 32, 64], num_groups=[8, 16, 32, 64], projection_dim=1024
        ),
        text=dict(
            d_model=1024,
            encoder_layers=12,
            decoder_layers=12,
            encoder_attention_heads=16,
            decoder_attention_heads=16,
            encoder_ffn_dim=4096,
            decoder_ffn_dim=4096,
            max_position_embeddings=4096,
        ),  # large's config.json says 4096 (base: 1024)
    ),
}
BART_VOCAB = 50265  # [F-proc] ids 0..50264, <mask> last
FLORENCE_TOKENS = (  # [F-proc] added after the BART vocabulary, in this order: ids 50265..51288
    ["<od>", "</od>", "<ocr>", "</ocr>"]
    + [f"<loc_{i}>" for i in range(1000)]
    + [
        "<cap>",
        "</cap>",
        "<ncap>",
        "</ncap>",
        "<dcap>",
        "</dcap>",
        "<grounding>",
        "</grounding>",
        "<seg>",
        "</seg>",
        "<sep>",
        "<region_cap>",
        "</region_cap>",
        "<region_to_desciption>",
        "</region_to_desciption>",
        "<proposal>",
        "</proposal>",
        "<poly>",
        "</poly>",
        "<and>",
    ]
)
IMAGE_TOKEN_ID = 51289  # [F-conv]
FLORENCE_VOCAB = 51328  # [F-conv] 51290 padded to 64; the microsoft remote-code config.json says 51289
FLORENCE_IMAGE_SIZE, FLORENCE_IMAGE_SEQ = 768, 577  # [F-proc]
_CORPUS = (  # words the BPE learns whole; anything else is spelled from bytes
    "Locate the phrases in the caption: Locate the objects with category name in the image. What does the image "
    "describe? Locate a dog in the image. puppy person cat car truck bus bicycle people photo picture of an animal"
)

# --- SAM 2.1 ------------------------------------------------------------------------------------------------------
SAM2_SIZES = {  # [S-conv] keys of Sam2HieraDetConfig; unset ones keep the defaults (= tiny)
    "tiny": dict(
        hidden_size=96,
        embed_dim_per_stage=[96, 192, 384, 768],
        num_attention_heads_per_stage=[1, 2, 4, 8],
        blocks_per_stage=[1, 2, 7, 2],
        global_attention_blocks=[5, 7, 9],
        window_size_per_stage=[8, 4, 14, 7],
        window_positional_embedding_background_size=[7, 7],
    ),
    "base_plus": dict(
        hidden_size=112,
        embed_dim_per_stage=[112, 224, 448, 896],
        num_attention_heads_per_stage=[2, 4, 8, 16],
        blocks_per_stage=[2, 3, 16, 3],
        global_attention_blocks=[12, 16, 20],
        window_size_per_stage=[8, 4, 14, 7],
        window_positional_embedding_background_size=[14, 14],
    ),
    "large": dict(
        hidden_size=144,
        embed_dim_per_stage=[144, 288, 576, 1152],
        num_attention_heads_per_stage=[2, 4, 8, 16],
        blocks_per_stage=[2, 6, 36, 4],
        global_attention_blocks=[23, 33, 43],
        window_size_per_stage=[8, 4, 16, 8],
        window_positional_embedding_background_size=[7, 7],
    ),
}
SAM_IMAGE_SIZE = 1024  # Sam2HieraDetConfig / Sam2ImageProcessor defaults; FPN 256, feature maps 256, 128, 64

# Published totals. Florence-2: model cards. SAM 2.1: facebookresearch/sam2 README; they count the video model's
# memory attention / memory encoder / object-pointer heads too, which the image-only Sam2Model does not hold.
PUBLISHED_PARAMS = {
    ("florence2", "base"): 0.23e9,
    ("florence2", "large"): 0.77e9,
    ("sam2", "tiny"): 38.9e6,
    ("sam2", "base_plus"): 80.8e6,
    ("sam2", "large"): 224.4e6,
}


def build_florence2(directory: str | os.PathLike, size: str = "base", seed: int = 0) -> Path:
    """Builds a real-size Florence-2 (``"base"`` or ``"large"``) with random weights and saves model + processor.

    The tokenizer is a small locally trained byte-level BPE laid out like the real one (see :func:`florence_tokenizer`)
    with ``len(tokenizer) == vocab_size``, so any id the random model generates decodes.

    Returns:
        ``directory``, loadable with ``Florence2ForConditionalGeneration.from_pretrained`` and ``AutoProcessor``.
    """
    from transformers import (
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
    )

    spec, directory = FLORENCE2_SIZES[size], Path(directory)
    tokenizer = florence_tokenizer()
    config = Florence2Config(
        vision_config=dict(**_DAVIT_COMMON, **spec["vision"]),
        text_config=dict(**_BART_COMMON, **spec["text"], vocab_size=FLORENCE_VOCAB),
        image_token_id=IMAGE_TOKEN_ID,
    )
    torch.manual_seed(seed)
    Florence2ForConditionalGeneration(config).eval().save_pretrained(directory)
    side = {"height": FLORENCE_IMAGE_SIZE, "width": FLORENCE_IMAGE_SIZE}
    image_processor = CLIPImageProcessor(  # [F-proc]
        size=side,
        crop_size=side,
        do_center_crop=False,
        resample=3,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        image_seq_length=FLORENCE_IMAGE_SEQ,
    )
    Florence2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def florence_tokenizer(corpus: str | None = None):
    """A byte-level BPE trained locally, padded to Florence-2's id layout.

    Ids 0..3 are ``<s> <pad> </s> <unk>``, then the trained merges, then ``<unused_N>`` vocabulary entries up to
    ``<mask>`` = 50264 (as in BART); 50265..51288 are the Florence tokens, 51289 is ``<image>`` and 51290..51327
    are ``<extra_N>`` padding. Real prompts therefore tokenize into fewer, different ids than with the real
    vocabulary (a few tokens more or less per prompt), which does not matter for timing.
    """
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([corpus or _CORPUS] * 4, trainer)
    state = json.loads(tokenizer.to_str())
    vocab = state["model"]["vocab"]
    vocab.update({f"<unused_{i}>": i for i in range(len(vocab), BART_VOCAB - 1)})  # never produced by a merge
    tokenizer = Tokenizer.from_str(json.dumps(state))
    tokenizer.add_special_tokens(["<mask>", *FLORENCE_TOKENS, "<image>"])
    tokenizer.add_special_tokens([f"<extra_{i}>" for i in range(FLORENCE_VOCAB - tokenizer.get_vocab_size())])
    assert tokenizer.token_to_id("<loc_0>") == BART_VOCAB + 4 and tokenizer.token_to_id("<image>") == IMAGE_TOKEN_ID
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        extra_special_tokens={"image_token": "<image>"},
    )


def build_sam2(directory: str | os.PathLike, size: str = "tiny", seed: int = 0, video: bool = False) -> Path:
    """Builds a real-size SAM 2.1 (``"tiny"``, ``"base_plus"`` or ``"large"``) with random weights: the image model,
    or with ``video=True`` the video model (memory bank included) saved as the hub's sam2.1 repos are.

    Returns:
        ``directory``, loadable with ``Sam2Model.from_pretrained`` and ``Sam2Processor.from_pretrained`` (and with
        ``video=True`` with ``Sam2VideoModel`` / ``Sam2VideoProcessor`` too).
    """
    from transformers import (
        Sam2Config,
        Sam2ImageProcessor,
        Sam2Model,
        Sam2Processor,
        Sam2VideoConfig,
        Sam2VideoModel,
        Sam2VideoProcessor,
        Sam2VideoVideoProcessor,
    )

    backbone = dict(model_type="sam2_hiera_det_model", image_size=[SAM_IMAGE_SIZE] * 2, **SAM2_SIZES[size])
    side = SAM_IMAGE_SIZE
    vision_config = dict(  # prompt encoder and mask decoder: the (shared) defaults, [S-conv]
        backbone_config=backbone,
        backbone_channel_list=backbone["embed_dim_per_stage"][::-1],
        fpn_hidden_size=256,
        backbone_feature_sizes=[[side // 4] * 2, [side // 8] * 2, [side // 16] * 2],
    )
    torch.manual_seed(seed)
    images = Sam2ImageProcessor(size={"height": side, "width": side})
    if video:
        Sam2VideoModel(Sam2VideoConfig(vision_config=vision_config)).eval().save_pretrained(directory)
        frames = Sam2VideoVideoProcessor(size={"height": side, "width": side})
        Sam2VideoProcessor(image_processor=images, video_processor=frames).save_pretrained(directory)
    else:
        Sam2Model(Sam2Config(vision_config=vision_config)).eval().save_pretrained(directory)
        Sam2Processor(image_processor=images).save_pretrained(directory)
    return Path(directory)


def count_parameters(model: torch.nn.Module) -> int:
    """Parameters, each shared tensor (tied embeddings) counted once."""
    return sum(p.numel() for p in model.parameters())


def _check(kind: str, size: str, directory: Path) -> None:
    """Loads ``directory`` back and prints its parameter count against the published one."""
    from transformers import AutoProcessor, Florence2ForConditionalGeneration, Sam2Model

    model = (Florence2ForConditionalGeneration if kind == "florence2" else Sam2Model).from_pretrained(directory)
    processor = AutoProcessor.from_pretrained(directory)
    count, published = count_parameters(model), PUBLISHED_PARAMS[kind, size]
    if kind == "sam2":  # the published count is the video model's: same config, plus memory modules
        from transformers import Sam2VideoConfig, Sam2VideoModel

        with torch.device("meta"):
            video = Sam2VideoModel(Sam2VideoConfig(vision_config=model.config.vision_config.to_dict()))
        print(f"          image-only Sam2Model {count / 1e6:.1f} M; as Sam2VideoModel:")
        count = count_parameters(video)
    print(
        f"{kind:9} {size:9} {count / 1e6:8.1f} M  published {published / 1e6:6.1f} M  "
        f"({100 * (count / published - 1):+.1f} %)  {type(processor).__name__}  {directory}"
    )
    if kind == "florence2":
        assert len(processor.tokenizer) == model.config.text_config.vocab_size
        processor.batch_decode(torch.randint(0, len(processor.tokenizer), (2, 50)))  # any id decodes


def main(argv: list[str] | None = None) -> None:
    """Command line: builds the chosen sizes under ``DIR/florence2-<size>`` and ``DIR/sam2-<size>`` and checks them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--florence", nargs="*", default=["base"], choices=list(FLORENCE2_SIZES))
    parser.add_argument("--sam", nargs="*", default=["tiny"], choices=list(SAM2_SIZES))
    parser.add_argument("--sam-video", action="store_true", help="save SAM 2 as the video model (memory bank too)")
    args = parser.parse_args(argv)
    for size in args.florence:
        _check("florence2", size, build_florence2(args.directory / f"florence2-{size}", size))
    for size in args.sam:
        _check("sam2", size, build_sam2(args.directory / f"sam2-{size}", size, video=args.sam_video))


if __name__ == "__main__":
    main()
