//! The files kubelet manages for every pod: `/etc/resolv.conf` (from `dnsPolicy` and
//! `dnsConfig`), `/etc/hosts` and the hostname. Pure functions of the pod spec, so they are
//! unit-tested here and bind-mounted into the pod by the container launcher.

use k8s_openapi::api::core::v1::Pod;

/// Upstream limits on the merged resolver configuration.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// Cluster-wide DNS settings of the agent.
#[derive(Clone, Debug)]
pub struct DnsSettings {
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
}

/// A parsed resolv.conf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl ResolvConf {
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => conf.nameservers.extend(words.next().map(str::to_owned)),
                Some("search") | Some("domain") => conf.searches = words.map(str::to_owned).collect(),
                Some("options") => conf.options.extend(words.map(str::to_owned)),
                _ => {}
            }
        }
        conf
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for ns in &self.nameservers {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// The pod's resolv.conf, from its DNS policy: `ClusterFirst` (the default; for hostNetwork pods
/// it falls back to `Default` as upstream), `ClusterFirstWithHostNet`, `Default` (the node's
/// resolver) or `None` (only `dnsConfig`). `dnsConfig` is merged into the result in every case.
pub fn resolv_conf(pod: &Pod, settings: &DnsSettings, node: &ResolvConf) -> ResolvConf {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec.and_then(|s| s.dns_policy.as_deref()).unwrap_or("ClusterFirst");
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    let mut conf = if policy == "None" {
        ResolvConf::default()
    } else if cluster && !settings.cluster_dns.is_empty() {
        let domain = &settings.cluster_domain;
        let mut searches = vec![format!("{namespace}.svc.{domain}"), format!("svc.{domain}"), domain.clone()];
        searches.extend(node.searches.iter().cloned());
        ResolvConf { nameservers: settings.cluster_dns.clone(), searches, options: vec!["ndots:5".to_owned()] }
    } else {
        node.clone()
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        conf.nameservers.extend(extra.nameservers.iter().flatten().cloned());
        conf.searches.extend(extra.searches.iter().flatten().cloned());
        for option in extra.options.iter().flatten() {
            let Some(name) = option.name.as_deref() else { continue };
            // A later option of the same name replaces the earlier one.
            conf.options.retain(|o| o.split(':').next() != Some(name));
            conf.options.push(match &option.value {
                Some(value) => format!("{name}:{value}"),
                None => name.to_owned(),
            });
        }
    }
    dedup(&mut conf.nameservers);
    conf.nameservers.truncate(MAX_NAMESERVERS);
    dedup(&mut conf.searches);
    conf.searches.truncate(MAX_SEARCHES);
    conf
}

fn dedup(items: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    items.retain(|i| seen.insert(i.clone()));
}

/// The pod's hostname: `spec.hostname`, or the pod name (cut to 63 characters as upstream).
pub fn hostname(pod: &Pod) -> String {
    let name = pod.spec.as_ref().and_then(|s| s.hostname.clone()).filter(|h| !h.is_empty());
    let mut name = name.unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    name.truncate(63);
    name.trim_end_matches(['-', '.']).to_owned()
}

/// `hostname.subdomain.<ns>.svc.<domain>` when the pod has a subdomain.
pub fn fqdn(pod: &Pod, cluster_domain: &str) -> Option<String> {
    let sub = pod.spec.as_ref()?.subdomain.as_deref().filter(|s| !s.is_empty())?;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    Some(format!("{}.{sub}.{ns}.svc.{cluster_domain}", hostname(pod)))
}

/// The kubelet-managed /etc/hosts of a pod with its own network namespace; hostNetwork pods get
/// the node's file (`node_hosts`) instead, both followed by the `hostAliases`.
pub fn hosts_file(pod: &Pod, pod_ip: &str, cluster_domain: &str, node_hosts: &str) -> String {
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
    let mut out = if host_network {
        node_hosts.to_owned()
    } else {
        let mut out = String::from("# Kubernetes-managed hosts file.\n");
        out.push_str("127.0.0.1\tlocalhost\n");
        out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
        out.push_str("fe00::0\tip6-localnet\n");
        out.push_str("fe00::0\tip6-mcastprefix\n");
        out.push_str("fe00::1\tip6-allnodes\n");
        out.push_str("fe00::2\tip6-allrouters\n");
        let name = hostname(pod);
        match fqdn(pod, cluster_domain) {
            Some(fqdn) => out.push_str(&format!("{pod_ip}\t{fqdn}\t{name}\n")),
            None => out.push_str(&format!("{pod_ip}\t{name}\n")),
        }
        out
    };
    let aliases = pod.spec.as_ref().and_then(|s| s.host_aliases.as_ref()).filter(|a| !a.is_empty());
    if let Some(aliases) = aliases {
        if !out.ends_with('\n') && !out.is_empty() {
            out.push('\n');
        }
        out.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            let names = alias.hostnames.clone().unwrap_or_default();
            if !names.is_empty() {
                out.push_str(&format!("{}\t{}\n", alias.ip, names.join("\t")));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "web-0", "namespace": "shop"}, "spec": spec})).unwrap()
    }

    fn settings() -> DnsSettings {
        DnsSettings { cluster_dns: vec!["10.96.0.10".into()], cluster_domain: "cluster.local".into() }
    }

    fn node() -> ResolvConf {
        ResolvConf::parse("nameserver 192.0.2.53\nsearch corp.example\noptions edns0\n")
    }

    #[test]
    fn cluster_first() {
        let conf = resolv_conf(&pod(json!({"containers": []})), &settings(), &node());
        assert_eq!(
            conf.render(),
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n\
             nameserver 10.96.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn host_network_policies() {
        let host = pod(json!({"containers": [], "hostNetwork": true}));
        assert_eq!(resolv_conf(&host, &settings(), &node()), node());
        let with = pod(json!({"containers": [], "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}));
        assert_eq!(resolv_conf(&with, &settings(), &node()).nameservers, vec!["10.96.0.10"]);
        let default = pod(json!({"containers": [], "dnsPolicy": "Default"}));
        assert_eq!(resolv_conf(&default, &settings(), &node()), node());
    }

    #[test]
    fn none_with_dns_config_and_merge() {
        let p = pod(json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["1.2.3.4"], "searches": ["a.example", "a.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}));
        assert_eq!(
            resolv_conf(&p, &settings(), &node()).render(),
            "search a.example\nnameserver 1.2.3.4\noptions ndots:2 edns0\n"
        );
        let merged = pod(json!({"containers": [], "dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}}));
        assert_eq!(resolv_conf(&merged, &settings(), &node()).options, vec!["ndots:1"]);
    }

    #[test]
    fn hosts_and_hostname() {
        let p = pod(json!({"containers": [], "hostname": "db", "subdomain": "backend",
            "hostAliases": [{"ip": "10.1.1.1", "hostnames": ["foo.local", "bar"]}]}));
        assert_eq!(hostname(&p), "db");
        let hosts = hosts_file(&p, "10.244.1.9", "cluster.local", "");
        assert!(hosts.contains("10.244.1.9\tdb.backend.shop.svc.cluster.local\tdb\n"), "{hosts}");
        assert!(hosts.contains("# Entries added by HostAliases.\n10.1.1.1\tfoo.local\tbar\n"), "{hosts}");
        let plain = pod(json!({"containers": []}));
        assert_eq!(hostname(&plain), "web-0");
        assert!(hosts_file(&plain, "10.244.1.9", "cluster.local", "").ends_with("10.244.1.9\tweb-0\n"));
    }
}
