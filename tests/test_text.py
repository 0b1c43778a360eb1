"""Stage text: the text-to-image family's tokenizer and frozen CLIP text encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stepattr.core.io import load_json
from stepattr.datasets.prepare import prepare_dataset
from stepattr.text.encoder import (
    EOW,
    TextEncoderSettings,
    learn_bpe_merges,
    load_text_encoder,
    load_text_states,
    token_ids,
    train_text_encoder,
    train_tokenizer,
    write_text_states,
)

TEMPLATES = ["a handwritten digit {}", "the number {}"]
TEXT_CFG = TextEncoderSettings.from_config({
    "pretrained": None, "vocab_size": 600, "context": 12, "width": 32, "layers": 1, "heads": 2,
    "patch_size": 4, "epochs": 1, "batch_size": 32, "lr": 0.001, "seed": 0,
})  # fmt: skip


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


def brute_force_merges(words: dict[str, int], num_merges: int) -> list[tuple[str, str]]:
    """BPE recounting every pair of every word at every merge; ties to the smallest pair."""
    seqs = {w: [*w[:-1], w[-1] + EOW] for w in words}
    merges = []
    for _ in range(num_merges):
        counts: dict[tuple[str, str], int] = {}
        for w, seq in seqs.items():
            for pair in zip(seq, seq[1:], strict=False):
                counts[pair] = counts.get(pair, 0) + words[w]
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        for w, seq in seqs.items():
            out, j = [], 0
            while j < len(seq):
                if seq[j : j + 2] == list(best):
                    out.append(best[0] + best[1])
                    j += 2
                else:
                    out.append(seq[j])
                    j += 1
            seqs[w] = out
    return merges


def test_bpe_merges_equal_a_brute_force_recount() -> None:
    """Random words over 3 letters (many ties, runs like "aaa") and the captions' words."""
    rng = np.random.default_rng(0)
    words = {"".join(rng.choice(list("abc"), rng.integers(1, 7))): int(rng.integers(1, 4))
             for _ in range(60)}  # fmt: skip
    assert learn_bpe_merges(words, 80) == brute_force_merges(words, 80)
    caption_words = {"a": 20, "handwritten": 10, "digit": 10, "the": 10, "number": 10}
    caption_words |= {str(d): 2 for d in range(10)}
    assert learn_bpe_merges(caption_words, 50) == brute_force_merges(caption_words, 50)
    assert learn_bpe_merges({"ab": 3, "ac": 1}, 5) == [("a", "b</w>"), ("a", "c</w>")]


def test_tokenizer_is_the_same_in_every_run() -> None:
    """tokenizers' BpeTrainer numbered word-end tokens, and broke ties, by hash-map order."""
    captions = [t.format(d) for t in TEMPLATES for d in range(10)] + ["ab ab ba ba cd dc"]
    first = train_tokenizer(captions, 600)
    for _ in range(5):
        again = train_tokenizer(list(reversed(captions)), 600)
        assert again.get_vocab() == first.get_vocab()
        assert again(captions).input_ids == first(captions).input_ids


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
