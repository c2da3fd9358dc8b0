//! Which container images skiff has a built-in program for, and the argv that program runs with.
//!
//! Pods are processes, not images: skiff never pulls an image. For a few well-known images it
//! runs a program of its own (`skiff builtin <argv…>`) that answers the way the image's program
//! does. The node agent asks [`builtin_for_image`] about a container's image and, on a match,
//! [`Builtin::argv`] turns the container's `command`/`args` into the argv after `skiff builtin`.
//!
//! `command`/`args` follow the Kubernetes rules against the image's own ENTRYPOINT and CMD
//! (which skiff knows for each built-in image):
//!
//! | `command` | `args` | the container runs        |
//! |-----------|--------|---------------------------|
//! | empty     | empty  | ENTRYPOINT + CMD          |
//! | empty     | set    | ENTRYPOINT + `args`       |
//! | set       | empty  | `command`                 |
//! | set       | set    | `command` + `args`        |
//!
//! If that program is the image's built-in one (e.g. `/agnhost netexec …`, `nginx -g …`), the
//! result is `Some(argv)`. Otherwise (`command: ["sh", "-c", …]` on an agnhost image) the result
//! is `None`: the container runs something that is not built in, and the agent treats it like an
//! image without a built-in program (`command`, or else `args`, runs from the host filesystem).

/// A program skiff has built in for some images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// `registry.k8s.io/e2e-test-images/agnhost` (and its older registries): the Kubernetes e2e
    /// test server. ENTRYPOINT `/agnhost`, CMD `pause`.
    Agnhost,
    /// `nginx`, `docker.io/library/nginx`, `registry.k8s.io/e2e-test-images/nginx`, …: a static
    /// web server on port 80. ENTRYPOINT `/docker-entrypoint.sh`, CMD `nginx -g "daemon off;"`.
    Nginx,
    /// `httpd`, `registry.k8s.io/e2e-test-images/httpd`, …: Apache's "It works!" on port 80.
    /// No ENTRYPOINT, CMD `httpd-foreground`.
    Httpd,
    /// `hashicorp/http-echo`: answers its `-text` on port 5678. ENTRYPOINT `/http-echo`.
    HttpEcho,
    /// `registry.k8s.io/pause`: sleeps until it is told to stop. ENTRYPOINT `/pause`.
    Pause,
}

/// The built-in program for `image`, if skiff has one.
///
/// Matching is on the image's repository name (the last path component, without registry, tag
/// or digest), so mirrors and private registries match too: `…/agnhost`, `…/nginx`, `…/httpd`,
/// `…/http-echo`, `…/pause`.
pub fn builtin_for_image(image: &str) -> Option<Builtin> {
    match repository_name(image)? {
        "agnhost" => Some(Builtin::Agnhost),
        "nginx" => Some(Builtin::Nginx),
        "httpd" => Some(Builtin::Httpd),
        "http-echo" => Some(Builtin::HttpEcho),
        "pause" => Some(Builtin::Pause),
        _ => None,
    }
}

