//! The text syntax of label selectors, parsed the way apimachinery's `labels.Parse` does:
//!
//! ```text
//! selector    ::= requirement ( "," requirement )*
//! requirement ::= [ "!" ] KEY [ ( "in" | "notin" ) "(" VALUES ")" | ( "=" | "==" | "!=" | ">" | "<" ) VALUE ]
//! ```
//!
//! A lexer first cuts the text into tokens (whitespace only separates them), then a
//! recursive-descent parser turns them into [`Requirement`]s. The error messages are
//! upstream's word for word (including their quirks, such as the missing comma in
//! `found 'x' expected: '('`), because clients show them verbatim.

use super::{field_error, Operator, Requirement, SelectorError};
use crate::names;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// A run of special symbols that forms no operator (cannot happen with today's symbol
    /// set, kept so that the lexer is total).
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

#[derive(Debug, Clone)]
struct Item<'a> {
    token: Token,
    literal: std::borrow::Cow<'a, str>,
}

/// Whether `in`/`notin` are operators (after a key) or plain words (as keys and values:
/// `in in (in)` is a valid selector).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special_symbol(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn symbol_token(text: &str) -> Option<Token> {
    Some(match text {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

/// Cuts `input` into tokens, ending with exactly one `EndOfString`. A NUL byte ends the
/// input, as it does for upstream's byte reader.
fn lex(input: &str) -> Vec<Item<'_>> {
    let input = input.split('\0').next().unwrap_or_default();
    let bytes = input.as_bytes();
    let mut items = Vec::new();
    let mut pos = 0;
    loop {
        while pos < bytes.len() && is_whitespace(bytes[pos]) {
            pos += 1;
        }
        if pos >= bytes.len() {
            items.push(Item { token: Token::EndOfString, literal: "".into() });
            return items;
        }
        let start = pos;
        if is_special_symbol(bytes[pos]) {
            // Longest run of symbols that still forms an operator: `!=` is one token, `=!` two.
            let mut longest: Option<(Token, usize)> = None;
            while pos < bytes.len() && is_special_symbol(bytes[pos]) {
                pos += 1;
                match symbol_token(&input[start..pos]) {
                    Some(token) => longest = Some((token, pos)),
                    None if longest.is_some() => break,
                    None => {}
                }
            }
            match longest {
                Some((token, end)) => {
                    pos = end;
                    items.push(Item { token, literal: input[start..end].into() });
                }
                None => items.push(Item {
                    token: Token::Error,
                    literal: format!("error expected: keyword found '{}'", &input[start..pos]).into(),
                }),
            }
        } else {
            while pos < bytes.len() && !is_special_symbol(bytes[pos]) && !is_whitespace(bytes[pos]) {
                pos += 1;
            }
            let word = &input[start..pos];
            let token = match word {
                "in" => Token::In,
                "notin" => Token::NotIn,
                _ => Token::Identifier,
            };
            items.push(Item { token, literal: word.into() });
        }
    }
}

struct Parser<'a> {
    items: Vec<Item<'a>>,
    position: usize,
}

type ParseResult<T> = Result<T, String>;

impl<'a> Parser<'a> {
    fn item(&self, index: usize) -> (Token, &str) {
        // The lexer always ends with EndOfString and the parser never reads past it; the
        // clamp only guards against a future grammar change.
        let item = &self.items[index.min(self.items.len() - 1)];
        (item.token, &item.literal)
    }

    fn in_context(token: Token, context: Context) -> Token {
        match (context, token) {
            (Context::Values, Token::In | Token::NotIn) => Token::Identifier,
            _ => token,
        }
    }

    fn lookahead(&self, context: Context) -> (Token, String) {
        let (token, literal) = self.item(self.position);
        (Self::in_context(token, context), literal.to_string())
    }

    fn consume(&mut self, context: Context) -> (Token, String) {
        let (token, literal) = self.item(self.position);
        let result = (Self::in_context(token, context), literal.to_string());
        self.position += 1;
        result
    }

