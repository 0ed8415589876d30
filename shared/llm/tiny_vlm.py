"""Tiny random vision-language models (Qwen2-VL and LLaVA families) with local processors, for tests.

Each model is built from a config (no hub access): a 2-layer text decoder, a 1-layer vision tower, and the
family's own processor (``Qwen2VLProcessor`` with a ``Qwen2VLImageProcessor``; ``LlavaProcessor`` with a
``CLIPImageProcessor``) around the WordPiece tokenizer of :mod:`polyrank.shared.llm.tiny` plus the family's image
tokens, and a ChatML chat template that renders ``{"type": "image"}`` content items as each family's real
template does (Qwen: ``<|vision_start|><|image_pad|><|vision_end|>``; LLaVA: ``<image>``). Images are resized
to 56x56 (Qwen2-VL: 4 merged patch tokens) or 28x28 (LLaVA: 4 patch tokens), so a page costs a few tokens.
Weights are drawn inside :func:`torch.random.fork_rng`: building one never changes the global RNG.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from polyrank.shared.llm.tiny import tiny_tokenizer
from polyrank.shared.llm.vision import VisionLM

FAMILIES = ("qwen2_vl", "llava")
QWEN_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
LLAVA_TOKENS = ["<image>"]
#: ChatML with content lists; images become the family's placeholder (``IMAGE`` is substituted per family)
_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
             "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
             "{% for item in message['content'] %}{% if item['type'] == 'image' %}IMAGE{% else %}{{ item['text'] }}"
             "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
             "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
#: words kept whole by the tiny tokenizer (answer labels must be single tokens)
VOCAB = ["Yes", "No", "Image", "Question", "image", "relevant", "question", "Answer", "page", "system", "user",
         "assistant"]


def _text_config(tokenizer, hidden_size: int, num_layers: int) -> dict:
    return dict(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=False)


def _qwen2_vl(words: Iterable[str], hidden_size: int, num_layers: int):
    from transformers import (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorFast,
                              Qwen2VLProcessor, Qwen2VLVideoProcessor)

    from transformers import Qwen2TokenizerFast

    base = tiny_tokenizer([*VOCAB, *words])
    base.add_special_tokens({"additional_special_tokens": QWEN_TOKENS}, replace_additional_special_tokens=False)
    # the Qwen2-VL processor checks the tokenizer class: same backend, Qwen2 class
    tokenizer = Qwen2TokenizerFast(tokenizer_object=base.backend_tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                   eos_token="<|im_end|>", bos_token="<|im_start|>",
                                   additional_special_tokens=base.additional_special_tokens)
    tokenizer.padding_side = "left"
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_TOKENS}
    image_processor = Qwen2VLImageProcessorFast(min_pixels=56 * 56, max_pixels=56 * 56, patch_size=14, merge_size=2,
                                            temporal_patch_size=2)
    template = _TEMPLATE.replace("IMAGE", "<|vision_start|><|image_pad|><|vision_end|>")
    processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=template,
                                 video_processor=Qwen2VLVideoProcessor())
    text = _text_config(tokenizer, hidden_size, num_layers) | {"rope_scaling": {"type": "mrope",
                                                                                 "mrope_section": [1, 1, 2]}}
    config = Qwen2VLConfig(text_config=text,
                           vision_config=dict(depth=1, embed_dim=32, hidden_size=hidden_size, num_heads=2,
                                              mlp_ratio=2, patch_size=14, spatial_merge_size=2,
                                              temporal_patch_size=2, in_chans=3),
                           image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                           vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                           pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                           bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=False)
    return Qwen2VLForConditionalGeneration, config, processor


def _llava(words: Iterable[str], hidden_size: int, num_layers: int):
    from transformers import CLIPImageProcessorFast, CLIPVisionConfig, LlamaConfig, LlavaConfig, \
        LlavaForConditionalGeneration, LlavaProcessor

    tokenizer = tiny_tokenizer([*VOCAB, *words])
    tokenizer.add_special_tokens({"additional_special_tokens": LLAVA_TOKENS}, replace_additional_special_tokens=False)
    image_processor = CLIPImageProcessorFast(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               image_token="<image>", chat_template=_TEMPLATE.replace("IMAGE", "<image>"))
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=28, patch_size=14, projection_dim=32)
    config = LlavaConfig(vision_config=vision.to_dict(),
                         text_config=LlamaConfig(**_text_config(tokenizer, hidden_size, num_layers)).to_dict(),
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"), projector_hidden_act="gelu",
                         vision_feature_select_strategy="default", vision_feature_layer=-1,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    config.text_config.model_type = "llama"
    return LlavaForConditionalGeneration, config, processor


def tiny_vlm(family: str = "qwen2_vl", words: Iterable[str] = (), seed: int = 0, hidden_size: int = 32,
             num_layers: int = 2, device: str | None = None) -> VisionLM:
    """A random ``family`` (``qwen2_vl``/``llava``) vision-language model and its processor; deterministic in
    ``seed``."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    model_class, config, processor = (_qwen2_vl if family == "qwen2_vl" else _llava)(words, hidden_size, num_layers)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
        # random init gives near-uniform next-token distributions; a wider output layer makes read-outs differ
        torch.nn.init.normal_(model.lm_head.weight, std=1.0)
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    return VisionLM(model.to(device or "cpu").eval(), processor, f"tiny-random-{family}")
