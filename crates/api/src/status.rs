//! API errors as Kubernetes `Status` objects (apimachinery's `pkg/api/errors`).
//!
//! Every failure the API returns is an [`ApiError`]; [`ApiError::to_status`] renders the
//! `Status` body clients decode (`reason`, `code`, `details.causes`), with upstream's
//! message shapes so that kubectl prints what users already know.

use serde_json::{json, Value};

/// The type of one field error, rendered as the cause `reason` (`FieldValueInvalid`, ...)
/// and as the message prefix (`Invalid value`, `Required value`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorType {
    Invalid,
    Required,
    Duplicate,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    NotFound,
    /// An unknown or duplicate field found by strict field validation.
    UnknownField,
    DuplicateField,
}

impl FieldErrorType {
    pub fn reason(self) -> &'static str {
        match self {
            FieldErrorType::Invalid => "FieldValueInvalid",
            FieldErrorType::Required => "FieldValueRequired",
            FieldErrorType::Duplicate => "FieldValueDuplicate",
            FieldErrorType::NotSupported => "FieldValueNotSupported",
            FieldErrorType::Forbidden => "FieldValueForbidden",
            FieldErrorType::TooLong => "FieldValueTooLong",
            FieldErrorType::TooMany => "FieldValueTooMany",
            FieldErrorType::NotFound => "FieldValueNotFound",
            FieldErrorType::UnknownField => "FieldValueInvalid",
            FieldErrorType::DuplicateField => "FieldValueDuplicate",
        }
    }
    fn label(self) -> &'static str {
        match self {
            FieldErrorType::Invalid => "Invalid value",
            FieldErrorType::Required => "Required value",
            FieldErrorType::Duplicate => "Duplicate value",
            FieldErrorType::NotSupported => "Unsupported value",
            FieldErrorType::Forbidden => "Forbidden",
            FieldErrorType::TooLong => "Too long",
            FieldErrorType::TooMany => "Too many",
            FieldErrorType::NotFound => "Not found",
            FieldErrorType::UnknownField => "unknown field",
            FieldErrorType::DuplicateField => "duplicate field",
        }
    }
}

/// One validation failure at a field path such as `spec.ports[0].nodePort`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub kind: FieldErrorType,
    pub field: String,
    /// The offending value, already rendered the way upstream prints it (Go `%#v`-like:
    /// strings quoted, numbers bare, `[]string{"a"}` for string lists). None omits it.
    pub value: Option<String>,
    pub detail: String,
}

impl FieldError {
    pub fn new(
        kind: FieldErrorType,
        field: impl Into<String>,
        value: Option<String>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError { kind, field: field.into(), value, detail: detail.into() }
    }
    pub fn invalid(field: impl Into<String>, value: impl Into<RenderedValue>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Invalid, field, Some(value.into().0), detail)
    }
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Required, field, None, detail)
    }
    pub fn duplicate(field: impl Into<String>, value: impl Into<RenderedValue>) -> Self {
        Self::new(FieldErrorType::Duplicate, field, Some(value.into().0), "")
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Forbidden, field, None, detail)
    }
    /// `Unsupported value: "FOO": supported values: "SCTP", "TCP", "UDP"`.
    pub fn not_supported(field: impl Into<String>, value: impl Into<RenderedValue>, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Self::new(
            FieldErrorType::NotSupported,
            field,
            Some(value.into().0),
            format!("supported values: {}", list.join(", ")),
        )
    }

    /// The cause message without the field, e.g. `Invalid value: 0: must be between 1 and 65535, inclusive`.
    pub fn message(&self) -> String {
        match self.kind {
            FieldErrorType::UnknownField | FieldErrorType::DuplicateField => {
                format!("{} {:?}", self.label_for_field(), self.field)
            }
            _ => {
                let mut s = self.kind.label().to_string();
                if let Some(v) = &self.value {
                    s.push_str(": ");
                    s.push_str(v);
                }
                if !self.detail.is_empty() {
                    s.push_str(": ");
                    s.push_str(&self.detail);
                }
                s
            }
        }
    }

    fn label_for_field(&self) -> &'static str {
        self.kind.label()
    }

    /// `field: message`, the form used inside the aggregated Invalid message.
    pub fn full_message(&self) -> String {
        match self.kind {
            FieldErrorType::UnknownField | FieldErrorType::DuplicateField => self.message(),
            _ => format!("{}: {}", self.field, self.message()),
        }
    }
}

