//! `skiff builtin httpd`: stands in for the Apache httpd image's default server (docker's
//! `httpd` and `registry.k8s.io/e2e-test-images/httpd`, which many e2e tests deploy). It listens
//! on port 80 (`--port N` to change; skiff's own flag) and answers `/` and `/index.html` with
//! httpd's "It works!" page, other paths with Apache-style error pages, with `Server: Apache`;
//! `--root DIR` (skiff's own flag) serves the files under DIR instead, like the image's htdocs.
//!
//! httpd's own flags (`-D NAME`, `-f FILE`, `-C`/`-c DIRECTIVE`, `-d DIR`, `-e LEVEL`,
//! `-E FILE`, `-k start`, `-X`, `-DFOREGROUND`) are accepted and ignored; `-v`/`-V` print a
//! version line and `-t` reports the configuration as fine, then exit 0.

use anyhow::bail;
use http::StatusCode;

use crate::net::BindHost;
use crate::static_site::{self, Invocation, Site};

const INDEX_PAGE: &str = "<html><body><h1>It works!</h1></body></html>\n";

/// httpd's flags that take a value; accepted and ignored.
const IGNORED_VALUE_FLAGS: &[&str] = &["-D", "-f", "-C", "-c", "-d", "-e", "-E", "-k"];

static HTTPD: Site = Site {
    name: "httpd",
    server_header: "Apache",
    pages: &[("/", INDEX_PAGE), ("/index.html", INDEX_PAGE)],
    error_page,
};

/// Apache's style of error page.
fn error_page(status: StatusCode) -> String {
    let reason = status.canonical_reason().unwrap_or("Error");
    let explanation = match status {
        StatusCode::NOT_FOUND => "The requested URL was not found on this server.",
        StatusCode::METHOD_NOT_ALLOWED => "The requested method is not allowed for this URL.",
        StatusCode::FORBIDDEN => "You don't have permission to access this resource.",
        _ => "Your browser sent a request that this server could not understand.",
    };
    format!(
        "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>{} {reason}</title>\n\
         </head><body>\n<h1>{reason}</h1>\n<p>{explanation}</p>\n</body></html>\n",
        status.as_u16()
    )
}

pub async fn run(argv: &[String], bind: BindHost) -> anyhow::Result<i32> {
    let invocation = static_site::parse_args(argv, |flag, value| match flag {
        "-v" | "-V" => {
            outln!("Server version: Apache (built into skiff)");
            Ok(Some(0))
        }
        "-t" => {
            outln!("Syntax OK");
            Ok(Some(0))
        }
        "-X" => Ok(None),
        // `-DFOREGROUND` and the like: a define glued to its flag.
        flag if flag.starts_with("-D") && flag.len() > 2 => Ok(None),
        flag if IGNORED_VALUE_FLAGS.contains(&flag) => value().map(|_| None),
        other => bail!("httpd: illegal option {other:?}"),
    })?;
    match invocation {
        Invocation::Serve { port, root } => static_site::run(&HTTPD, port, root, bind).await,
        Invocation::Exit(code) => Ok(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_pages_name_the_status() {
        let page = error_page(StatusCode::NOT_FOUND);
        assert!(page.contains("<title>404 Not Found</title>") && page.contains("<h1>Not Found</h1>"), "{page}");
    }
}
