//! Label selectors: which objects a `kubectl get -l ...`, a `?labelSelector=` query, a
//! Service or a Deployment selects.
//!
//! A [`Selector`] is a list of [`Requirement`]s that must all hold (an empty list selects
//! everything). It comes from one of three places:
//!
//! - text, [`Selector::parse`]: the syntax `kubectl -l` and the API's `labelSelector` query
//!   parameter accept (`app=web,tier!=db`, `env in (prod,staging)`, `!canary`, `version>2`),
//!   with upstream's error messages, which the API returns in a 400 BadRequest;
//! - a plain map, [`Selector::from_set`]: a Service's `spec.selector`;
//! - the API object form, [`LabelSelector`] (`matchLabels` + `matchExpressions`), as
//!   Deployments and ReplicaSets carry it.
//!
//! Matching works over anything that implements [`Labels`]: a `BTreeMap`, a `HashMap`, or
//! the JSON `metadata.labels` map of a stored object.

mod api_selector;
mod field_error;
mod parser;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;

use serde_json::Value;

use crate::names;

pub use api_selector::{selector_from_api_value, LabelSelector, LabelSelectorRequirement};

/// Why a selector is invalid. The message is upstream's text, ready for a Status message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SelectorError {
    message: String,
}

impl SelectorError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        SelectorError { message: message.into() }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A set of labels that a selector can be matched against.
pub trait Labels {
    /// The value of label `key`, if the label is present.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: BuildHasher> Labels for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// The JSON form of `metadata.labels`. Label values are always strings; anything else is
/// treated as an absent label.
impl Labels for serde_json::Map<String, Value> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

/// How a requirement relates a label to its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value`
    Equals,
    /// `key==value` (same meaning as `=`)
    DoubleEquals,
    /// `key!=value`: the label is absent or has another value.
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)`: the label is absent or has none of the values.
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>3`: the label is present and, read as an integer, greater than the value.
    GreaterThan,
    /// `key<3`
    LessThan,
}

