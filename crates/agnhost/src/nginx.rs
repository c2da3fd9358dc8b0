//! `skiff builtin nginx`: stands in for the nginx image's default server (see
//! [`crate::static_site`]). It listens on port 80 (`--port N` to change; skiff's own flag), answers
//! `GET /` and `/index.html` with a welcome page titled "Welcome to nginx!", `/50x.html` with an
//! error page and other paths with nginx's 404 page, all with `Server: nginx`. With `--root DIR`
//! (skiff's own flag) it serves the files under DIR instead, like the image's
//! `/usr/share/nginx/html` with a volume mounted there.
//!
//! nginx's own flags in pod specs (`-g "daemon off;"`, `-c FILE`, `-p DIR`, `-e FILE`, `-q`) are
//! accepted and ignored; `-v`/`-V` print a version line and `-t`/`-T` report the configuration
//! as fine, then exit 0.

use anyhow::bail;
use http::StatusCode;

use crate::net::BindHost;
use crate::static_site::{self, Invocation, Site};

const WELCOME_PAGE: &str = "<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
<style>
body { max-width: 40em; margin: 2em auto; font-family: sans-serif; }
</style>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>This is the default page of the nginx image, served by skiff's built-in web server: in skiff a
pod runs as processes in its own namespaces, without pulling the image.</p>
</body>
</html>
";

const ERROR_PAGE: &str = "<!DOCTYPE html>
<html>
<head>
<title>Error</title>
</head>
<body>
<h1>An error occurred.</h1>
<p>The page you are looking for is currently unavailable. Please try again later.</p>
</body>
</html>
";

/// nginx's flags that take a value; accepted and ignored.
const IGNORED_VALUE_FLAGS: &[&str] = &["-g", "-c", "-p", "-e"];

static NGINX: Site = Site {
    name: "nginx",
    server_header: "nginx",
    pages: &[("/", WELCOME_PAGE), ("/index.html", WELCOME_PAGE), ("/50x.html", ERROR_PAGE)],
    error_page,
};

/// nginx's built-in error page.
fn error_page(status: StatusCode) -> String {
    let title = match status {
        StatusCode::METHOD_NOT_ALLOWED => "405 Not Allowed".to_owned(),
        status => format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or_default()),
    };
    format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n\
         <hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
}

pub async fn run(argv: &[String], bind: BindHost) -> anyhow::Result<i32> {
    let invocation = static_site::parse_args(argv, |flag, value| match flag {
        "-v" | "-V" => {
            outln!("nginx version: nginx (built into skiff)");
            Ok(Some(0))
        }
        "-t" | "-T" => {
            outln!("nginx: the configuration is built into skiff\nnginx: configuration test is successful");
            Ok(Some(0))
        }
        "-q" => Ok(None),
        "-s" => bail!("nginx -s: skiff's built-in nginx has no master process to signal"),
        flag if IGNORED_VALUE_FLAGS.contains(&flag) => value().map(|_| None),
        other => bail!("nginx: invalid option: {other:?}"),
    })?;
    match invocation {
        Invocation::Serve { port, root } => static_site::run(&NGINX, port, root, bind).await,
        Invocation::Exit(code) => Ok(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_pages_name_the_status() {
        assert!(error_page(StatusCode::NOT_FOUND).contains("<title>404 Not Found</title>"));
        assert!(error_page(StatusCode::METHOD_NOT_ALLOWED).contains("<h1>405 Not Allowed</h1>"));
    }
}
