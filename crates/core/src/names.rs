//! The naming rules every Kubernetes object obeys, with upstream's error messages.
//!
//! Each `is_*` function returns the list of problems with a value; an empty list means the
//! value is valid. The messages are the ones apimachinery's `util/validation` package
//! produces, so that `kubectl` users see the texts they already know, for example
//!
//! ```text
//! a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and
//! must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex
//! used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')
//! ```
//!
//! (The odd double space after each example is upstream's, and kept on purpose.)
//!
//! The checks are hand-written scanners equivalent to upstream's regular expressions (quoted
//! in each message), which keeps this crate free of a regex engine.

/// Longest DNS-1123 label (RFC 1123): namespace names, port names of containers, ...
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest DNS-1123 subdomain: most object names.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Longest DNS-1035 label: Service names.
pub const DNS1035_LABEL_MAX_LENGTH: usize = 63;
/// Longest name part of a qualified name (label and annotation keys).
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// Longest label value.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
/// Longest IANA service name (named ports).
pub const PORT_NAME_MAX_LENGTH: usize = 15;
/// Upper bound on the summed byte length of all annotation keys and values of one object.
pub const TOTAL_ANNOTATION_SIZE_LIMIT_B: usize = 256 * 1024;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const WILDCARD_DNS1123_SUBDOMAIN_FMT: &str = r"\*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const WILDCARD_DNS1123_SUBDOMAIN_ERR_MSG: &str = "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// `must be no more than N characters`.
pub fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// `must be non-empty`.
pub fn empty_error() -> String {
    "must be non-empty".to_string()
}

/// The detail of upstream's "Too long" field error: `must have at most N bytes`.
pub fn too_long_error(max_bytes: usize) -> String {
    format!("must have at most {max_bytes} bytes")
}

/// Upstream's explanation of a failed pattern: the rule, the examples, then the pattern.
pub fn regex_error(msg: &str, pattern: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{pattern}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(example);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(pattern);
    out.push_str("')");
    out
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` with a configurable first-character class.
fn matches_dns_label(value: &str, first_ok: fn(u8) -> bool) -> bool {
    let bytes = value.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    first_ok(first) && is_lower_alnum(last) && bytes.iter().all(|&b| is_lower_alnum(b) || b == b'-')
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn matches_dns1123_label(value: &str) -> bool {
    matches_dns_label(value, is_lower_alnum)
}

fn matches_dns1123_subdomain(value: &str) -> bool {
    value.split('.').all(matches_dns1123_label)
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`: the name part of label keys, and label values.
fn matches_qualified_name_part(value: &str) -> bool {
    let bytes = value.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A DNS-1123 label (RFC 1123): at most 63 characters of `[a-z0-9-]`, alphanumeric at both ends.
/// Namespace names must be one.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            // A valid subdomain that is no label: the length was checked above, so it has dots.
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(DNS1123_LABEL_ERR_MSG, DNS1123_LABEL_FMT, &["my-name", "123-abc"]));
        }
    }
    errs
}

/// A DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253 characters.
/// Most object names (Pods, ConfigMaps, Deployments, ...) must be one.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(DNS1123_SUBDOMAIN_ERR_MSG, DNS1123_SUBDOMAIN_FMT, &["example.com"]));
    }
    errs
}

/// A DNS-1035 label: like a DNS-1123 label but starting with a letter.
/// Service names must be one (they become DNS names and environment variable prefixes).
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1035_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1035_LABEL_MAX_LENGTH));
    }
    if !matches_dns_label(value, |b| b.is_ascii_lowercase()) {
        errs.push(regex_error(DNS1035_LABEL_ERR_MSG, DNS1035_LABEL_FMT, &["my-name", "abc-123"]));
    }
    errs
}

/// A wildcard subdomain such as `*.example.com` (RFC 1034 §4.3.3): Ingress rule hosts.
pub fn is_wildcard_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    let valid = value.strip_prefix("*.").is_some_and(matches_dns1123_subdomain);
    if !valid {
        errs.push(regex_error(WILDCARD_DNS1123_SUBDOMAIN_ERR_MSG, WILDCARD_DNS1123_SUBDOMAIN_FMT, &["*.example.com"]));
    }
    errs
}

