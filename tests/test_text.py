"""Stage text: the text-to-image family's tokenizer and frozen CLIP text encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stepattr.core.io import load_json
from stepattr.datasets.prepare import prepare_dataset
from stepattr.text.encoder import (
    load_text_encoder,
    load_text_states,
    token_ids,
    train_text_encoder,
    train_tokenizer,
    write_text_states,
)

TEMPLATES = ["a handwritten digit {}", "the number {}"]
TEXT_CFG = {
    "pretrained": None, "vocab_size": 600, "context": 12, "width": 32, "layers": 1, "heads": 2,
    "patch_size": 4, "epochs": 1, "batch_size": 32, "lr": 0.001, "seed": 0,
}  # fmt: skip


@pytest.fixture(scope="module")
def captioned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("captioned")
    cfg = {"name": "d", "source": "mnist5k", "image_size": 8, "split_seed": 0,
           "test_fraction": 0.1, "max_train": 96, "caption_templates": TEMPLATES}  # fmt: skip
    prepare_dataset(cfg, out / "train.npz", out / "test.npz", out / "manifest.json")
    return out / "train.npz", out / "test.npz"


def test_tokenizer_learns_caption_words_and_keeps_every_byte() -> None:
    captions = [t.format(d) for t in TEMPLATES for d in range(10)]
    tokenizer = train_tokenizer(captions, 600)
    ids = tokenizer("a handwritten digit 7").input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert len(ids) == 2 + 4  # each caption word is one learned token
    for text in ["a handwritten digit 7", "unseen words, é and 3!"]:
        enc = tokenizer(text).input_ids
        assert tokenizer.unk_token_id not in enc[1:-1]
        assert tokenizer.decode(enc, skip_special_tokens=True) == text.replace(",", " ,").replace(
            "!", " !"
        )
    with pytest.raises(ValueError, match=r"text_encoder\.vocab_size = 100 must hold"):
        train_tokenizer(captions, 100)


def test_token_ids_refuse_long_and_empty_text() -> None:
    tokenizer = train_tokenizer(["a b c"], 600)
    ids = token_ids(tokenizer, ["a b", "c"], 6, "sampling.prompts")
    assert ids.shape == (2, 6) and (ids[1, 3:] == tokenizer.eos_token_id).all()
    with pytest.raises(
        ValueError, match=r"sampling\.prompts\[1\] = 'a b c a b' is 7 tokens, longer"
    ):
        token_ids(tokenizer, ["a", "a b c a b"], 6, "sampling.prompts")
    with pytest.raises(ValueError, match=r"sampling\.prompts\[0\] is empty"):
        token_ids(tokenizer, ["  "], 6, "sampling.prompts")


def test_trained_encoder_saves_pipeline_folders_and_states(
    tmp_path: Path, captioned, one_thread
) -> None:
    train, test = captioned
    metrics = train_text_encoder(train, test, TEXT_CFG, tmp_path / "text")
    assert 0 <= metrics["test_retrieval_accuracy"] <= 1
    assert load_json(tmp_path / "text" / "metrics.json")["unique_captions"] == 20
    tokenizer, encoder = load_text_encoder(tmp_path / "text")
    assert not any(p.requires_grad for p in encoder.parameters())
    from transformers import CLIPModel

    clip = CLIPModel.from_pretrained(tmp_path / "text" / "clip").eval()
    ids = token_ids(tokenizer, ["the number 4", "a handwritten digit 0"], 12, "t")
    with torch.no_grad():  # the saved text encoder is the CLIP's text tower
        torch.testing.assert_close(
            encoder(input_ids=ids).last_hidden_state,
            clip.text_model(input_ids=ids).last_hidden_state,
        )
    n = write_text_states(
        tokenizer, encoder, train, ["a handwritten digit 42"], tmp_path / "s.npz", 7
    )
    states = load_text_states(tmp_path / "s.npz")
    assert n == len(states) == 22 and states["the number 4"].shape == (12, 32)
    assert "" in states  # the unconditional text
    one = token_ids(tokenizer, ["a handwritten digit 42"], 12, "t")
    with torch.no_grad():  # batching changes nothing
        expected = encoder(input_ids=one).last_hidden_state[0].numpy()
    np.testing.assert_allclose(states["a handwritten digit 42"], expected, rtol=1e-5, atol=1e-6)


def test_a_prompt_the_tokenizer_would_cut_is_named_and_nothing_written(
    tmp_path: Path, captioned, one_thread
) -> None:
    train, _ = captioned
    tokenizer = train_tokenizer([f"the number {d}" for d in range(10)], 600)
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=8, intermediate_size=16,
                            num_hidden_layers=1, num_attention_heads=2,
                            max_position_embeddings=6)  # fmt: skip
    encoder = CLIPTextModel(config)
    long_prompt = "the number 1 the number 2"
    with pytest.raises(ValueError, match=r"sampling\.prompts\[1\] = 'the number 1 the number"):
        write_text_states(tokenizer, encoder, train, ["the 1", long_prompt], tmp_path / "s.npz")
    assert not (tmp_path / "s.npz").exists()


def test_pretrained_folder_missing_a_component_is_named(tmp_path: Path) -> None:
    (tmp_path / "pipe" / "tokenizer").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"text_encoder\.pretrained = '.*pipe': no text_encoder/"):
        load_text_encoder(tmp_path / "pipe")
