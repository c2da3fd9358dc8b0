//! The object form of a label selector (`metav1.LabelSelector`), as Deployments, ReplicaSets
//! and NetworkPolicies carry it:
//!
//! ```yaml
//! selector:
//!   matchLabels: {app: web}
//!   matchExpressions:
//!   - {key: tier, operator: In, values: [front, edge]}
//!   - {key: canary, operator: DoesNotExist}
//! ```
//!
//! It converts to a [`Selector`] the way upstream's `LabelSelectorAsSelector` does: an absent
//! (null) selector matches nothing, an empty one matches everything.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::{Labels, Operator, Requirement, Selector, SelectorError};

/// `matchLabels` and `matchExpressions`, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry. The operator stays a string so that an unknown one is
/// reported with upstream's message instead of failing deserialization.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSelectorRequirement {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub operator: String,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// JSON `null` reads as the empty collection, as Go's decoder treats it.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl LabelSelector {
    /// Reads the JSON form, e.g. a Deployment's `spec.selector`.
    pub fn from_value(value: &Value) -> Result<Self, SelectorError> {
        LabelSelector::deserialize(value).map_err(|e| SelectorError::new(format!("invalid label selector: {e}")))
    }

    /// Validates and converts to a [`Selector`]. Errors are upstream's: an unknown operator
    /// (`"Foo" is not a valid label selector operator`) or an invalid requirement.
    pub fn to_selector(&self) -> Result<Selector, SelectorError> {
        if self.match_labels.is_empty() && self.match_expressions.is_empty() {
            return Ok(Selector::everything());
        }
        let mut requirements = Vec::with_capacity(self.match_labels.len() + self.match_expressions.len());
        for (key, value) in &self.match_labels {
            requirements.push(Requirement::new(key.clone(), Operator::Equals, vec![value.clone()])?);
        }
        for expression in &self.match_expressions {
            let operator = match expression.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::new(format!(
                        "{} is not a valid label selector operator",
                        super::field_error::go_quote(other)
                    )))
                }
            };
            requirements.push(Requirement::new(expression.key.clone(), operator, expression.values.clone())?);
        }
        Ok(Selector::from_requirements(requirements))
    }

    /// Whether `labels` match; an invalid selector matches nothing.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.to_selector().is_ok_and(|selector| selector.matches(labels))
    }
}

/// Converts an optional JSON selector field: absent or `null` matches nothing (as for a
/// Deployment without a selector), `{}` matches everything.
pub fn selector_from_api_value(value: Option<&Value>) -> Result<Selector, SelectorError> {
    match value {
        None | Some(Value::Null) => Ok(Selector::nothing()),
        Some(value) => LabelSelector::from_value(value)?.to_selector(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn converts_and_matches() {
        let value = json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "team", "operator": "Exists", "values": null},
            ]
        });
        let selector = selector_from_api_value(Some(&value)).unwrap();
        assert_eq!(selector.to_string(), "app=web,!canary,env notin (dev),team,tier in (edge,front)");
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[("app", "web"), ("tier", "edge"), ("team", "a")], true),
            (&[("app", "web"), ("tier", "edge"), ("team", "a"), ("env", "prod")], true),
            (&[("app", "web"), ("tier", "edge"), ("team", "a"), ("env", "dev")], false),
            (&[("app", "web"), ("tier", "edge"), ("team", "a"), ("canary", "")], false),
            (&[("app", "web"), ("tier", "back"), ("team", "a")], false),
            (&[("app", "web"), ("tier", "edge")], false),
            (&[("app", "db"), ("tier", "edge"), ("team", "a")], false),
        ];
        for (set, want) in cases {
            assert_eq!(selector.matches(&labels(set)), *want, "{set:?}");
        }
        let typed = LabelSelector::from_value(&value).unwrap();
        assert!(typed.matches(&labels(&[("app", "web"), ("tier", "front"), ("team", "x")])));
    }

    #[test]
    fn absent_matches_nothing_and_empty_everything() {
        let nothing = selector_from_api_value(None).unwrap();
        assert!(!nothing.matches(&labels(&[])));
        assert!(!selector_from_api_value(Some(&Value::Null)).unwrap().matches(&labels(&[])));
        let everything = selector_from_api_value(Some(&json!({}))).unwrap();
        assert!(everything.matches(&labels(&[("a", "b")])));
        let nulls = selector_from_api_value(Some(&json!({"matchLabels": null, "matchExpressions": null}))).unwrap();
        assert!(nulls.is_everything());
    }

    #[test]
    fn reports_upstream_errors() {
        let cases: &[(Value, &str)] = &[
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}),
                "\"Equals\" is not a valid label selector operator",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
                "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
                "values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist",
            ),
        ];
        for (value, want) in cases {
            assert_eq!(selector_from_api_value(Some(value)).unwrap_err().message(), *want);
        }
        let err = selector_from_api_value(Some(&json!({"matchLabels": {"bad key": "v"}}))).unwrap_err();
        assert!(err.message().starts_with("key: Invalid value: \"bad key\": name part"), "{err}");
        let err = selector_from_api_value(Some(&json!({"matchLabels": "app=web"}))).unwrap_err();
        assert!(err.message().starts_with("invalid label selector: "), "{err}");
        assert!(!LabelSelector::from_value(&json!({"matchExpressions": [{"key": "a", "operator": "Bogus"}]}))
            .unwrap()
            .matches(&labels(&[("a", "b")])));
    }
}