/// An IANA service name (RFC 6335), the syntax of named ports: at most 15 characters of
/// `[-a-z0-9]`, at least one letter, no hyphen at either end and no two hyphens in a row.
pub fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > PORT_NAME_MAX_LENGTH {
        errs.push(max_len_error(PORT_NAME_MAX_LENGTH));
    }
    if port.is_empty() || !port.bytes().all(|b| is_lower_alnum(b) || b == b'-') {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string());
    }
    if !port.bytes().any(|b| b.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// A qualified name: the syntax of label keys and annotation keys. An optional DNS-1123
/// subdomain prefix and a `/`, then a name of at most 63 characters of `[-A-Za-z0-9_.]`
/// that starts and ends alphanumeric (`app`, `app.kubernetes.io/name`).
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {}", empty_error()));
            } else {
                errs.extend(is_dns1123_subdomain(prefix).into_iter().map(|msg| format!("prefix part {msg}")));
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {}", empty_error()));
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!("name part {}", max_len_error(QUALIFIED_NAME_MAX_LENGTH)));
    }
    if !matches_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(QUALIFIED_NAME_ERR_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
        ));
    }
    errs
}

/// A label value: empty, or at most 63 characters of `[-A-Za-z0-9_.]` that start and end
/// alphanumeric.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_qualified_name_part(value) {
        errs.push(regex_error(LABEL_VALUE_ERR_MSG, LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"]));
    }
    errs
}

/// The problems with one annotation key. Annotation keys are qualified names, except that
/// case does not matter (upstream checks the lowercased key).
pub fn is_valid_annotation_key(key: &str) -> Vec<String> {
    is_qualified_name(&key.to_lowercase())
}

/// The summed byte length of all keys and values, the quantity upstream limits to
/// [`TOTAL_ANNOTATION_SIZE_LIMIT_B`].
pub fn annotations_total_size<'a>(annotations: impl IntoIterator<Item = (&'a str, &'a str)>) -> usize {
    annotations.into_iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// Checks the total annotation size. The error is upstream's internal explanation
