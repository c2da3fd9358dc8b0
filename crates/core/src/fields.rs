//! Field selectors: `?fieldSelector=metadata.name=web,status.phase!=Running`.
//!
//! Only equality is supported (`=`, `==`, `!=`), requirements are joined by `,`, and values
//! may escape `\`, `,` and `=` with a backslash. Parsing follows apimachinery's
//! `fields.ParseSelector` exactly, down to its error texts; there is no whitespace trimming
//! (`metadata.name = web` asks about a field named `metadata.name `).
//!
//! Which fields a kind supports, and what their values are, is the API's business: matching
//! takes a lookup function, and a field that has no value counts as the empty string (so
//! `spec.nodeName=` selects unscheduled Pods).

use std::fmt;

/// Why a field selector could not be parsed. The message is upstream's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SelectorError {
    message: String,
}

impl SelectorError {
    fn new(message: impl Into<String>) -> Self {
        SelectorError { message: message.into() }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `=` or `==`
    Equals,
    /// `!=`
    NotEquals,
}

/// One `field=value` or `field!=value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub field: String,
    pub operator: Operator,
    /// The unescaped value.
    pub value: String,
}

impl Requirement {
    /// Whether a field whose value is `actual` (None = absent = "") satisfies the term.
    pub fn matches(&self, actual: Option<&str>) -> bool {
        let equal = actual.unwrap_or("") == self.value;
        match self.operator {
            Operator::Equals => equal,
            Operator::NotEquals => !equal,
        }
    }
}

/// A conjunction of field requirements; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// The operators in the order a term is split: at the first position where any of them
/// starts, `!=` before `==` before `=` (so `a==b` is `a` `==` `b`, not `a` `=` `=b`).
const TERM_OPERATORS: [(&str, Operator); 3] =
    [("!=", Operator::NotEquals), ("==", Operator::Equals), ("=", Operator::Equals)];

impl Selector {
    /// Matches everything.
    pub fn everything() -> Self {
        Selector::default()
    }

    /// Parses the `fieldSelector` syntax.
    ///
    /// ```
    /// use skiff_core::fields::Selector;
    ///
    /// let selector = Selector::parse("status.phase!=Running,spec.nodeName=node-1").unwrap();
    /// let pod = |field: &str| match field {
    ///     "status.phase" => Some("Pending".to_string()),
    ///     "spec.nodeName" => Some("node-1".to_string()),
    ///     _ => None,
    /// };
    /// assert!(selector.matches(pod));
    /// ```
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let mut parts = split_terms(selector);
        parts.sort_unstable();
        let mut requirements = Vec::with_capacity(parts.len());
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((field, operator, raw_value)) = split_term(part) else {
                return Err(SelectorError::new(format!("invalid selector: '{selector}'; can't understand '{part}'")));
            };
            let value = unescape_value(raw_value)?;
            requirements.push(Requirement { field: field.to_string(), operator, value });
        }
        Ok(Selector { requirements })
    }

    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether every requirement holds, looking field values up with `lookup` (None = "").
    pub fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| r.matches(lookup(&r.field).as_deref()))
    }

    /// The field names the selector refers to, e.g. to reject the ones a kind does not support.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.requirements.iter().map(|r| r.field.as_str())
    }

    /// If the selector pins `field` to one value (`field=v`), that value: lets the API serve
    /// `metadata.name=x` with a single read instead of a scan.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements.iter().find(|r| r.field == field && r.operator == Operator::Equals).map(|r| r.value.as_str())
    }
}

impl std::str::FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

/// `field=value,field!=value`, values escaped so the text parses back to the same selector.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match r.operator {
                Operator::Equals => "=",
                Operator::NotEquals => "!=",
            };
            write!(f, "{}{op}{}", r.field, escape_value(&r.value))?;
        }
        Ok(())
    }
}

/// Escapes `\`, `,` and `=` in a value for use in a field selector.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Splits at commas that are not escaped; escapes stay in the terms.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in selector.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Splits a term at the first operator; the field part cannot escape anything.
fn split_term(term: &str) -> Option<(&str, Operator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (text, operator) in TERM_OPERATORS {
            if let Some(value) = rest.strip_prefix(text) {
                return Some((&term[..i], operator, value));
            }
        }
    }
    None
}

