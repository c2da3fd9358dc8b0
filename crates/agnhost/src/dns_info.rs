//! `agnhost dns-suffix`, `dns-server-list` and `etc-hosts`: print what the pod's resolver is
//! configured with (the search list and the nameservers of /etc/resolv.conf, comma-separated)
//! or its /etc/hosts. DNS e2e tests run them with `kubectl exec` to check dnsPolicy/dnsConfig.

use anyhow::Context as _;

const RESOLV_CONF: &str = "/etc/resolv.conf";
const ETC_HOSTS: &str = "/etc/hosts";

/// Which file content a subcommand prints.
#[derive(Clone, Copy)]
pub enum Info {
    Suffixes,
    Servers,
    Hosts,
}

pub fn run(info: Info) -> anyhow::Result<i32> {
    match info {
        Info::Hosts => {
            let hosts = std::fs::read_to_string(ETC_HOSTS).with_context(|| format!("reading {ETC_HOSTS}"))?;
            outln!("{hosts}");
        }
        Info::Suffixes | Info::Servers => {
            let conf = std::fs::read_to_string(RESOLV_CONF).with_context(|| format!("reading {RESOLV_CONF}"))?;
            let keyword = if matches!(info, Info::Suffixes) { "search" } else { "nameserver" };
            outln!("{}", resolv_conf_values(&conf, keyword).join(","));
        }
    }
    Ok(0)
}

/// The values of every `keyword` line of a resolv.conf; a later `search` line replaces an
/// earlier one, as in the resolver.
fn resolv_conf_values(conf: &str, keyword: &str) -> Vec<String> {
    let mut values = Vec::new();
    for line in conf.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some(keyword) {
            continue;
        }
        if keyword == "search" {
            values.clear();
        }
        values.extend(words.take_while(|w| !w.starts_with('#') && !w.starts_with(';')).map(str::to_owned));
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_search_and_nameservers() {
        let conf = "# generated\nnameserver 10.96.0.10\nsearch a.svc.cluster.local svc.cluster.local cluster.local\n\
                    options ndots:5\nnameserver 1.1.1.1 # second\n";
        assert_eq!(resolv_conf_values(conf, "search"), ["a.svc.cluster.local", "svc.cluster.local", "cluster.local"]);
        assert_eq!(resolv_conf_values(conf, "nameserver"), ["10.96.0.10", "1.1.1.1"]);
        assert!(resolv_conf_values("", "search").is_empty());
    }
}
