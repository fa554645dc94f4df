//! Field-level errors in the shape Kubernetes reports them (`spec.x: Invalid value: 3: why`).

use std::fmt;

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// The field must be set.
    Required,
    /// The value is not allowed; holds the value as Kubernetes prints it.
    Invalid(String),
    /// The value is not one of the allowed ones.
    NotSupported {
        /// The value as printed.
        value: String,
        /// The allowed values.
        supported: Vec<String>,
    },
    /// The field may not be set here.
    Forbidden,
    /// The field is not part of the schema.
    Unknown,
}

/// One error, naming the field by its path from the object root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// `spec.predictor.autoScaling.metrics[0].resource.target.averageUtilization`.
    pub field: String,
    /// The kind of error.
    pub kind: FieldErrorKind,
    /// Why, in KServe's or Kubernetes' words.
    pub detail: String,
}

impl FieldError {
    /// A required field is missing.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Required,
            detail: detail.into(),
        }
    }

    /// A value is invalid; `value` is printed as Kubernetes prints it (strings quoted).
    pub fn invalid(
        field: impl Into<String>,
        value: impl fmt::Debug,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Invalid(format!("{value:?}")),
            detail: detail.into(),
        }
    }

    /// A value is not in the allowed set.
    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::NotSupported {
                value: format!("{value:?}"),
                supported: supported.iter().map(|s| format!("{s:?}")).collect(),
            },
            detail: String::new(),
        }
    }

    /// A field that may not be set.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Forbidden,
            detail: detail.into(),
        }
    }

    /// A field the schema does not know (a typo, usually).
    pub fn unknown(field: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Unknown,
            detail: String::new(),
        }
    }

    /// The Kubernetes `StatusCause.reason` for this error.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid(_) => "FieldValueInvalid",
            FieldErrorKind::NotSupported { .. } => "FieldValueNotSupported",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::Unknown => "FieldValueInvalid",
        }
    }

    /// The message without the field path, as in a `StatusCause`.
    pub fn message(&self) -> String {
        let s = self.to_string();
        s.strip_prefix(&format!("{}: ", self.field))
            .map(str::to_string)
            .unwrap_or(s)
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.field)?;
        match &self.kind {
            FieldErrorKind::Required => write!(f, "Required value")?,
            FieldErrorKind::Invalid(v) => write!(f, "Invalid value: {v}")?,
            FieldErrorKind::NotSupported { value, supported } => write!(
                f,
                "Unsupported value: {value}: supported values: {}",
                supported.join(", ")
            )?,
            FieldErrorKind::Forbidden => write!(f, "Forbidden")?,
            FieldErrorKind::Unknown => write!(f, "field not declared in schema")?,
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// Joins path segments: `path(&["spec", "predictor"])`, indexes as `metrics[0]`.
#[derive(Debug, Clone, Default)]
pub struct FieldPath(String);

impl FieldPath {
    /// The root path `spec`, `metadata`, ...
    pub fn root(name: &str) -> Self {
        FieldPath(name.to_string())
    }
    /// A child field.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            FieldPath(name.to_string())
        } else {
            FieldPath(format!("{}.{name}", self.0))
        }
    }
    /// A list element.
    pub fn index(&self, i: usize) -> Self {
        FieldPath(format!("{}[{i}]", self.0))
    }
    /// A map key (`metadata.annotations[serving.kserve.io/autoscalerClass]`).
    pub fn key(&self, k: &str) -> Self {
        FieldPath(format!("{}[{k}]", self.0))
    }
    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&FieldPath> for String {
    fn from(p: &FieldPath) -> String {
        p.0.clone()
    }
}

impl From<FieldPath> for String {
    fn from(p: FieldPath) -> String {
        p.0
    }
}
