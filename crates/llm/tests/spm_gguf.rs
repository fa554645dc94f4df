//! SentencePiece tokenizers from GGUF metadata (`tokenizer.ggml.model = llama`, as Llama 2,
//! Mistral and TinyLlama GGUF files carry) against sentencepiece itself: the fixture
//! (`scripts/make-spm-gguf-fixture.py`) trains small BPE models with byte fallback, with and
//! without the dummy space prefix, writes their vocabularies, scores and token types to GGUF
//! files, and records sentencepiece's ids and decoded text for a set of texts.

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

/// Loads `gguf` and requires sentencepiece's ids and decoded text for every case.
fn check(gguf: &str, expected: &str) -> (Tokenizer, Expected) {
    let expected: Expected =
        serde_json::from_str(&std::fs::read_to_string(fixture().join(expected)).unwrap()).unwrap();
    let tokenizer = Tokenizer::from_gguf(&fixture().join(gguf)).unwrap();
    assert_eq!(tokenizer.vocab_size(), expected.vocab_size);
    for case in &expected.cases {
        let ids = tokenizer.encode(&case.text, false).unwrap();
        assert_eq!(ids, case.ids, "{gguf}: {:?}", case.text);
        assert_eq!(
            tokenizer.decode(&case.ids, true).unwrap(),
            case.decoded,
            "{gguf}: {:?}",
            case.text
        );
    }
    (tokenizer, expected)
}

#[test]
fn sentencepiece_from_gguf_encodes_and_decodes_as_sentencepiece() {
    let (tokenizer, expected) = check("tokenizer.gguf", "expected.json");
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

/// Without SentencePiece's dummy prefix (`tokenizer.ggml.add_space_prefix = false`), no `▁`
/// is prepended and none is stripped.
#[test]
fn a_tokenizer_without_the_space_prefix_keeps_text_as_is() {
    check("tokenizer-no-prefix.gguf", "expected-no-prefix.json");
}