    fn parse(&mut self) -> ParseResult<Vec<Requirement>> {
        let mut requirements = Vec::new();
        loop {
            let (token, literal) = self.lookahead(Context::Values);
            match token {
                Token::Identifier | Token::DoesNotExist => {
                    let requirement =
                        self.parse_requirement().map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(requirement);
                    let (token, literal) = self.consume(Context::Values);
                    match token {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (next, next_literal) = self.lookahead(Context::Values);
                            if next != Token::Identifier && next != Token::DoesNotExist {
                                return Err(format!("found '{next_literal}', expected: identifier after ','"));
                            }
                        }
                        _ => return Err(format!("found '{literal}', expected: ',' or 'end of string'")),
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => return Err(format!("found '{literal}', expected: !, identifier, or 'end of string'")),
            }
        }
    }

    fn parse_requirement(&mut self) -> ParseResult<Requirement> {
        let (key, unary) = self.parse_key_and_infer_operator()?;
        if let Some(operator) = unary {
            return new_requirement(key, operator, Vec::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        new_requirement(key, operator, values)
    }

    /// The key, and the operator when there is no binary one: `!key` is does-not-exist, a
    /// bare `key` before `,` or the end is exists.
    fn parse_key_and_infer_operator(&mut self) -> ParseResult<(String, Option<Operator>)> {
        let mut operator = None;
        let (mut token, mut literal) = self.consume(Context::Values);
        if token == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (token, literal) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(format!("found '{literal}', expected: identifier"));
        }
        let key_errors = names::is_qualified_name(&literal);
        if !key_errors.is_empty() {
            return Err(field_error::invalid_string("<nil>", &literal, &key_errors.join("; ")));
        }
        let (next, _) = self.lookahead(Context::Values);
        if matches!(next, Token::EndOfString | Token::Comma) && operator.is_none() {
            operator = Some(Operator::Exists);
        }
        Ok((literal, operator))
    }

    fn parse_operator(&mut self) -> ParseResult<Operator> {
        let (token, literal) = self.consume(Context::KeyAndOperator);
        Ok(match token {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => return Err(format!("found '{literal}', expected: in, notin, =, ==, !=, gt, lt")),
        })
    }

    /// `( a, b, ... )`; empty entries are the empty value, so `()` selects "".
    fn parse_values(&mut self) -> ParseResult<Vec<String>> {
        let (token, literal) = self.consume(Context::Values);
        if token != Token::OpenPar {
            return Err(format!("found '{literal}' expected: '('"));
        }
        let (token, literal) = self.lookahead(Context::Values);
        match token {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                let (token, _) = self.consume(Context::Values);
                if token != Token::ClosedPar {
                    return Err(format!("found '{literal}', expected: ')'"));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{literal}', expected: ',', ')' or identifier")),
        }
    }

    /// The comma-separated list inside the parentheses, as a sorted set.
    fn parse_identifiers_list(&mut self) -> ParseResult<Vec<String>> {
        let mut values = std::collections::BTreeSet::new();
        loop {
            let (token, literal) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    values.insert(literal);
                    let (next, next_literal) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values.into_iter().collect()),
                        _ => return Err(format!("found '{next_literal}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.insert(String::new());
                    }
                    let (next, _) = self.lookahead(Context::Values);
                    if next == Token::ClosedPar {
                        values.insert(String::new());
                        return Ok(values.into_iter().collect());
                    }
                    if next == Token::Comma {
                        values.insert(String::new());
                    }
                }
                _ => return Err(format!("found '{literal}', expected: ',', or identifier")),
            }
        }
    }

    /// The single value after `=`, `==`, `!=`, `>` or `<`; nothing before `,` or the end is "".
    fn parse_exact_value(&mut self) -> ParseResult<Vec<String>> {
        let (token, _) = self.lookahead(Context::Values);
        if matches!(token, Token::EndOfString | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        let (token, literal) = self.consume(Context::Values);
        if token == Token::Identifier {
            return Ok(vec![literal]);
        }
        Err(format!("found '{literal}', expected: identifier"))
    }
}

fn new_requirement(key: String, operator: Operator, values: Vec<String>) -> ParseResult<Requirement> {
    Requirement::new(key, operator, values).map_err(|e| e.message().to_string())
}

/// Parses a selector into its requirements (unsorted; the caller sorts them by key).
pub(super) fn parse(text: &str) -> Result<Vec<Requirement>, SelectorError> {
    let mut parser = Parser { items: lex(text), position: 0 };
    parser.parse().map_err(SelectorError::new)
}

#[cfg(test)]
mod tests {
    use super::super::Selector;

