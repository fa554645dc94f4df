//! A SentencePiece tokenizer from GGUF metadata (`tokenizer.ggml.model = llama`, as Llama 2,
//! Mistral and TinyLlama GGUF files carry) against sentencepiece itself: the fixture
//! (`scripts/make-spm-gguf-fixture.py`) trains a small BPE model with byte fallback, writes its
//! vocabulary, scores and token types to a GGUF file, and records sentencepiece's ids and
//! decoded text for a set of texts.

use std::path::PathBuf;

use serde::Deserialize;
use tidal_llm::Tokenizer;

#[derive(Deserialize)]
struct Expected {
    vocab_size: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    decoded: String,
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spm-gguf")
}

#[test]
fn sentencepiece_from_gguf_encodes_and_decodes_as_sentencepiece() {
    let expected: Expected =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("expected.json")).unwrap())
            .unwrap();
    let tokenizer = Tokenizer::from_gguf(&fixture().join("tokenizer.gguf")).unwrap();
    assert_eq!(tokenizer.vocab_size(), expected.vocab_size);
    for case in &expected.cases {
        let ids = tokenizer.encode(&case.text, false).unwrap();
        assert_eq!(ids, case.ids, "{:?}", case.text);
        assert_eq!(
            tokenizer.decode(&case.ids, true).unwrap(),
            case.decoded,
            "{:?}",
            case.text
        );
    }
    // Characters the vocabulary lacks went through byte fallback in the fixture.
    assert!(
        expected
            .cases
            .iter()
            .any(|c| c.ids.iter().any(|&id| (3..259).contains(&id)))
    );
    // `tokenizer.ggml.add_bos_token` puts `<s>` (id 1) before a prompt with special tokens.
    let with_bos = tokenizer.encode("The tide comes in.", true).unwrap();
    assert_eq!(with_bos[0], 1);
    assert_eq!(with_bos[1..], expected.cases[0].ids[..]);
}
