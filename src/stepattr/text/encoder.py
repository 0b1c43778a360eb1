"""The frozen text encoder of the text-to-image family, in the form diffusers pipelines load.

A transformers ``CLIPTextModel`` with its ``CLIPTokenizer`` (folders ``text_encoder/`` and
``tokenizer/``, as in a ``StableDiffusionPipeline`` folder). Where ``text_encoder.pretrained``
names a folder holding those two subfolders (or a hub id), it is loaded. Where it is null the
workflow builds one without any download: a byte-level BPE tokenizer learned on the training
captions (CLIP's normalizer, pre-tokenizer and ``</w>`` word ends; every byte stays encodable)
and a small CLIP (text and vision transformers) trained contrastively on the captioned training
images; its text tower is the frozen encoder, the whole CLIP is kept for zero-shot detection.
It is a small CLIP trained on the dataset's own captions, not OpenAI's: for captions written
from labels it learns the label words, and its held-out retrieval accuracy is in metrics.json.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from stepattr.core.images import load_captions, load_split, to_model_space
from stepattr.core.io import atomic_dir, save_csv, save_json, save_npz
from stepattr.core.seeds import numpy_rng
from stepattr.core.settings import settings_from

log = logging.getLogger(__name__)

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
EOW = "</w>"  # CLIP's word-end suffix
EMPTY = ""  # the unconditional text of classifier-free guidance
TEXT_DATA = 12  # seed stream of the CLIP's batches and caption draws (after stepattr.core.seeds)


def learn_bpe_merges(words: Mapping[str, int], num_merges: int) -> list[tuple[str, str]]:
    """BPE merges (Sennrich et al.) learned on pre-tokenized words and their counts, each word
    ending in a ``</w>`` symbol: repeatedly merge the most frequent adjacent pair.

    Ties go to the smallest pair (as text), so the same captions give the same merges in every
    process. tokenizers' ``BpeTrainer`` breaks them by hash-map order instead: its tokenizer,
    and every model trained on its token ids, changed from run to run (tokenizers issue 1794).
    Pair counts are updated incrementally, only in the words that hold the merged pair.
    """
    seqs = [[*w[:-1], w[-1] + EOW] for w in words]
    counts = [int(c) for c in words.values()]
    pair_count: Counter[tuple[str, str]] = Counter()
    holders: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, seq in enumerate(seqs):
        for pair in zip(seq, seq[1:], strict=False):
            pair_count[pair] += counts[i]
            holders[pair].add(i)
    heap = [(-c, pair) for pair, c in pair_count.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while heap and len(merges) < num_merges:
        neg, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg:  # stale: the count changed since it was pushed
            continue
        merges.append(pair)
        touched = set()
        for i in sorted(holders.pop(pair)):
            seq, merged, j = seqs[i], [], 0
            while j < len(seq):
                if j + 1 < len(seq) and (seq[j], seq[j + 1]) == pair:
                    merged.append(pair[0] + pair[1])
                    j += 2
                else:
                    merged.append(seq[j])
                    j += 1
            for old in zip(seq, seq[1:], strict=False):
                pair_count[old] -= counts[i]
                touched.add(old)
            for new in zip(merged, merged[1:], strict=False):
                pair_count[new] += counts[i]
                holders[new].add(i)
                touched.add(new)
            seqs[i] = merged
        pair_count.pop(pair, None)
        for other in sorted(touched - {pair}):
            if pair_count[other] > 0:
                heapq.heappush(heap, (-pair_count[other], other))
            else:
                pair_count.pop(other)
    return merges


def train_tokenizer(texts: Sequence[str], vocab_size: int) -> Any:
    """A ``CLIPTokenizer`` whose BPE merges are learned on ``texts`` (up to ``vocab_size``
    tokens: the 2 special tokens, every byte with and without a word end, then the merges),
    the same tokenizer in every process (:func:`learn_bpe_merges`)."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    if vocab_size < 2 * len(alphabet) + 2:
        raise ValueError(
            f"text_encoder.vocab_size = {vocab_size} must hold the {2 * len(alphabet)} byte "
            "symbols (with and without a word end) and 2 special tokens"
        )
    template = CLIPTokenizer().backend_tokenizer  # CLIP's normalizer and pre-tokenizer
    words: Counter[str] = Counter()
    for text in texts:
        normalized = template.normalizer.normalize_str(str(text))
        words.update(w for w, _ in template.pre_tokenizer.pre_tokenize_str(normalized))
    vocab = {
        token: i for i, token in enumerate([BOS, EOS, *alphabet, *(a + EOW for a in alphabet)])
    }
    merges = learn_bpe_merges(words, vocab_size - len(vocab))
    for left, right in merges:  # two pairs can make one token: at most vocab_size tokens
        vocab.setdefault(left + right, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges)