/// A value rendered for an error message.
pub struct RenderedValue(pub String);

impl From<&str> for RenderedValue {
    fn from(s: &str) -> Self {
        RenderedValue(format!("{s:?}"))
    }
}
impl From<String> for RenderedValue {
    fn from(s: String) -> Self {
        RenderedValue(format!("{s:?}"))
    }
}
impl From<&String> for RenderedValue {
    fn from(s: &String) -> Self {
        RenderedValue(format!("{s:?}"))
    }
}
macro_rules! rendered_number {
    ($($t:ty),*) => {$(impl From<$t> for RenderedValue { fn from(n: $t) -> Self { RenderedValue(n.to_string()) } })*};
}
rendered_number!(i32, i64, u16, u32, u64, usize);
impl From<&[String]> for RenderedValue {
    fn from(list: &[String]) -> Self {
        let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
        RenderedValue(format!("[]string{{{}}}", items.join(", ")))
    }
}
impl RenderedValue {
    /// A value printed verbatim (no quoting).
    pub fn raw(s: impl Into<String>) -> Self {
        RenderedValue(s.into())
    }
}

/// Identifies the object an error is about (`details` of the Status).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    /// API group ("" for core).
    pub group: String,
    /// Resource plural (`services`) — used by NotFound/AlreadyExists/Conflict.
    pub resource: String,
    /// Kind (`Service`) — used by Invalid.
    pub kind: String,
    pub name: String,
}

impl Subject {
    /// `services` or `deployments.apps`, as upstream qualifies resources in messages.
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// Every error the API can answer with.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    NotFound(Subject),
    AlreadyExists(Subject),
    /// Stale resourceVersion on update/delete (optimistic lock).
    Conflict(Subject),
    /// A conflict with a custom message (e.g. server-side apply field conflicts).
    ConflictMessage(Subject, String),
    Invalid(Subject, Vec<FieldError>),
    BadRequest(String),
    /// 410: the requested resourceVersion is older than the retained history.
    Expired(String),
    Gone(String),
    Unauthorized,
    Forbidden(String),
    MethodNotAllowed(String),
    NotAcceptable(String),
    UnsupportedMediaType(String),
    RequestEntityTooLarge(String),
    TooManyRequests(String),
    Timeout(String),
    Internal(String),
    ServiceUnavailable(String),
}

