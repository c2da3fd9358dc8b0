//! Command-line flags the way agnhost's (Go, cobra/pflag) parser reads them, so pod specs
//! written for the real image work unchanged: `--port=80`, `--port 80`, `--tcp`,
//! `--http=false`, flags and positional arguments in any order, `--` ending the flags. A single
//! dash (`-port=80`, Go's `flag` package style) is accepted too. klog's logging flags, which
//! agnhost accepts on every subcommand (`--v=2`, `--logtostderr`), are accepted and ignored.

use std::collections::HashMap;
use std::time::Duration;

/// Whether a flag takes a value (`--port 80`) or is a switch (`--tcp`, `--tcp=false`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Value,
    Bool,
}

/// One flag a program understands.
pub struct Flag {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

/// klog flags that take a value; accepted everywhere, ignored.
const KLOG_VALUE_FLAGS: &[&str] =
    &["v", "vmodule", "log_dir", "log_file", "log_file_max_size", "stderrthreshold", "log_backtrace_at"];
/// klog switches; accepted everywhere, ignored.
const KLOG_BOOL_FLAGS: &[&str] =
    &["logtostderr", "alsologtostderr", "add_dir_header", "skip_headers", "skip_log_headers", "one_output"];

/// The result of parsing: flag values by name, and the positional arguments in order.
#[derive(Debug, Default)]
pub struct Parsed {
    values: HashMap<String, String>,
    pub positional: Vec<String>,
    /// `-h`/`--help` was given.
    pub help: bool,
}

/// Parses `argv` (without the program/subcommand name) against `flags`.
pub fn parse(flags: &[Flag], argv: &[String]) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let mut rest = argv.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            parsed.positional.extend(rest.by_ref().cloned());
            break;
        }
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')).filter(|b| !b.is_empty()) else {
            parsed.positional.push(arg.clone());
            continue;
        };
        let (name, inline_value) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (body, None),
        };
        if name == "h" || name == "help" {
            parsed.help = true;
            continue;
        }
        let kind = match flags.iter().find(|f| f.name == name) {
            Some(flag) => flag.kind,
            None if KLOG_VALUE_FLAGS.contains(&name) => Kind::Value,
            None if KLOG_BOOL_FLAGS.contains(&name) => Kind::Bool,
            None => return Err(format!("unknown flag: {arg}")),
        };
        let value = match (kind, inline_value) {
            (_, Some(value)) => value,
            (Kind::Bool, None) => "true".to_owned(),
            (Kind::Value, None) => rest.next().cloned().ok_or_else(|| format!("flag needs an argument: {arg}"))?,
        };
        if kind == Kind::Bool {
            parse_bool(&value).map_err(|_| format!("invalid argument {value:?} for {arg}: not a boolean"))?;
        }
        parsed.values.insert(name.to_owned(), value);
    }
    Ok(parsed)
}

impl Parsed {
    /// The raw value of a flag, if it was given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A string flag, or `default`.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    /// An integer flag, or `default`.
    pub fn int(&self, name: &str, default: i64) -> Result<i64, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("invalid argument {v:?} for --{name}: not an integer")),
        }
    }

    /// A switch, or `default`.
    pub fn bool(&self, name: &str, default: bool) -> bool {
        self.get(name).and_then(|v| parse_bool(v).ok()).unwrap_or(default)
    }

    /// A Go duration flag (`5s`, `1m30s`), or `default`.
    pub fn duration(&self, name: &str, default: Duration) -> Result<Duration, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => parse_go_duration(v).map_err(|e| format!("invalid argument {v:?} for --{name}: {e}")),
        }
    }
}

/// The usage text for a program's flags, one per line.
pub fn usage(flags: &[Flag]) -> String {
    flags
        .iter()
        .map(|f| match f.kind {
            Kind::Bool => format!("      --{:<28}{}\n", f.name, f.help),
            Kind::Value => format!("      --{:<28}{}\n", format!("{} value", f.name), f.help),
        })
        .collect()
}

/// Go's `strconv.ParseBool`.
fn parse_bool(value: &str) -> Result<bool, ()> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(()),
    }
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers with units (`ns`, `us`, `µs`, `ms`,
/// `s`, `m`, `h`), e.g. `300ms`, `1.5h`, `2h45m`; a bare `0` is allowed. Negative durations are
/// accepted and become zero (every use here is a wait or a timeout).
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err("invalid duration".to_owned());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().map_err(|_| "invalid duration".to_owned())?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err("missing unit in duration".to_owned()),
            unit => return Err(format!("unknown unit {unit:?} in duration")),
        };
        rest = &rest[unit_len..];
        total += number * seconds_per_unit;
    }
    if negative {
        return Ok(Duration::ZERO);
    }
    Duration::try_from_secs_f64(total).map_err(|_| "duration out of range".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[Flag] = &[
        Flag { name: "port", kind: Kind::Value, help: "Port number." },
        Flag { name: "tcp", kind: Kind::Bool, help: "Serve raw over TCP." },
        Flag { name: "http", kind: Kind::Bool, help: "Serve HTTP." },
    ];

    fn args(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_pflag_forms() {
        let p = parse(FLAGS, &args(&["--port", "80", "--tcp", "--http=false", "host:1", "-v=2", "--logtostderr"]))
            .expect("parses");
        assert_eq!(p.int("port", 9376), Ok(80));
        assert!(p.bool("tcp", false));
        assert!(!p.bool("http", true));
        assert_eq!(p.positional, args(&["host:1"]));
        let p = parse(FLAGS, &args(&["-port=81", "--", "--tcp"])).expect("parses");
        assert_eq!(p.int("port", 0), Ok(81));
        assert_eq!(p.positional, args(&["--tcp"]));
        assert_eq!(parse(FLAGS, &[]).expect("parses").int("port", 9376), Ok(9376));
    }

    #[test]
    fn rejects_bad_flags() {
        assert!(parse(FLAGS, &args(&["--nope"])).is_err());
        assert!(parse(FLAGS, &args(&["--port"])).is_err());
        assert!(parse(FLAGS, &args(&["--tcp=maybe"])).is_err());
        let p = parse(FLAGS, &args(&["--port=eighty"])).expect("parses");
        assert!(p.int("port", 0).is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("-3s"), Ok(Duration::ZERO));
        for bad in ["", "5", "s", "5x", "1e400h", "--1s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
    }
}
