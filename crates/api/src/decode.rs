//! Text to objects: multi-document YAML (or JSON) in, typed objects out, with errors that say
//! where: a line and column for bad YAML, a field path for a bad or unknown field.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::field_error::FieldError;

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The text is not YAML.
    #[error("error converting YAML to JSON: yaml: line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// YAML without a position (rare: e.g. the input ended early).
    #[error("error converting YAML to JSON: {0}")]
    Yaml(String),
    /// The document has no `apiVersion` or `kind`.
    #[error("Object 'Kind' is missing in '{0}'")]
    MissingKind(String),
    /// A field has the wrong type, or is unknown.
    #[error("{kind} in version {api_version:?} cannot be handled: {}", join(.errors))]
    Fields {
        /// The document's kind.
        kind: String,
        /// The document's apiVersion.
        api_version: String,
        /// One error per field.
        errors: Vec<FieldError>,
    },
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One YAML document as untyped JSON, with its place in the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct RawDocument {
    /// 0-based position in the stream.
    pub index: usize,
    /// The document.
    pub value: Value,
}

impl RawDocument {
    /// `apiVersion`, or "" when absent.
    pub fn api_version(&self) -> &str {
        self.value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
    /// `kind`, or "" when absent.
    pub fn kind(&self) -> &str {
        self.value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
    /// `metadata.name`, or "" when absent.
    pub fn name(&self) -> &str {
        self.value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// A document that could not be parsed, and its 0-based place in the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct SyntaxError {
    /// 0-based position in the stream.
    pub index: usize,
    /// Why.
    pub error: DecodeError,
}

/// Splits a YAML (or JSON) stream into documents. Empty documents are skipped; a syntax error
/// ends the stream, since nothing after it can be trusted.
pub fn split_documents(text: &str) -> Vec<Result<RawDocument, SyntaxError>> {
    let mut out = Vec::new();
    for (index, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        match Value::deserialize(doc) {
            Ok(Value::Null) => {}
            Ok(value) => {
                // A `kind: List` (as `kubectl get -o yaml` prints) is its items.
                if value.get("kind").and_then(Value::as_str) == Some("List")
                    && let Some(items) = value.get("items").and_then(Value::as_array)
                {
                    out.extend(
                        items
                            .iter()
                            .cloned()
                            .map(|value| Ok(RawDocument { index, value })),
                    );
                } else {
                    out.push(Ok(RawDocument { index, value }));
                }
            }
            Err(e) => {
                out.push(Err(SyntaxError {
                    index,
                    error: yaml_error(&e),
                }));
                break;
            }
        }
    }
    out
}

fn yaml_error(e: &serde_norway::Error) -> DecodeError {
    let text = e.to_string();
    match e.location() {
        Some(loc) => {
            // serde_norway appends " at line L column C"; keep only the message.
            let message = text.split(" at line ").next().unwrap_or(&text).to_string();
            DecodeError::Syntax {
                line: loc.line(),
                column: loc.column(),
                message,
            }
        }
        None => DecodeError::Yaml(text),
    }
}

/// Converts a document into a typed object, strictly: a wrong type names its field path, and so
/// does a field the type does not know (as `kubectl apply` with strict field validation does).
pub fn from_document<T: DeserializeOwned + Serialize>(doc: &RawDocument) -> Result<T, DecodeError> {
    let fields = |errors| DecodeError::Fields {
        kind: doc.kind().to_string(),
        api_version: doc.api_version().to_string(),
        errors,
    };
    if doc.kind().is_empty() || doc.api_version().is_empty() {
        return Err(DecodeError::MissingKind(
            serde_json::to_string(&doc.value).unwrap_or_default(),
        ));
    }
    let typed: T = serde_path_to_error::deserialize(&doc.value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let field = if path == "." { String::new() } else { path };
        // serde says "missing field `spec`"; Kubernetes says "spec: Required value".
        let missing = inner
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'));
        fields(vec![match missing {
            Some(name) if field.is_empty() => FieldError::required(name, ""),
            Some(name) => FieldError::required(format!("{field}.{name}"), ""),
            None => FieldError::invalid(field, Unquoted(&inner), ""),
        }])
    })?;
    let roundtrip = serde_json::to_value(&typed)
        .map_err(|e| fields(vec![FieldError::invalid("", Unquoted(&e.to_string()), "")]))?;
    let mut unknown = Vec::new();
    unknown_fields(&doc.value, &roundtrip, "", &mut unknown);
    if unknown.is_empty() {
        Ok(typed)
    } else {
        Err(fields(
            unknown.into_iter().map(FieldError::unknown).collect(),
        ))
    }
}

/// Prints a string without quotes inside a `FieldError::invalid`.
struct Unquoted<'a>(&'a str);

impl std::fmt::Debug for Unquoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Fields present in `input` that did not survive typing: unknown to the schema. Status is the
/// server's business and is not checked.
fn unknown_fields(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(inp), Value::Object(typ)) => {
            for (k, v) in inp {
                if path.is_empty() && k == "status" {
                    continue;
                }
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match typ.get(k) {
                    Some(t) => unknown_fields(v, t, &child, out),
                    None if is_empty(v) => {}
                    None => out.push(child),
                }
            }
        }
        (Value::Array(inp), Value::Array(typ)) if inp.len() == typ.len() => {
            for (i, (v, t)) in inp.iter().zip(typ).enumerate() {
                unknown_fields(v, t, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference_service::InferenceService;

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let docs = split_documents("apiVersion: v1\nkind: [\n");
        let err = docs.into_iter().next().unwrap().unwrap_err().error;
        assert!(
            matches!(err, DecodeError::Syntax { line: 3, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("error converting YAML to JSON: yaml: line 3, column"),
            "{err}"
        );
    }

    #[test]
    fn several_documents_and_lists_are_split() {
        let docs = split_documents("a: 1\n---\n---\nkind: List\nitems: [{b: 2}, {c: 3}]\n");
        let values: Vec<_> = docs.into_iter().map(|d| d.unwrap().value).collect();
        assert_eq!(
            values,
            vec![
                serde_json::json!({"a": 1}),
                serde_json::json!({"b": 2}),
                serde_json::json!({"c": 3})
            ]
        );
    }

    #[test]
    fn unknown_and_mistyped_fields_name_their_path() {
        let text = "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: x}\nspec:\n  predictor:\n    minReplica: 1\n    model: {modelFormat: {name: sklearn}, storgeUri: x}\n";
        let doc = split_documents(text).remove(0).unwrap();
        let err = from_document::<InferenceService>(&doc)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("spec.predictor.minReplica: field not declared in schema"),
            "{err}"
        );
        assert!(
            err.contains("spec.predictor.model.storgeUri: field not declared in schema"),
            "{err}"
        );

        let text = "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: x}\nspec:\n  predictor:\n    minReplicas: one\n";
        let doc = split_documents(text).remove(0).unwrap();
        let err = from_document::<InferenceService>(&doc)
            .unwrap_err()
            .to_string();
        assert!(err.contains("spec.predictor.minReplicas: Invalid value: invalid type: string \"one\", expected i32"), "{err}");
    }
}