/// One condition on one label key. Build it with [`Requirement::new`], which validates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Validates and builds a requirement, like upstream's `labels.NewRequirement`: the key
    /// must be a qualified name, every value a label value, and the number of values must
    /// fit the operator (one for `=`, `!=`, `>`, `<`; at least one for `in`/`notin`; none
    /// for exists/does-not-exist). `>`/`<` values must be integers.
    pub fn new(key: impl Into<String>, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        let key = key.into();
        let mut errors = Vec::new();
        let key_errors = names::is_qualified_name(&key);
        if !key_errors.is_empty() {
            errors.push(field_error::invalid_string("key", &key, &key_errors.join("; ")));
        }
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => errors.push(field_error::invalid_strings(
                "values",
                &values,
                "for 'in', 'notin' operators, values set can't be empty",
            )),
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => errors.push(
                field_error::invalid_strings("values", &values, "exact-match compatibility requires one single value"),
            ),
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                errors.push(field_error::invalid_strings(
                    "values",
                    &values,
                    "values set must be empty for exists and does not exist",
                ))
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errors.push(field_error::invalid_strings(
                        "values",
                        &values,
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, value) in values.iter().enumerate() {
                    if value.parse::<i64>().is_err() {
                        errors.push(field_error::invalid_string(
                            &format!("values[{i}]"),
                            value,
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, value) in values.iter().enumerate() {
            let value_errors = names::is_valid_label_value(value);
            if !value_errors.is_empty() {
                errors.push(field_error::invalid_string(
                    &format!("values[{i}][{key}]"),
                    value,
                    &value_errors.join("; "),
                ));
            }
        }
        if errors.is_empty() {
            Ok(Requirement { key, operator, values })
        } else {
            Err(SelectorError::new(field_error::aggregate(errors)))
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn has_value(&self, value: &str) -> bool {
        self.values.iter().any(|v| v == value)
    }

    /// Whether `labels` satisfy this requirement.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let value = labels.label(&self.key);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => value.is_some_and(|v| self.has_value(v)),
            Operator::NotIn | Operator::NotEquals => value.is_none_or(|v| !self.has_value(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(actual), [bound]) = (value, self.values.as_slice()) else {
                    return false;
                };
                let (Ok(actual), Ok(bound)) = (actual.parse::<i64>(), bound.parse::<i64>()) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }
}

/// Upstream's canonical text: `!key`, `key`, `key=v`, `key!=v`, `key in (a,b)` (values sorted).
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::Exists => return f.write_str(&self.key),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        let values = values.join(",");
        if matches!(self.operator, Operator::In | Operator::NotIn) {
            write!(f, "{}{op}({values})", self.key)
        } else {
            write!(f, "{}{op}{values}", self.key)
        }
    }
}

/// A conjunction of requirements. The default (and [`Selector::everything`]) has none and
/// matches every object; [`Selector::nothing`] matches none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
    matches_nothing: bool,
}

impl Selector {
    /// Matches everything: what an empty `-l ""` or an absent `labelSelector` means.
    pub fn everything() -> Self {
        Selector::default()
    }

    /// Matches nothing: what an absent (null) selector of a Deployment or ReplicaSet means.
    pub fn nothing() -> Self {
        Selector { requirements: Vec::new(), matches_nothing: true }
    }

    /// Parses the text syntax of `kubectl -l` and the `labelSelector` query parameter.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use skiff_core::labels::Selector;
    ///
    /// let selector = Selector::parse("app=web, env in (prod,staging), !canary").unwrap();
    /// let labels = BTreeMap::from([("app".to_string(), "web".to_string()), ("env".to_string(), "prod".to_string())]);
    /// assert!(selector.matches(&labels));
    /// assert_eq!(selector.to_string(), "app=web,!canary,env in (prod,staging)");
    /// ```
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        parser::parse(text).map(Selector::from_requirements)
    }

    /// `key=value` for every entry, without validation: how a Service's `spec.selector`
    /// selects Pods. An empty map selects everything. Takes any pairs of strings, e.g.
    /// `&BTreeMap<String, String>` or a JSON map's `(k, v.as_str().unwrap_or(""))`.
    pub fn from_set<K: AsRef<str>, V: AsRef<str>>(set: impl IntoIterator<Item = (K, V)>) -> Self {
        let requirements = set
            .into_iter()
            .map(|(k, v)| Requirement {
                key: k.as_ref().to_string(),
                operator: Operator::Equals,
                values: vec![v.as_ref().to_string()],
            })
            .collect();
        Selector::from_requirements(requirements)
    }

    /// A selector from already validated requirements, kept sorted by key as upstream does.
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Selector { requirements, matches_nothing: false }
    }

    /// True when the selector does not restrict anything (it matches every object).
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty() && !self.matches_nothing
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        !self.matches_nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Matches an object's `metadata.labels` (absent labels count as an empty set).
    pub fn matches_object(&self, object: &Value) -> bool {
        match object.pointer("/metadata/labels").and_then(Value::as_object) {
            Some(labels) => self.matches(labels),
            None => self.matches(&serde_json::Map::new()),
        }
    }

    /// If the selector pins `key` to exactly one value (`key=v`, `key==v` or `key in (v)`),
    /// that value: lets a caller narrow a scan before matching.
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let requirement = self.requirements.iter().find(|r| r.key == key)?;
        match (requirement.operator, requirement.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [value]) => Some(value),
            _ => None,
        }
    }
}

impl std::str::FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

/// Upstream's canonical text: requirements sorted by key, joined by `,` (empty for
/// everything and for nothing).
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