impl Builtin {
    /// The program name, i.e. the first word after `skiff builtin`.
    pub fn program(self) -> &'static str {
        match self {
            Builtin::Agnhost => "agnhost",
            Builtin::Nginx => "nginx",
            Builtin::Httpd => "httpd",
            Builtin::HttpEcho => "http-echo",
            Builtin::Pause => "pause",
        }
    }

    /// The argv after `skiff builtin` for a container of this image with the given `command` and
    /// `args`, or `None` when they run a program that is not built in (see the module docs).
    ///
    /// Examples (agnhost): no command/args → `["agnhost", "pause"]`; `args: ["netexec",
    /// "--http-port=8080"]` → `["agnhost", "netexec", "--http-port=8080"]`; `command:
    /// ["/agnhost", "serve-hostname"]` → `["agnhost", "serve-hostname"]`; `command: ["sh"]` → `None`.
    /// When the container names agnhost by another path (`/agnhost-2`, the image's symlink, or
    /// `agnhost`), `--argv0=<path>` follows `agnhost` so `entrypoint-tester` can print it.
    pub fn argv(self, command: &[String], args: &[String]) -> Option<Vec<String>> {
        let (entrypoint, cmd): (&[&str], &[&str]) = match self {
            Builtin::Agnhost => (&["/agnhost"], &["pause"]),
            Builtin::Nginx => (&["/docker-entrypoint.sh"], &["nginx", "-g", "daemon off;"]),
            Builtin::Httpd => (&[], &["httpd-foreground"]),
            Builtin::HttpEcho => (&["/http-echo"], &[]),
            Builtin::Pause => (&["/pause"], &[]),
        };
        let effective: Vec<String> = if !command.is_empty() {
            command.iter().chain(args).cloned().collect()
        } else if !args.is_empty() {
            entrypoint.iter().map(|s| s.to_string()).chain(args.iter().cloned()).collect()
        } else {
            entrypoint.iter().chain(cmd).map(|s| s.to_string()).collect()
        };
        self.recognise(&effective)
    }

    /// The built-in argv for a full container argv, if its program is this image's built-in one.
    fn recognise(self, argv: &[String]) -> Option<Vec<String>> {
        let (first, rest) = argv.split_first()?;
        let known: &[&str] = match self {
            // The image also has `agnhost-2`, a symlink used by entrypoint tests.
            Builtin::Agnhost => &["agnhost", "agnhost-2"],
            Builtin::Nginx => &["nginx"],
            Builtin::Httpd => &["httpd-foreground", "httpd"],
            Builtin::HttpEcho => &["http-echo"],
            Builtin::Pause => &["pause"],
        };
        let program = basename(first);
        if self == Builtin::Nginx && program == "docker-entrypoint.sh" {
            // The image's entrypoint script ends by exec'ing its arguments.
            return self.recognise(rest);
        }
        if !known.contains(&program) {
            return None;
        }
        let mut builtin = vec![self.program().to_owned()];
        if self == Builtin::Agnhost && first != "/agnhost" {
            // agnhost's entrypoint-tester prints the path it was started as (`/agnhost-2`).
            builtin.push(format!("--argv0={first}"));
        }
        builtin.extend(rest.iter().cloned());
        Some(builtin)
    }
}