/// Resolves `\\`, `\,` and `\=`; any other escape, a trailing `\`, or an unescaped `,`/`=`
/// is an error (reported as upstream does, the character as its code point number).
fn unescape_value(raw: &str) -> Result<String, SelectorError> {
    if !raw.contains(['\\', ',', '=']) {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('\\' | ',' | '=')) => out.push(escaped),
                Some(other) => {
                    return Err(SelectorError::new(format!(
                        "invalid field selector: invalid escape sequence: \\{other}"
                    )))
                }
                None => return Err(SelectorError::new("invalid field selector: invalid escape sequence: \\")),
            },
            ',' | '=' => {
                return Err(SelectorError::new(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )))
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(field: &str) -> Option<String> {
        match field {
            "metadata.name" => Some("web".into()),
            "metadata.namespace" => Some("default".into()),
            "status.phase" => Some("Running".into()),
            "spec.nodeName" => None,
            "odd" => Some("a,b=c\\d".into()),
            _ => None,
        }
    }

    #[test]
    fn parses_and_matches() {
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("metadata.name=web", true),
            ("metadata.name==web", true),
            ("metadata.name!=web", false),
            ("metadata.name=db", false),
            ("metadata.name=web,status.phase!=Running", false),
            ("metadata.name=web,status.phase!=Pending", true),
            ("spec.nodeName=", true),
            ("spec.nodeName!=", false),
            ("odd=a\\,b\\=c\\\\d", true),
            (",metadata.name=web,", true),
            ("metadata.name=", false),
        ];
        for (text, want) in cases {
            let selector = Selector::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(selector.matches(lookup), *want, "{text}");
        }
    }

    #[test]
    fn splits_like_upstream() {
        let selector = Selector::parse("b==x,a!=y,c=z=").unwrap_err();
        assert_eq!(selector.message(), "invalid field selector: unescaped character in value: 61");
        let selector = Selector::parse("b==x,a!=y,c==").unwrap();
        let terms: Vec<_> =
            selector.requirements().iter().map(|r| (r.field.as_str(), r.operator, r.value.as_str())).collect();
        assert_eq!(
            terms,
            vec![("a", Operator::NotEquals, "y"), ("b", Operator::Equals, "x"), ("c", Operator::Equals, "")]
        );
        // No trimming: the space belongs to the field name.
        let spaced = Selector::parse("metadata.name = web").unwrap();
        assert_eq!(spaced.requirements()[0].field, "metadata.name ");
        assert_eq!(spaced.requirements()[0].value, " web");
        assert_eq!(Selector::parse("a!b=c").unwrap().requirements()[0].field, "a!b");
    }

    #[test]
    fn syntax_errors() {
        let cases: &[(&str, &str)] = &[
            ("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
            ("b=1,a", "invalid selector: 'b=1,a'; can't understand 'a'"),
            ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
            ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
            ("a=b\\n", "invalid field selector: invalid escape sequence: \\n"),
            ("a=b=c", "invalid field selector: unescaped character in value: 61"),
        ];
        for (text, want) in cases {
            assert_eq!(Selector::parse(text).unwrap_err().message(), *want, "{text}");
        }
    }

    #[test]
    fn display_round_trips() {
        let selector = Selector::parse("z=1,a!=x\\,y").unwrap();
        assert_eq!(selector.to_string(), "a!=x\\,y,z=1");
        assert_eq!(Selector::parse(&selector.to_string()).unwrap(), selector);
        assert_eq!(escape_value("a\\b,c=d"), "a\\\\b\\,c\\=d");
    }

    #[test]
    fn introspection() {
        let selector = Selector::parse("metadata.name=web,status.phase!=Failed").unwrap();
        assert_eq!(selector.requires_exact_match("metadata.name"), Some("web"));
        assert_eq!(selector.requires_exact_match("status.phase"), None);
        assert!(!selector.is_everything());
        assert!(Selector::everything().is_everything());
        assert_eq!(selector.fields().collect::<Vec<_>>(), vec!["metadata.name", "status.phase"]);
    }
}
