"""A tiny random BLIP captioning model for interrogate tests (API and browser)."""

from __future__ import annotations

from pathlib import Path

WORDS = ["red", "cube", "on", "a", "table", "blue", "ball", "sky", "green", "tree", "dog", "cat"]


def save_tiny_blip(folder: Path) -> None:
    """A tiny random BLIP captioning model in Hugging Face format, with a vocabulary of plain words (ids 0-4 are
    BERT's special tokens), so every generated token decodes to a word."""
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    text = dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=37, encoder_hidden_size=32, max_position_embeddings=64, bos_token_id=2,
                sep_token_id=3, pad_token_id=0)
    vision = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, image_size=32,
                  patch_size=8, projection_dim=32)
    import torch

    torch.manual_seed(0)
    model = BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision, projection_dim=32))
    model.save_pretrained(folder)
    tokenizer = BertTokenizerFast(vocab={word: index for index, word in enumerate(vocab)})
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                  tokenizer=tokenizer).save_pretrained(folder)
