"""Tokenizer fingerprints: equal for the same tokenizer, and a mismatched pair is refused."""
import pytest

from tiny_models import tiny_qwen2vl_tokenizer
from spec_vlm_control.core.models.tokenizer import (
    TokenizerMismatch, check_same_tokenizer, tokenizer_fingerprint)


def test_fingerprint_is_stable_and_shared_by_copies():
    a, b = tiny_qwen2vl_tokenizer(), tiny_qwen2vl_tokenizer()
    digest = tokenizer_fingerprint(a)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert tokenizer_fingerprint(b) == digest
    assert check_same_tokenizer(a, b) == digest


def test_extra_token_changes_fingerprint_and_is_refused():
    a, b = tiny_qwen2vl_tokenizer(), tiny_qwen2vl_tokenizer()
    b.add_tokens(["<|robot|>"])
    assert tokenizer_fingerprint(a) != tokenizer_fingerprint(b)
    with pytest.raises(TokenizerMismatch, match="vocabulary sizes differ"):
        check_same_tokenizer(a, b)


def test_special_token_change_is_refused():
    a, b = tiny_qwen2vl_tokenizer(), tiny_qwen2vl_tokenizer()
    b.eos_token = "<|endoftext|>"
    with pytest.raises(TokenizerMismatch, match="special tokens differ"):
        check_same_tokenizer(a, b)


def test_same_size_different_ids_are_refused_and_padding_is_ignored():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    def word_tokenizer(words, pad):
        tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>",
                                       pad_token=pad)

    a = word_tokenizer(["<unk>", "<eos>", "go", "stop"], pad="<eos>")
    assert check_same_tokenizer(a, word_tokenizer(["<unk>", "<eos>", "go", "stop"], pad="<unk>"))
    with pytest.raises(TokenizerMismatch, match="first differing entry"):
        check_same_tokenizer(a, word_tokenizer(["<unk>", "<eos>", "stop", "go"], pad="<eos>"))
