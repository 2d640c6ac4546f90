"""WordPiece tokenization with the `tokenizers` library, built from a checkpoint's own vocab.txt.

Casing follows the checkpoint (tokenizer_config.json's do_lower_case, uncased if absent).
Single sentences become `[CLS] a [SEP]`; pairs `[CLS] a [SEP] b [SEP]` with token type ids 0/1.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer
from tokenizers.models import WordPiece
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer
from tokenizers.processors import TemplateProcessing

from base_bert import CheckpointError, resolve_model_dir


class BertTokenizer:
    def __init__(self, vocab_file, lowercase: bool = True, max_length: int = 128):
        vocab_file = Path(vocab_file)
        if not vocab_file.is_file():
            raise CheckpointError(f"{vocab_file}: vocabulary file not found")
        self.tok = Tokenizer(WordPiece.from_file(str(vocab_file), unk_token="[UNK]"))
        self.tok.normalizer = BertNormalizer(lowercase=lowercase, strip_accents=None,
                                             clean_text=True, handle_chinese_chars=True)
        self.tok.pre_tokenizer = BertPreTokenizer()
        ids = {t: self.tok.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]")}
        if None in ids.values():
            raise CheckpointError(f"{vocab_file}: vocabulary lacks one of [CLS] [SEP] [PAD]")
        self.cls_id, self.sep_id, self.pad_id = ids["[CLS]"], ids["[SEP]"], ids["[PAD]"]
        self.tok.post_processor = TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", self.cls_id), ("[SEP]", self.sep_id)])
        self.max_length = max_length
        self.tok.enable_truncation(max_length=max_length)
        self.vocab_size = self.tok.get_vocab_size()

    @classmethod
    def from_pretrained(cls, name_or_path: str = "minilm", max_length: int = 128) -> "BertTokenizer":
        folder = resolve_model_dir(name_or_path)
        lowercase = True
        cfg = folder / "tokenizer_config.json"
        if cfg.is_file():
            try:
                lowercase = bool(json.loads(cfg.read_text(encoding="utf-8")).get("do_lower_case", True))
            except (ValueError, OSError) as e:
                raise CheckpointError(f"{cfg}: not a readable JSON file ({e})") from None
        return cls(folder / "vocab.txt", lowercase=lowercase, max_length=max_length)

    def encode(self, texts: list[str], pairs: list[str] | None = None) -> list[tuple[list, list]]:
        """(token ids, token type ids, truncated?) of each text (or text pair), unpadded."""
        if pairs is None:
            encs = self.tok.encode_batch(texts)
        else:
            if len(pairs) != len(texts):
                raise ValueError("texts and pairs must have the same length")
            encs = self.tok.encode_batch(list(zip(texts, pairs)))
        return [(e.ids, e.type_ids, bool(e.overflowing)) for e in encs]

    @staticmethod
    def was_truncated(item) -> bool:
        return item[2]

    def pad(self, items: list[tuple[list, list]]) -> dict:
        """Pad encoded items to the longest one: input_ids, token_type_ids, attention_mask [B, T]."""
        T = max(len(item[0]) for item in items)
        input_ids = torch.full((len(items), T), self.pad_id, dtype=torch.long)
        types = torch.zeros((len(items), T), dtype=torch.long)
        mask = torch.zeros((len(items), T), dtype=torch.long)
        for i, (ids, tt, *_) in enumerate(items):
            input_ids[i, :len(ids)] = torch.tensor(ids)
            types[i, :len(tt)] = torch.tensor(tt)
            mask[i, :len(ids)] = 1
        return {"input_ids": input_ids, "token_type_ids": types, "attention_mask": mask}

    def __call__(self, texts: list[str], pairs: list[str] | None = None) -> dict:
        """Encode and pad a batch in one call."""
        return self.pad(self.encode(texts, pairs))