    #[test]
    fn canonical_forms() {
        let cases: &[(&str, &str)] = &[
            ("x=a,y=b,z=c", "x=a,y=b,z=c"),
            ("z=c , y=b,x=a", "x=a,y=b,z=c"),
            ("  app  ==  web  ", "app==web"),
            ("x!=a", "x!=a"),
            ("x in (c, a, b)", "x in (a,b,c)"),
            ("x notin (a)", "x notin (a)"),
            ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
            ("x in (a,a)", "x in (a)"),
            ("x in (,)", "x in ()"),
            ("x in (,a)", "x in (,a)"),
            ("x in (a,)", "x in (,a)"),
            ("!x", "!x"),
            ("! x", "!x"),
            ("x", "x"),
            ("x=", "x="),
            ("x=,y", "x=,y"),
            ("x>1", "x>1"),
            ("x<5", "x<5"),
            ("in in (in)", "in in (in)"),
            ("notin notin (notin)", "notin notin (notin)"),
            ("x=in", "x=in"),
            ("example.com/role=db,app.kubernetes.io/name in (a)", "app.kubernetes.io/name in (a),example.com/role=db"),
            ("a\t=\nb", "a=b"),
            ("", ""),
            ("a=b\0garbage", "a=b"),
        ];
        for (text, want) in cases {
            let selector = Selector::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(&selector.to_string(), want, "{text:?}");
        }
    }

    #[test]
    fn syntax_errors() {
        let cases: &[(&str, &str)] = &[
            ("x=a,", "found '', expected: identifier after ','"),
            (",x", "found ',', expected: !, identifier, or 'end of string'"),
            ("=a", "found '=', expected: !, identifier, or 'end of string'"),
            ("x y", "unable to parse requirement: found 'y', expected: in, notin, =, ==, !=, gt, lt"),
            ("x in", "unable to parse requirement: found '' expected: '('"),
            ("x in a", "unable to parse requirement: found 'a' expected: '('"),
            ("x in (a", "unable to parse requirement: found '', expected: ',' or ')'"),
            ("x in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'"),
            ("x in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
            ("x in (a,=)", "unable to parse requirement: found '=', expected: ',', or identifier"),
            ("x=(a)", "unable to parse requirement: found '(', expected: identifier"),
            ("x=a b", "found 'b', expected: ',' or 'end of string'"),
            ("x=a)", "found ')', expected: ',' or 'end of string'"),
            ("!x=a", "found '=', expected: ',' or 'end of string'"),
            ("!", "unable to parse requirement: found '', expected: identifier"),
            ("!!x", "unable to parse requirement: found '!', expected: identifier"),
            ("x=!a", "unable to parse requirement: found '!', expected: identifier"),
            ("x>a", "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer"),
        ];
        for (text, want) in cases {
            let err = Selector::parse(text).expect_err(text);
            assert_eq!(err.message(), *want, "{text:?}");
        }
    }

    #[test]
    fn validation_errors() {
        let name_part = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
        let err = Selector::parse("-x=a").unwrap_err();
        assert_eq!(err.message(), format!("unable to parse requirement: <nil>: Invalid value: \"-x\": {name_part}"));
        let err = Selector::parse(&format!("{}=a", "k".repeat(64))).unwrap_err();
        assert!(err.message().ends_with("\": name part must be no more than 63 characters"), "{err}");
        let err = Selector::parse("Bad.Prefix/x").unwrap_err();
        assert!(err.message().contains("prefix part a lowercase RFC 1123 subdomain"), "{err}");
        let value_msg = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
        let err = Selector::parse("app=-web").unwrap_err();
        assert_eq!(
            err.message(),
            format!("unable to parse requirement: values[0][app]: Invalid value: \"-web\": {value_msg}")
        );
        let err = Selector::parse(&format!("app={}", "v".repeat(64))).unwrap_err();
        assert!(err.message().ends_with("\": must be no more than 63 characters"), "{err}");
        // Negative bounds are integers but no label values, so upstream rejects them too.
        let err = Selector::parse("x<-5").unwrap_err();
        assert_eq!(
            err.message(),
            format!("unable to parse requirement: values[0][x]: Invalid value: \"-5\": {value_msg}")
        );
        let err = Selector::parse("app in (ok,-b,-a)").unwrap_err();
        assert!(
            err.message().starts_with("unable to parse requirement: [values[0][app]: Invalid value: \"-a\""),
            "{err}"
        );
    }
}