/// The last path component of a command (`/usr/sbin/nginx` → `nginx`).
fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The repository name of an image reference: `registry.k8s.io/e2e-test-images/agnhost:2.53`
/// → `agnhost`, `localhost:5000/nginx@sha256:…` → `nginx`. `None` for an empty reference.
fn repository_name(image: &str) -> Option<&str> {
    let image = image.trim();
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    // A ':' in the last component starts the tag (a registry port is never in the last one).
    let name = last.split(':').next().unwrap_or(last);
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn recognises_agnhost_registries_tags_and_digests() {
        for image in [
            "registry.k8s.io/e2e-test-images/agnhost:2.53",
            "k8s.gcr.io/e2e-test-images/agnhost:2.39",
            "gcr.io/kubernetes-e2e-test-images/agnhost:2.8",
            "registry.k8s.io/e2e-test-images/agnhost@sha256:0123abcd",
            "localhost:5000/agnhost:latest",
            "agnhost",
        ] {
            assert_eq!(builtin_for_image(image), Some(Builtin::Agnhost), "{image}");
        }
    }

    #[test]
    fn recognises_nginx_and_pause() {
        for image in [
            "nginx",
            "nginx:1.27",
            "docker.io/library/nginx:latest",
            "docker.io/nginx",
            "registry.k8s.io/e2e-test-images/nginx:1.15-4",
            "public.ecr.aws/nginx/nginx:stable",
        ] {
            assert_eq!(builtin_for_image(image), Some(Builtin::Nginx), "{image}");
        }
        for image in ["registry.k8s.io/pause:3.10", "k8s.gcr.io/pause:3.2", "gcr.io/google_containers/pause"] {
            assert_eq!(builtin_for_image(image), Some(Builtin::Pause), "{image}");
        }
    }

    #[test]
    fn other_images_have_no_builtin() {
        for image in [
            "",
            "busybox",
            "registry.k8s.io/ingress-nginx/controller:v1.11.0",
            "nginxinc/nginx-unprivileged",
            "registry.k8s.io/e2e-test-images/busybox:1.36",
            "nginx/other",
            "localhost:5000/",
        ] {
            assert_eq!(builtin_for_image(image), None, "{image:?}");
        }
    }

    #[test]
    fn agnhost_command_and_args_follow_entrypoint_rules() {
        let agnhost = Builtin::Agnhost;
        assert_eq!(agnhost.argv(&[], &[]), Some(strings(&["agnhost", "pause"])));
        assert_eq!(
            agnhost.argv(&[], &strings(&["netexec", "--http-port=8080"])),
            Some(strings(&["agnhost", "netexec", "--http-port=8080"]))
        );
        assert_eq!(
            agnhost.argv(&strings(&["/agnhost", "serve-hostname"]), &strings(&["--port", "80"])),
            Some(strings(&["agnhost", "serve-hostname", "--port", "80"]))
        );
        // A command replaces ENTRYPOINT *and* CMD.
        assert_eq!(agnhost.argv(&strings(&["/agnhost"]), &[]), Some(strings(&["agnhost"])));
        // Another path to the program is passed on for entrypoint-tester to print.
        assert_eq!(
            agnhost.argv(&strings(&["/agnhost-2"]), &strings(&["entrypoint-tester", "a"])),
            Some(strings(&["agnhost", "--argv0=/agnhost-2", "entrypoint-tester", "a"]))
        );
        assert_eq!(agnhost.argv(&strings(&["sh", "-c", "sleep 1"]), &[]), None);
    }

    #[test]
    fn nginx_sees_through_the_entrypoint_script() {
        let nginx = Builtin::Nginx;
        assert_eq!(nginx.argv(&[], &[]), Some(strings(&["nginx", "-g", "daemon off;"])));
        assert_eq!(
            nginx.argv(&[], &strings(&["nginx", "-g", "daemon off;"])),
            Some(strings(&["nginx", "-g", "daemon off;"]))
        );
        assert_eq!(nginx.argv(&strings(&["/usr/sbin/nginx"]), &[]), Some(strings(&["nginx"])));
        // args only: the entrypoint script would exec them, and `sh` is not built in.
        assert_eq!(nginx.argv(&[], &strings(&["sh", "-c", "echo hi"])), None);
        assert_eq!(nginx.argv(&strings(&["/docker-entrypoint.sh"]), &[]), None);
    }

    #[test]
    fn httpd_and_http_echo() {
        assert_eq!(builtin_for_image("registry.k8s.io/e2e-test-images/httpd:2.4.38-4"), Some(Builtin::Httpd));
        assert_eq!(builtin_for_image("httpd:2.4"), Some(Builtin::Httpd));
        assert_eq!(Builtin::Httpd.argv(&[], &[]), Some(strings(&["httpd"])));
        // No ENTRYPOINT: args alone are the program.
        assert_eq!(Builtin::Httpd.argv(&[], &strings(&["httpd-foreground", "-X"])), Some(strings(&["httpd", "-X"])));
        assert_eq!(Builtin::Httpd.argv(&[], &strings(&["sleep", "9"])), None);
        assert_eq!(builtin_for_image("hashicorp/http-echo:1.0"), Some(Builtin::HttpEcho));
        assert_eq!(Builtin::HttpEcho.argv(&[], &strings(&["-text=foo"])), Some(strings(&["http-echo", "-text=foo"])));
    }

    #[test]
    fn pause_runs_unless_a_command_replaces_it() {
        assert_eq!(Builtin::Pause.argv(&[], &[]), Some(strings(&["pause"])));
        assert_eq!(Builtin::Pause.argv(&strings(&["/pause"]), &[]), Some(strings(&["pause"])));
        assert_eq!(Builtin::Pause.argv(&strings(&["sleep", "10"]), &[]), None);
    }
}