def token_ids(
    tokenizer: Any, texts: Sequence[str], context: int, key: str, allow_empty: bool = False
) -> torch.Tensor:
    """Token ids (N, context) padded with the end token; a text longer than the context (with
    its start and end tokens) is an error naming ``key`` and the text, never a silent cut. An
    empty text is an error too, unless ``allow_empty`` (the unconditional prompt)."""
    for i, text in enumerate(texts):
        if not str(text).strip():
            if allow_empty:
                continue
            raise ValueError(f"{key}[{i}] is empty")
        n = len(tokenizer(str(text)).input_ids)
        if n > context:
            raise ValueError(
                f"{key}[{i}] = {text!r} is {n} tokens, longer than the text encoder's context "
                f"of {context} (text_encoder.context): shorten it"
            )
    enc = tokenizer(
        [str(t) for t in texts], padding="max_length", max_length=context, return_tensors="pt"
    )
    return enc.input_ids


@dataclass(frozen=True)
class TextEncoderSettings:
    """The ``text_encoder`` section (config/schema.yaml), typed once where a job starts."""

    vocab_size: int
    context: int
    width: int
    layers: int
    heads: int
    patch_size: int
    epochs: int
    batch_size: int
    lr: float
    seed: int
    pretrained: str | None = None
    threads: int = 1

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> TextEncoderSettings:
        return settings_from(cls, section, "text_encoder")


def build_clip(cfg: TextEncoderSettings, vocab_size: int, channels: int, image_size: int) -> Any:
    """A small transformers ``CLIPModel`` from the ``text_encoder`` settings, seeded."""
    from transformers import CLIPConfig, CLIPModel

    width, layers, heads = cfg.width, cfg.layers, cfg.heads
    if width % heads:
        raise ValueError(f"text_encoder.width = {width} must be divisible by text_encoder.heads")
    if image_size % cfg.patch_size:
        raise ValueError(
            f"text_encoder.patch_size = {cfg.patch_size} must divide the image size {image_size}"
        )
    shared = {"hidden_size": width, "intermediate_size": 4 * width, "num_hidden_layers": layers,
              "num_attention_heads": heads}  # fmt: skip
    config = CLIPConfig(
        text_config={
            **shared, "vocab_size": vocab_size, "max_position_embeddings": cfg.context,
            "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1,
        },
        vision_config={**shared, "image_size": image_size, "patch_size": cfg.patch_size,
                       "num_channels": channels},
        projection_dim=width,
    )  # fmt: skip
    torch.manual_seed(cfg.seed)
    return CLIPModel(config)


