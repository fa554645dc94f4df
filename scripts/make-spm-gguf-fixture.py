#!/usr/bin/env python3
"""Writes crates/llm/tests/fixtures/spm-gguf: GGUF files holding only a SentencePiece tokenizer
(`tokenizer.ggml.model = llama`, as in Llama 2, Mistral and TinyLlama GGUF files) and what
sentencepiece itself encodes and decodes with the same model (`expected*.json`).

The models are small BPEs trained here with byte fallback and identity normalization, with a
dummy prefix as Llama's tokenizer has (`tokenizer.gguf`) and without one
(`tokenizer-no-prefix.gguf`, `tokenizer.ggml.add_space_prefix = false`). Needs the PyPI
packages sentencepiece and gguf:

    python -m pip install sentencepiece==0.2.3 gguf==0.19.0
    python scripts/make-spm-gguf-fixture.py
"""

import json
import tempfile
from pathlib import Path

import gguf
import sentencepiece as spm

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "crates/llm/tests/fixtures/spm-gguf"

CORPUS = """The tide comes in and the tide goes out, twice a day, as the moon pulls the sea.
Harbours see ten metres between low and high water; others barely notice a change.
Sailors read the tables: high water at 06:42, low water at 12:55, then 19:07 again.
Les marées montent et descendent; die Gezeiten steigen und fallen; 潮の満ち引き.
Numbers like 2024, 3.14159 and 1,000,000 appear in tide tables and in stories.
"""

TEXTS = [
    "The tide comes in.",
    "Hello world",
    " leading space and  double  spaces ",
    "high water at 06:42, low water at 12:55",
    "Les marées montent; 潮の満ち引き",
    "unseen: ∑ ☃ 🌊 ĳ",
    "a",
    "",
    "line one\nline two\ttab",
]


def main():
    TARGET.mkdir(parents=True, exist_ok=True)
    write("tokenizer.gguf", "expected.json", dummy_prefix=True)
    write("tokenizer-no-prefix.gguf", "expected-no-prefix.json", dummy_prefix=False)
    print(f"wrote {TARGET}")


def write(gguf_name, expected_name, dummy_prefix):
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text(CORPUS * 20)
        prefix = str(Path(tmp) / "spm")
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_prefix=prefix,
            model_type="bpe",
            vocab_size=600,
            byte_fallback=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=dummy_prefix,
            split_digits=True,
            character_coverage=1.0,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            minloglevel=2,
        )
        sp = spm.SentencePieceProcessor(model_file=prefix + ".model")

    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            types.append(gguf.TokenType.UNKNOWN)
        elif sp.is_control(i):
            types.append(gguf.TokenType.CONTROL)
        elif sp.is_byte(i):
            types.append(gguf.TokenType.BYTE)
        elif sp.is_unused(i):
            types.append(gguf.TokenType.UNUSED)
        else:
            types.append(gguf.TokenType.NORMAL)

    writer = gguf.GGUFWriter(str(TARGET / gguf_name), "llama")
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_space_prefix(dummy_prefix)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    cases = []
    for text in TEXTS:
        ids = sp.encode(text)
        cases.append({"text": text, "ids": ids, "decoded": sp.decode(ids)})
    (TARGET / expected_name).write_text(
        json.dumps({"vocab_size": sp.get_piece_size(), "cases": cases}, ensure_ascii=False, indent=1)
    )


if __name__ == "__main__":
    main()
