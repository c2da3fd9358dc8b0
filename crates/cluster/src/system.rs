//! The system workloads `skiff up` installs once the nodes are Ready: cluster DNS as a
//! Deployment in kube-system behind Service kube-dns (10.96.0.10), the way kubeadm installs
//! CoreDNS. Pods run the skiff binary itself (image `skiff.io/skiff`, see the agent's image
//! table), with the in-cluster configuration the agent mounts.

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::layout;

/// Image name the agent runs as the skiff binary itself.
pub const SKIFF_IMAGE: &str = "skiff.io/skiff:latest";

pub async fn install(client: &kube::Client) -> Result<()> {
    let ns = "kube-system";
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let account =
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "skiff-dns", "namespace": ns}});
    create_or_replace(&accounts, "skiff-dns", account).await?;
    create_or_replace(&services, "kube-dns", dns_service()).await?;
    create_or_replace(&deployments, "skiff-dns", dns_deployment()).await?;
    Ok(())
}

/// Creates the object, or merges it over an existing one (a re-run on the same store).
async fn create_or_replace<K>(api: &Api<K>, name: &str, object: serde_json::Value) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let typed: K = serde_json::from_value(object.clone()).context("building a system object")?;
    match api.create(&Default::default(), &typed).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            api.patch(name, &PatchParams::default(), &Patch::Merge(object)).await?;
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("creating {name}")),
    }
}

fn dns_labels() -> serde_json::Value {
    json!({"k8s-app": "kube-dns"})
}

fn dns_service() -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "skiff-dns"}},
        "spec": {
            "clusterIP": layout::CLUSTER_DNS.to_string(),
            "selector": dns_labels(),
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
            ],
        },
    })
}

fn dns_deployment() -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "skiff-dns", "namespace": "kube-system", "labels": dns_labels()},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": dns_labels()},
            "template": {
                "metadata": {"labels": dns_labels()},
                "spec": {
                    "serviceAccountName": "skiff-dns",
                    // As CoreDNS: the node's resolver for names outside the cluster.
                    "dnsPolicy": "Default",
                    "containers": [{
                        "name": "dns",
                        "image": SKIFF_IMAGE,
                        "args": ["dns", "--listen", "0.0.0.0:53", "--metrics-listen", "0.0.0.0:9153"],
                        "ports": [
                            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                            {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                            {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
                        ],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 9153}, "periodSeconds": 2},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 9153}, "periodSeconds": 10},
                    }],
                },
            },
        },
    })
}