/// `k1=v1,k2=v2` sorted by key, or `<none>` when empty: how tables print a label map
/// (upstream's `labels.FormatLabels`).
pub fn format_labels<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut pairs: Vec<(&str, &str)> = labels.into_iter().collect();
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs.sort_unstable();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn matching_table() {
        let set = labels(&[("app", "web"), ("env", "prod"), ("replicas", "3"), ("empty", "")]);
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("env in (prod,staging)", true),
            ("env in (staging)", false),
            ("missing in (a)", false),
            ("env notin (staging)", true),
            ("env notin (prod)", false),
            ("missing notin (a)", true),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("replicas>2", true),
            ("replicas>3", false),
            ("replicas<4", true),
            ("app>1", false),
            ("missing<5", false),
            ("empty=", true),
            ("empty in ()", true),
            ("app=web,env=prod", true),
            ("app=web,env=dev", false),
            ("app=web,!canary,env in (prod)", true),
        ];
        for (text, want) in cases {
            let selector = Selector::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(selector.matches(&set), *want, "{text}");
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        let selector = Selector::parse("  ").unwrap();
        assert!(selector.is_everything());
        assert!(selector.matches(&labels(&[])));
        assert!(Selector::everything().matches_object(&serde_json::json!({})));
        assert!(!Selector::nothing().matches(&labels(&[])));
        assert!(!Selector::nothing().is_everything());
    }

    #[test]
    fn from_set_selects_by_equality() {
        let selector_map = labels(&[("app", "web"), ("tier", "front")]);
        let selector = Selector::from_set(&selector_map);
        assert_eq!(selector.to_string(), "app=web,tier=front");
        assert!(selector.matches(&labels(&[("app", "web"), ("tier", "front"), ("x", "y")])));
        assert!(!selector.matches(&labels(&[("app", "web")])));
        assert!(Selector::from_set(&BTreeMap::<String, String>::new()).is_everything());
        let json_selector = serde_json::json!({"app": "web"});
        let from_json =
            Selector::from_set(json_selector.as_object().unwrap().iter().map(|(k, v)| (k, v.as_str().unwrap_or(""))));
        assert_eq!(from_json.to_string(), "app=web");
    }

    #[test]
    fn matches_json_labels() {
        let pod = serde_json::json!({"metadata": {"labels": {"app": "web", "weird": 5}}});
        assert!(Selector::parse("app=web").unwrap().matches_object(&pod));
        assert!(Selector::parse("!weird").unwrap().matches_object(&pod));
        assert!(!Selector::parse("app=web").unwrap().matches_object(&serde_json::json!({"metadata": {}})));
        let mut hash = HashMap::new();
        hash.insert("app".to_string(), "web".to_string());
        assert!(Selector::parse("app in (web)").unwrap().matches(&hash));
    }

    #[test]
    fn requirement_new_validates() {
        assert!(Requirement::new("app", Operator::In, vec!["a".into()]).is_ok());
        let cases: &[(&str, Operator, &[&str], &str)] = &[
            (
                "app",
                Operator::In,
                &[],
                "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty",
            ),
            (
                "app",
                Operator::Equals,
                &["a", "b"],
                "values: Invalid value: []string{\"a\", \"b\"}: exact-match compatibility requires one single value",
            ),
            (
                "app",
                Operator::Exists,
                &["a"],
                "values: Invalid value: []string{\"a\"}: values set must be empty for exists and does not exist",
            ),
            (
                "app",
                Operator::GreaterThan,
                &["x"],
                "values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer",
            ),
        ];
        for (key, op, values, want) in cases {
            let values = values.iter().map(|v| v.to_string()).collect();
            assert_eq!(Requirement::new(*key, *op, values).unwrap_err().message(), *want);
        }
        let err = Requirement::new("bad key", Operator::Exists, vec![]).unwrap_err();
        assert!(err.message().starts_with("key: Invalid value: \"bad key\": name part must consist of"), "{err}");
        let err = Requirement::new("app", Operator::In, vec!["-a".into(), "b c".into()]).unwrap_err();
        assert!(err.message().starts_with("[values[0][app]: Invalid value: \"-a\": a valid label must be"), "{err}");
        assert!(err.message().contains(", values[1][app]: Invalid value: \"b c\": "), "{err}");
    }

    #[test]
    fn exact_match_introspection() {
        let selector = Selector::parse("a=1,b in (2),c in (3,4),d!=5").unwrap();
        assert_eq!(selector.requires_exact_match("a"), Some("1"));
        assert_eq!(selector.requires_exact_match("b"), Some("2"));
        assert_eq!(selector.requires_exact_match("c"), None);
        assert_eq!(selector.requires_exact_match("d"), None);
        assert_eq!(selector.requires_exact_match("e"), None);
    }

    #[test]
    fn formats_label_maps() {
        assert_eq!(format_labels([("b", "2"), ("a", "1")]), "a=1,b=2");
        assert_eq!(format_labels(std::iter::empty::<(&str, &str)>()), "<none>");
    }
}
