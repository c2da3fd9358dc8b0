//! Query parameters of the streaming subresources, parsed and validated as upstream's
//! `PodLogOptions` / `PodExecOptions` / `PodPortForwardOptions`, and re-encoded for kubelet.

use skiff_api::{ApiError, FieldError, FieldErrorType, Subject};

/// All values of each key, in order (`command` repeats).
fn pairs(raw: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn last<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

/// Go's strconv.ParseBool, with its error text (what upstream's query decoding reports).
fn boolean(pairs: &[(String, String)], key: &str) -> Result<bool, ApiError> {
    match last(pairs, key) {
        None => Ok(false),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(v) => Err(ApiError::BadRequest(format!("strconv.ParseBool: parsing {v:?}: invalid syntax"))),
    }
}

/// Go's strconv.ParseInt, with its error text.
fn integer(pairs: &[(String, String)], key: &str) -> Result<Option<i64>, ApiError> {
    match last(pairs, key) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("strconv.ParseInt: parsing {v:?}: invalid syntax"))),
    }
}

/// `pods/log` options.
#[derive(Debug, Default)]
pub struct LogParams {
    pub container: Option<String>,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub since_seconds: Option<i64>,
    pub since_time: Option<String>,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
}

impl LogParams {
    /// Parses and validates (422 `PodLogOptions "<pod>" is invalid` for bad values, 400 for
    /// values that are not numbers or booleans at all).
    pub fn parse(raw: &str, pod_name: &str) -> Result<LogParams, ApiError> {
        let p = pairs(raw);
        let since_time = match last(&p, "sinceTime") {
            None => None,
            Some(v) => {
                let t = chrono::DateTime::parse_from_rfc3339(v).map_err(|_| {
                    ApiError::BadRequest(format!("invalid value for sinceTime: {v:?} is not an RFC 3339 time"))
                })?;
                // Seconds precision, as upstream's metav1.Time carries it.
                Some(t.with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%SZ").to_string())
            }
        };
        let params = LogParams {
            container: last(&p, "container").map(str::to_string),
            follow: boolean(&p, "follow")?,
            previous: boolean(&p, "previous")?,
            timestamps: boolean(&p, "timestamps")?,
            since_seconds: integer(&p, "sinceSeconds")?,
            since_time,
            tail_lines: integer(&p, "tailLines")?,
            limit_bytes: integer(&p, "limitBytes")?,
        };
        let mut errs = Vec::new();
        if let Some(n) = params.tail_lines.filter(|n| *n < 0) {
            errs.push(FieldError::invalid("tailLines", n, "must be greater than or equal to 0"));
        }
        if let Some(n) = params.limit_bytes.filter(|n| *n < 1) {
            errs.push(FieldError::invalid("limitBytes", n, "must be greater than 0"));
        }
        match (params.since_seconds, &params.since_time) {
            (Some(_), Some(_)) => errs.push(FieldError::new(
                FieldErrorType::Forbidden,
                "",
                None,
                "at most one of `sinceTime` or `sinceSeconds` may be specified",
            )),
            (Some(n), None) if n < 1 => errs.push(FieldError::invalid("sinceSeconds", n, "must be greater than 0")),
            _ => {}
        }
        if !errs.is_empty() {
            let subject = Subject {
                group: String::new(),
                resource: "pods".into(),
                kind: "PodLogOptions".into(),
                name: pod_name.into(),
            };
            return Err(ApiError::Invalid(subject, errs));
        }
        Ok(params)
    }

    /// The kubelet's query string.
    pub fn kubelet_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if self.follow {
            q.append_pair("follow", "true");
        }
        if self.previous {
            q.append_pair("previous", "true");
        }
        if self.timestamps {
            q.append_pair("timestamps", "true");
        }
        if let Some(n) = self.since_seconds {
            q.append_pair("sinceSeconds", &n.to_string());
        }
        if let Some(t) = &self.since_time {
            q.append_pair("sinceTime", t);
        }
        if let Some(n) = self.tail_lines {
            q.append_pair("tailLines", &n.to_string());
        }
        if let Some(n) = self.limit_bytes {
            q.append_pair("limitBytes", &n.to_string());
        }
        q.finish()
    }
}

/// `pods/exec` options.
#[derive(Debug, Default)]
pub struct ExecParams {
    pub container: Option<String>,
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl ExecParams {
    pub fn parse(raw: &str) -> Result<ExecParams, ApiError> {
        let p = pairs(raw);
        Ok(ExecParams {
            container: last(&p, "container").map(str::to_string),
            command: p.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect(),
            stdin: boolean(&p, "stdin")?,
            stdout: boolean(&p, "stdout")?,
            stderr: boolean(&p, "stderr")?,
            tty: boolean(&p, "tty")?,
        })
    }

    /// The kubelet's query string (flags as `1`, as upstream encodes them).
    pub fn kubelet_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (flag, on) in [("stdin", self.stdin), ("stdout", self.stdout), ("stderr", self.stderr), ("tty", self.tty)] {
            if on {
                q.append_pair(flag, "1");
            }
        }
        for c in &self.command {
            q.append_pair("command", c);
        }
        q.finish()
    }
}

/// `pods/portforward` ports (`ports=80&ports=443` or comma lists); each must be 1-65535.
pub fn port_forward_ports(raw: &str) -> Result<Vec<String>, ApiError> {
    let mut ports = Vec::new();
    for (k, v) in pairs(raw) {
        if k != "ports" {
            continue;
        }
        for part in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match part.parse::<u16>() {
                Ok(p) if p > 0 => ports.push(p.to_string()),
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "invalid port {part:?}: port must be in the range 1 to 65535"
                    )))
                }
            }
        }
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_params_validate_like_upstream() {
        let p = LogParams::parse("container=c&follow=true&tailLines=3&timestamps=1", "p").unwrap();
        assert_eq!(p.container.as_deref(), Some("c"));
        assert_eq!(p.kubelet_query(), "follow=true&timestamps=true&tailLines=3");
        let err = LogParams::parse("tailLines=-1", "p").unwrap_err();
        assert_eq!(err.code(), 422);
        assert_eq!(
            err.message(),
            "PodLogOptions \"p\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(LogParams::parse("limitBytes=0", "p").unwrap_err().code(), 422);
        assert_eq!(LogParams::parse("sinceSeconds=0", "p").unwrap_err().code(), 422);
        assert_eq!(LogParams::parse("sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z", "p").unwrap_err().code(), 422);
        let err = LogParams::parse("tailLines=abc", "p").unwrap_err();
        assert_eq!((err.code(), err.message().as_str()), (400, "strconv.ParseInt: parsing \"abc\": invalid syntax"));
        assert_eq!(LogParams::parse("follow=maybe", "p").unwrap_err().code(), 400);
        assert_eq!(LogParams::parse("sinceTime=yesterday", "p").unwrap_err().code(), 400);
    }

    #[test]
    fn exec_params_keep_every_command_word() {
        let p = ExecParams::parse("command=sh&command=-c&command=echo+a%26b&stdout=true&tty=false").unwrap();
        assert_eq!(p.command, ["sh", "-c", "echo a&b"]);
        assert_eq!(p.kubelet_query(), "stdout=1&command=sh&command=-c&command=echo+a%26b");
    }

    #[test]
    fn ports_must_be_valid() {
        assert_eq!(port_forward_ports("ports=80&ports=443,8080").unwrap(), ["80", "443", "8080"]);
        assert!(port_forward_ports("ports=0").is_err());
        assert!(port_forward_ports("ports=70000").is_err());
    }
}
