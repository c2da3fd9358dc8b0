//! What a container runs, since skiff has no images: the image's built-in program (agnhost,
//! nginx, pause: `skiff builtin …`, see skiff-agnhost), or else the container's `command`
//! (or, without one, its `args`) run from the node's filesystem, as for busybox/alpine-style
//! images without an entrypoint. A container with neither cannot run.

use std::path::Path;

/// Waiting reason of a container that has nothing to run.
pub const NO_PROGRAM_REASON: &str = "NoProgramForImage";

/// The argv a container runs, or why there is none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    Argv(Vec<String>),
    Missing(String),
}

/// Resolves `image` + `command`/`args`; `exe` is the skiff binary (for built-in programs).
pub fn resolve(image: &str, command: &[String], args: &[String], exe: &Path) -> Program {
    if is_skiff_image(image) {
        // The image whose entrypoint is skiff itself (system pods: DNS, ingress). `args`
        // are the subcommand; a `command` naming skiff means the same binary.
        let rest: Vec<String> = match command.split_first() {
            Some((first, tail)) if first == "skiff" || first.ends_with("/skiff") => {
                tail.iter().chain(args).cloned().collect()
            }
            Some(_) => return Program::Argv(command.iter().chain(args).cloned().collect()),
            None => args.to_vec(),
        };
        return Program::Argv(std::iter::once(exe.to_string_lossy().into_owned()).chain(rest).collect());
    }
    if let Some(builtin) = skiff_agnhost::builtin_for_image(image) {
        if let Some(argv) = builtin.argv(command, args) {
            let mut full = vec![exe.to_string_lossy().into_owned(), "builtin".to_owned()];
            full.extend(argv);
            return Program::Argv(full);
        }
    }
    if !command.is_empty() {
        return Program::Argv(command.iter().chain(args).cloned().collect());
    }
    if !args.is_empty() {
        return Program::Argv(args.to_vec());
    }
    Program::Missing(format!(
        "image {image:?} has no program built into skiff and the container sets no command or args; \
         set `command` to a program on the node (e.g. [\"sh\", \"-c\", \"...\"]) or use an agnhost, nginx or pause image"
    ))
}

/// `skiff.io/skiff`, with any tag or digest.
pub fn is_skiff_image(image: &str) -> bool {
    let name = image.split('@').next().unwrap_or(image);
    let name = match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    };
    name == SKIFF_IMAGE_REPOSITORY
}

/// Repository of the image that runs the skiff binary itself.
pub const SKIFF_IMAGE_REPOSITORY: &str = "skiff.io/skiff";

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn images_to_programs() {
        let exe = Path::new("/usr/bin/skiff");
        assert_eq!(
            resolve("registry.k8s.io/e2e-test-images/agnhost:2.47", &[], &s(&["netexec", "--http-port=8080"]), exe),
            Program::Argv(s(&["/usr/bin/skiff", "builtin", "agnhost", "netexec", "--http-port=8080"]))
        );
        assert_eq!(resolve("busybox", &s(&["sleep"]), &s(&["10"]), exe), Program::Argv(s(&["sleep", "10"])));
        assert_eq!(resolve("alpine:3", &[], &s(&["sh", "-c", "true"]), exe), Program::Argv(s(&["sh", "-c", "true"])));
        assert_eq!(
            resolve("agnhost", &s(&["sh", "-c", "echo"]), &[], exe),
            Program::Argv(s(&["sh", "-c", "echo"])),
            "a non-built-in command on a built-in image runs from the host"
        );
        assert!(matches!(resolve("redis:7", &[], &[], exe), Program::Missing(m) if m.contains("redis:7")));
        assert_eq!(
            resolve("skiff.io/skiff:latest", &[], &s(&["dns", "--listen", "0.0.0.0:53"]), exe),
            Program::Argv(s(&["/usr/bin/skiff", "dns", "--listen", "0.0.0.0:53"]))
        );
        assert_eq!(
            resolve("skiff.io/skiff", &s(&["skiff", "ingress"]), &[], exe),
            Program::Argv(s(&["/usr/bin/skiff", "ingress"]))
        );
        assert!(!is_skiff_image("skiff.io/skiffy:1"));
    }
}
