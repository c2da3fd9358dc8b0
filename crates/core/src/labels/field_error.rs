//! Renders validation failures the way apimachinery's `field.Error` prints them
//! (`values[0][app]: Invalid value: "x": detail`), because selector errors reach users as
//! that text inside a 400 BadRequest.

/// `<path>: Invalid value: "<value>": <detail>` for a string value (Go `%q` quoting).
pub(crate) fn invalid_string(path: &str, value: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {}: {detail}", go_quote(value))
}

/// `<path>: Invalid value: []string{"a", "b"}: <detail>` for a list value (Go `%#v`).
pub(crate) fn invalid_strings(path: &str, values: &[String], detail: &str) -> String {
    let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    format!("{path}: Invalid value: []string{{{}}}: {detail}", quoted.join(", "))
}

/// Joins several messages like upstream's error aggregate: one (distinct) message alone,
/// several as `[a, b]`.
pub(crate) fn aggregate(messages: Vec<String>) -> String {
    let mut distinct: Vec<String> = Vec::with_capacity(messages.len());
    for message in messages {
        if !distinct.contains(&message) {
            distinct.push(message);
        }
    }
    if distinct.len() == 1 {
        return distinct.remove(0);
    }
    format!("[{}]", distinct.join(", "))
}

/// A double-quoted string with Go `strconv.Quote` escapes, so error texts match upstream's
/// byte for byte for the inputs users actually type.
pub(crate) fn go_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if c.is_control() => {
                let code = c as u32;
                if code < 0x80 {
                    out.push_str(&format!("\\x{code:02x}"));
                } else {
                    out.push_str(&format!("\\u{code:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a b"), "\"a b\"");
        assert_eq!(go_quote("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
        assert_eq!(go_quote("tab\tnl\n\u{1}"), "\"tab\\tnl\\n\\x01\"");
        assert_eq!(go_quote("日本"), "\"日本\"");
    }

    #[test]
    fn aggregates_distinct_messages() {
        assert_eq!(aggregate(vec!["a".into()]), "a");
        assert_eq!(aggregate(vec!["a".into(), "a".into()]), "a");
        assert_eq!(aggregate(vec!["a".into(), "b".into()]), "[a, b]");
    }

    #[test]
    fn renders_invalid_values() {
        assert_eq!(invalid_string("<nil>", "x y", "bad"), "<nil>: Invalid value: \"x y\": bad");
        assert_eq!(invalid_strings("values", &[], "empty"), "values: Invalid value: []string{}: empty");
    }
}
