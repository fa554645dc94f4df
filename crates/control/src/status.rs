//! Kubernetes `Status` error bodies, and the one place store and admission errors become them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tidal_api::FieldError;
use tidal_store::{Resource, StoreError};

/// An API error, rendered as `kind: Status`.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub code: StatusCode,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`, `Gone`, ...
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `details` (name, group, kind, causes).
    pub details: Value,
}

impl ApiError {
    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            code: StatusCode::BAD_REQUEST,
            reason: "BadRequest",
            message: message.into(),
            details: Value::Null,
        }
    }

    /// 404 for a path that names no kind.
    pub fn no_such_resource(path: &str) -> Self {
        ApiError {
            code: StatusCode::NOT_FOUND,
            reason: "NotFound",
            message: format!("the server could not find the requested resource ({path})"),
            details: Value::Null,
        }
    }

    /// 405 for a verb a path does not take.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        ApiError {
            code: StatusCode::METHOD_NOT_ALLOWED,
            reason: "MethodNotAllowed",
            message: message.into(),
            details: Value::Null,
        }
    }

    /// 422 Invalid, one cause per field error, worded as the API server words it.
    pub fn invalid(r: Resource, name: &str, errors: &[FieldError]) -> Self {
        let list = errors.iter().map(ToString::to_string).collect::<Vec<_>>();
        let summary = if list.len() == 1 {
            list[0].clone()
        } else {
            format!("[{}]", list.join(", "))
        };
        ApiError {
            code: StatusCode::UNPROCESSABLE_ENTITY,
            reason: "Invalid",
            message: format!("{}.{} {name:?} is invalid: {summary}", r.kind, r.group)
                .replace(". \"", " \""),
            details: json!({
                "name": name,
                "group": r.group,
                "kind": r.kind,
                "causes": errors.iter().map(|e| json!({"reason": e.reason(), "message": e.message(), "field": e.field})).collect::<Vec<_>>(),
            }),
        }
    }

    /// Maps a store error for an object of kind `r`.
    pub fn from_store(r: Resource, e: StoreError) -> Self {
        let details = |name: &str| json!({"name": name, "group": r.group, "kind": r.plural});
        match e {
            StoreError::NotFound { ref name, .. } => ApiError {
                code: StatusCode::NOT_FOUND,
                reason: "NotFound",
                details: details(name),
                message: format!("{} {name:?} not found", r.qualified()),
            },
            StoreError::AlreadyExists { ref name, .. } => ApiError {
                code: StatusCode::CONFLICT,
                reason: "AlreadyExists",
                details: details(name),
                message: format!("{} {name:?} already exists", r.qualified()),
            },
            StoreError::Conflict { ref name, .. } => ApiError {
                code: StatusCode::CONFLICT,
                reason: "Conflict",
                details: details(name),
                message: e.to_string(),
            },
            StoreError::Invalid(m) => ApiError::bad_request(m),
            StoreError::Gone { .. } => ApiError {
                code: StatusCode::GONE,
                reason: "Expired",
                message: e.to_string(),
                details: Value::Null,
            },
            StoreError::Db(_) => ApiError {
                code: StatusCode::INTERNAL_SERVER_ERROR,
                reason: "InternalError",
                message: e.to_string(),
                details: Value::Null,
            },
        }
    }

    /// The `Status` object.
    pub fn body(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if !self.details.is_null() {
            v["details"] = self.details.clone();
        }
        v
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        // Callers that know the kind use `from_store`; this is the fallback for `?` in closures.
        match e {
            StoreError::Invalid(m) => ApiError::bad_request(m),
            other => ApiError {
                code: StatusCode::INTERNAL_SERVER_ERROR,
                reason: "InternalError",
                message: other.to_string(),
                details: Value::Null,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code, axum::Json(self.body())).into_response()
    }
}