/// (`annotations size N is larger than limit 262144`); the API reports it as a "Too long"
/// field error on `metadata.annotations` with detail [`too_long_error`]`(`[`TOTAL_ANNOTATION_SIZE_LIMIT_B`]`)`.
pub fn validate_annotations_size<'a>(annotations: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<(), String> {
    let total = annotations_total_size(annotations);
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_B {
        return Err(format!("annotations size {total} is larger than limit {TOTAL_ANNOTATION_SIZE_LIMIT_B}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
    const NAME_PART_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    #[test]
    fn dns1123_label() {
        for ok in ["a", "0", "my-name", "123-abc", "a--b", &"a".repeat(63)] {
            assert!(is_dns1123_label(ok).is_empty(), "{ok}");
        }
        let cases: &[(&str, Vec<String>)] = &[
            ("", vec![LABEL_MSG.into()]),
            ("-a", vec![LABEL_MSG.into()]),
            ("a-", vec![LABEL_MSG.into()]),
            ("A", vec![LABEL_MSG.into()]),
            ("a_b", vec![LABEL_MSG.into()]),
            ("a.b", vec!["must not contain dots".into()]),
            (&"a".repeat(64), vec![max_len_error(63)]),
            (&"-".repeat(64), vec!["must be no more than 63 characters".into(), LABEL_MSG.into()]),
        ];
        for (value, want) in cases {
            assert_eq!(&is_dns1123_label(value), want, "{value}");
        }
    }

    #[test]
    fn dns1123_subdomain() {
        for ok in ["a", "example.com", "a.b-c.d0", &"a".repeat(253)] {
            assert!(is_dns1123_subdomain(ok).is_empty(), "{ok}");
        }
        for bad in ["", ".a", "a.", "a..b", "a.-b", "A.b", "a_b", "a/b"] {
            assert_eq!(is_dns1123_subdomain(bad), vec![SUBDOMAIN_MSG.to_string()], "{bad}");
        }
        assert_eq!(is_dns1123_subdomain(&"a".repeat(254)), vec!["must be no more than 253 characters".to_string()]);
    }

    #[test]
    fn dns1035_label() {
        for ok in ["a", "my-name", "abc-123", "a1"] {
            assert!(is_dns1035_label(ok).is_empty(), "{ok}");
        }
        for bad in ["", "1a", "123-abc", "a-", "a.b", "Ab"] {
            assert_eq!(is_dns1035_label(bad), vec![DNS1035_MSG.to_string()], "{bad}");
        }
        assert_eq!(is_dns1035_label(&"a".repeat(64)), vec![max_len_error(63)]);
    }

    #[test]
    fn wildcard_subdomain() {
        assert!(is_wildcard_dns1123_subdomain("*.example.com").is_empty());
        assert!(is_wildcard_dns1123_subdomain("*.com").is_empty());
        for bad in ["*", "*.", "*.*.a.com", "a.*.com", "*a.com", "f*.a.com", "example.com"] {
            assert_eq!(is_wildcard_dns1123_subdomain(bad).len(), 1, "{bad}");
        }
        assert!(
            is_wildcard_dns1123_subdomain("a.com")[0].starts_with("a wildcard DNS-1123 subdomain must start with '*.'")
        );
    }

    #[test]
    fn port_names() {
        for ok in ["http", "h2c", "a", "web-8080", "abcdefghijklmno"] {
            assert!(is_valid_port_name(ok).is_empty(), "{ok}");
        }
        let charset = "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)";
        let letter = "must contain at least one letter (a-z)";
        let cases: &[(&str, &[&str])] = &[
            ("", &[charset, letter]),
            ("abcdefghijklmnop", &["must be no more than 15 characters"]),
            ("HTTP", &[charset, letter]),
            ("8080", &[letter]),
            ("a--b", &["must not contain consecutive hyphens"]),
            ("-http", &["must not begin or end with a hyphen"]),
            ("http-", &["must not begin or end with a hyphen"]),
            ("web_1", &[charset]),
        ];
        for (value, want) in cases {
            assert_eq!(is_valid_port_name(value), want.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{value}");
        }
    }

    #[test]
    fn qualified_names() {
        for ok in ["app", "App.Name_1", "app.kubernetes.io/name", "k8s.io/a", &"a".repeat(63)] {
            assert!(is_qualified_name(ok).is_empty(), "{ok}");
        }
        let cases: &[(&str, Vec<String>)] = &[
            ("", vec!["name part must be non-empty".into(), NAME_PART_MSG.into()]),
            ("-app", vec![NAME_PART_MSG.into()]),
            ("app name", vec![NAME_PART_MSG.into()]),
            ("/app", vec!["prefix part must be non-empty".into()]),
            ("example.com/", vec!["name part must be non-empty".into(), NAME_PART_MSG.into()]),
            ("Example.com/app", vec![format!("prefix part {SUBDOMAIN_MSG}")]),
            (&"a".repeat(64), vec!["name part must be no more than 63 characters".into()]),
        ];
        for (value, want) in cases {
            assert_eq!(&is_qualified_name(value), want, "{value}");
        }
        let too_many = is_qualified_name("a/b/c");
        assert_eq!(too_many.len(), 1);
        assert!(too_many[0].starts_with("a qualified name must consist of alphanumeric characters"));
        assert!(too_many[0].ends_with("with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"));
    }

    #[test]
    fn label_values() {
        for ok in ["", "a", "MyValue", "my_value", "12345", "a.b-c_d", &"v".repeat(63)] {
            assert!(is_valid_label_value(ok).is_empty(), "{ok}");
        }
        for bad in ["-a", "a-", "a b", "a/b", "ä"] {
            assert_eq!(is_valid_label_value(bad), vec![LABEL_VALUE_MSG.to_string()], "{bad}");
        }
        assert_eq!(is_valid_label_value(&"v".repeat(64)), vec![max_len_error(63)]);
    }

    #[test]
    fn annotations() {
        assert!(is_valid_annotation_key("Example.COM/Key").is_empty());
        assert!(!is_valid_annotation_key("a b").is_empty());
        let small = [("a", "b")];
        assert_eq!(annotations_total_size(small), 2);
        assert!(validate_annotations_size(small).is_ok());
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_B);
        assert!(validate_annotations_size([("", big.as_str())]).is_ok());
        assert_eq!(
            validate_annotations_size([("k", big.as_str())]),
            Err("annotations size 262145 is larger than limit 262144".to_string())
        );
        assert_eq!(too_long_error(TOTAL_ANNOTATION_SIZE_LIMIT_B), "must have at most 262144 bytes");
    }
}