impl ApiError {
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound(_) => 404,
            ApiError::AlreadyExists(_) | ApiError::Conflict(_) | ApiError::ConflictMessage(..) => 409,
            ApiError::Invalid(..) => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::Expired(_) | ApiError::Gone(_) => 410,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::NotAcceptable(_) => 406,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::RequestEntityTooLarge(_) => 413,
            ApiError::TooManyRequests(_) => 429,
            ApiError::Timeout(_) => 504,
            ApiError::Internal(_) => 500,
            ApiError::ServiceUnavailable(_) => 503,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "NotFound",
            ApiError::AlreadyExists(_) => "AlreadyExists",
            ApiError::Conflict(_) | ApiError::ConflictMessage(..) => "Conflict",
            ApiError::Invalid(..) => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Expired(_) => "Expired",
            ApiError::Gone(_) => "Gone",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::RequestEntityTooLarge(_) => "RequestEntityTooLarge",
            ApiError::TooManyRequests(_) => "TooManyRequests",
            ApiError::Timeout(_) => "Timeout",
            ApiError::Internal(_) => "InternalError",
            ApiError::ServiceUnavailable(_) => "ServiceUnavailable",
        }
    }

    pub fn message(&self) -> String {
        match self {
            ApiError::NotFound(s) => format!("{} {:?} not found", s.qualified_resource(), s.name),
            ApiError::AlreadyExists(s) => format!("{} {:?} already exists", s.qualified_resource(), s.name),
            ApiError::Conflict(s) => format!(
                "Operation cannot be fulfilled on {} {:?}: the object has been modified; please apply your changes to the latest version and try again",
                s.qualified_resource(),
                s.name
            ),
            ApiError::ConflictMessage(s, m) => {
                format!("Operation cannot be fulfilled on {} {:?}: {m}", s.qualified_resource(), s.name)
            }
            ApiError::Invalid(s, errs) => {
                let kind = if s.group.is_empty() { s.kind.clone() } else { format!("{}.{}", s.kind, s.group) };
                let body = match errs.as_slice() {
                    [one] => one.full_message(),
                    many => format!("[{}]", many.iter().map(|e| e.full_message()).collect::<Vec<_>>().join(", ")),
                };
                format!("{kind} {:?} is invalid: {body}", s.name)
            }
            ApiError::Unauthorized => "Unauthorized".to_string(),
            ApiError::Internal(m) => format!("Internal error occurred: {m}"),
            ApiError::BadRequest(m)
            | ApiError::Expired(m)
            | ApiError::Gone(m)
            | ApiError::Forbidden(m)
            | ApiError::MethodNotAllowed(m)
            | ApiError::NotAcceptable(m)
            | ApiError::UnsupportedMediaType(m)
            | ApiError::RequestEntityTooLarge(m)
            | ApiError::TooManyRequests(m)
            | ApiError::Timeout(m)
            | ApiError::ServiceUnavailable(m) => m.clone(),
        }
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            ApiError::NotFound(s)
            | ApiError::AlreadyExists(s)
            | ApiError::Conflict(s)
            | ApiError::ConflictMessage(s, _) => Some(subject_details(s, &s.resource)),
            ApiError::Invalid(s, errs) => {
                let mut d = subject_details(s, &s.kind);
                d["causes"] = errs
                    .iter()
                    .map(|e| json!({"reason": e.kind.reason(), "message": e.message(), "field": e.field}))
                    .collect();
                Some(d)
            }
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }

    /// Shorthand for a single-field Invalid error.
    pub fn invalid_field(subject: Subject, err: FieldError) -> ApiError {
        ApiError::Invalid(subject, vec![err])
    }
}

fn subject_details(s: &Subject, kind: &str) -> Value {
    let mut d = json!({ "name": s.name, "kind": kind });
    if !s.group.is_empty() {
        d["group"] = json!(s.group);
    }
    d
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_message_matches_upstream_shape() {
        let s = Subject { group: "".into(), resource: "services".into(), kind: "Service".into(), name: "x".into() };
        let e = ApiError::Invalid(
            s,
            vec![FieldError::invalid(
                "spec.ports[0].nodePort",
                8888,
                "provided port is not in the valid range. The range of valid ports is 30000-32767",
            )],
        );
        assert_eq!(
            e.message(),
            "Service \"x\" is invalid: spec.ports[0].nodePort: Invalid value: 8888: provided port is not in the valid range. The range of valid ports is 30000-32767"
        );
        let st = e.to_status();
        assert_eq!(st["code"], 422);
        assert_eq!(st["details"]["causes"][0]["field"], "spec.ports[0].nodePort");
        assert_eq!(st["details"]["causes"][0]["reason"], "FieldValueInvalid");
    }

    #[test]
    fn not_found_uses_resource_plural() {
        let s = Subject {
            group: "apps".into(),
            resource: "deployments".into(),
            kind: "Deployment".into(),
            name: "d".into(),
        };
        assert_eq!(ApiError::NotFound(s).message(), "deployments.apps \"d\" not found");
    }
}