def train_text_encoder(
    train_path: str | os.PathLike,
    test_path: str | os.PathLike,
    cfg: TextEncoderSettings,
    out_dir: str | os.PathLike,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Learn the tokenizer, train the small CLIP, save ``tokenizer/``, ``text_encoder/`` and
    ``clip/`` under ``out_dir`` with ``loss.csv`` and ``metrics.json``. Returns the metrics."""
    from transformers import CLIPTextModel

    images, _, _ = load_split(train_path)
    captions = load_captions(train_path)
    context = cfg.context
    tokenizer = train_tokenizer([c for caps in captions for c in caps], cfg.vocab_size)
    unique = sorted({c for caps in captions for c in caps})
    ids = token_ids(tokenizer, unique, context, "captions of the training split")
    row_of = {c: i for i, c in enumerate(unique)}
    clip = build_clip(cfg, len(tokenizer), images.shape[1], images.shape[-1]).to(device).train()
    optimizer = torch.optim.AdamW(clip.parameters(), lr=cfg.lr, weight_decay=0.01)
    batch, epochs, seed = cfg.batch_size, cfg.epochs, cfg.seed
    progress = tqdm(total=epochs * math.ceil(len(images) / batch), desc="clip", mininterval=5)
    rows = []
    for epoch in range(epochs):
        rng = numpy_rng(TEXT_DATA, seed, epoch)
        order = rng.permutation(len(images))
        pick = [row_of[captions[i][rng.integers(len(captions[i]))]] for i in order]
        for start in range(0, len(images), batch):
            index = order[start : start + batch]
            out = clip(
                input_ids=ids[pick[start : start + batch]].to(device),
                pixel_values=to_model_space(images[index]).to(device),
                return_loss=True,
            )
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            rows.append({"epoch": epoch, "loss": out.loss.item()})
            progress.update()
    progress.close()
    clip.eval()
    metrics = {
        "test_retrieval_accuracy": retrieval_accuracy(clip, tokenizer, test_path, context),
        "vocab_size": len(tokenizer),
        "unique_captions": len(unique),
        "epochs": epochs,
        "config": asdict(cfg),
    }
    log.info("held-out caption retrieval accuracy %.4f", metrics["test_retrieval_accuracy"])
    text_encoder = CLIPTextModel(clip.config.text_config)
    # transformers 4 nests the tower as .text_model; 5 makes the model the tower itself
    getattr(text_encoder, "text_model", text_encoder).load_state_dict(clip.text_model.state_dict())
    out_dir = Path(out_dir)
    # clip/ holds its tokenizer too: a CLIP folder as the hub has them (the zero-shot detector)
    parts = {"tokenizer": [tokenizer], "text_encoder": [text_encoder], "clip": [clip, tokenizer]}
    for name, saved in parts.items():
        with atomic_dir(out_dir / name) as tmp:
            for part in saved:
                part.save_pretrained(tmp)
    save_csv(out_dir / "loss.csv", pd.DataFrame(rows))
    save_json(out_dir / "metrics.json", metrics)
    return metrics


def retrieval_accuracy(
    clip: Any, tokenizer: Any, split_path: str | os.PathLike, context: int
) -> float:
    """Fraction of the split's images whose best-matching caption (among every image's first
    caption) is one of their own: zero-shot classification when captions come from labels."""
    images, _, _ = load_split(split_path)
    captions = load_captions(split_path)
    candidates = sorted({caps[0] for caps in captions})
    with torch.no_grad():
        device = next(clip.parameters()).device
        text = projected(
            clip.get_text_features(
                input_ids=token_ids(tokenizer, candidates, context, "captions").to(device)
            )
        )
        image = projected(clip.get_image_features(pixel_values=to_model_space(images).to(device)))
        best = (image @ text.T).argmax(1).cpu().numpy()
    return float(np.mean([candidates[b] in caps for b, caps in zip(best, captions, strict=True)]))


def projected(features: Any) -> torch.Tensor:
    """CLIP's projected features: a tensor (transformers 4) or the output's pooler_output (5)."""
    return features if torch.is_tensor(features) else features.pooler_output


def text_encoder_source(files: Sequence[str], hub_id: str | None) -> str | Path:
    """Where a rule's text encoder comes from: the folder two levels above its
    ``text_encoder/config.json`` input (trained here or a local pretrained folder), else the
    configured hub id."""
    if files:
        return Path(files[0]).parent.parent
    if hub_id is None:
        raise ValueError("text_encoder.pretrained: neither a folder nor a hub id was given")
    return hub_id


def load_text_encoder(source: str | os.PathLike, device: str | torch.device = "cpu") -> tuple:
    """``(tokenizer, text_encoder)`` from a folder holding ``tokenizer/`` and ``text_encoder/``
    (this stage's output, a StableDiffusionPipeline folder) or a hub id; encoder frozen."""
    from transformers import CLIPTextModel, CLIPTokenizer

    root = Path(source)
    local = root.is_dir()
    if local:
        missing = [d for d in ("tokenizer", "text_encoder") if not (root / d).is_dir()]
        if missing:
            raise ValueError(f"text_encoder.pretrained = {str(source)!r}: no {missing[0]}/ folder")
    try:
        tokenizer = CLIPTokenizer.from_pretrained(
            str(source), subfolder="tokenizer", local_files_only=local
        )
        encoder = CLIPTextModel.from_pretrained(
            str(source), subfolder="text_encoder", use_safetensors=True, local_files_only=local
        )
    except (OSError, ValueError) as err:
        raise ValueError(f"text_encoder.pretrained = {str(source)!r}: cannot load ({err})") from err
    encoder.requires_grad_(False)
    return tokenizer, encoder.to(device).eval()


def write_text_states(
    tokenizer: Any,
    encoder: Any,
    train_path: str | os.PathLike,
    extra_texts: Sequence[str],
    out_path: str | os.PathLike,
    batch_size: int = 256,
) -> int:
    """Cache the encoder's last hidden states for the empty text (classifier-free guidance's
    unconditional branch, always row 0), every distinct training caption and each of
    ``extra_texts`` (prompts). File: ``texts`` (U,), ``states`` (U, context, width) float32.
    Returns U."""
    context = int(encoder.config.max_position_embeddings)
    texts = sorted({c for caps in load_captions(train_path) for c in caps} | set(extra_texts))
    empty = tokenizer([EMPTY], padding="max_length", max_length=context, return_tensors="pt")
    if extra_texts:  # a prompt the tokenizer would cut is named by its key, before the captions
        token_ids(tokenizer, list(extra_texts), context, "sampling.prompts")
    ids = torch.cat([empty.input_ids, token_ids(tokenizer, texts, context, "training captions")])
    texts = [EMPTY, *texts]
    states = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = ids[start : start + batch_size].to(encoder.device)
            states.append(encoder(input_ids=batch).last_hidden_state.float().cpu())
    save_npz(out_path, texts=np.array(texts, dtype=str), states=torch.cat(states).numpy())
    return len(texts)


def load_text_states(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Map text -> its cached states (context, width), from :func:`write_text_states`."""
    with np.load(path, allow_pickle=False) as data:
        if not {"texts", "states"} <= set(data.files):
            raise ValueError(f"{path}: not a text-state cache (needs texts and states)")
        return {str(t): s for t, s in zip(data["texts"], data["states"], strict=True)}


def states_for(path: str | os.PathLike, texts: Sequence[str]) -> torch.Tensor:
    """The cached states of each of ``texts`` (N, context, width); names a text without any."""
    by_text = load_text_states(path)
    missing = sorted({str(t) for t in texts} - set(by_text))
    if missing:
        raise ValueError(f"{path}: no text states for {missing[0]!r}")
    return torch.from_numpy(np.stack([by_text[str(t)] for t in texts]))
