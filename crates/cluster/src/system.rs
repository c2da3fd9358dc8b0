//! The system workloads `skiff up` installs once the nodes are Ready: cluster DNS as a
//! Deployment in kube-system behind Service kube-dns (10.96.0.10), the way kubeadm installs
//! CoreDNS, and the Ingress controller in skiff-ingress behind a LoadBalancer Service. Pods run the skiff binary itself (image `skiff.io/skiff`, see the agent's image
//! table), with the in-cluster configuration the agent mounts.

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::IngressClass;
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
    install_ingress(client).await
}

/// The Ingress controller as ingress-nginx's installation does it: its own namespace, a
/// Deployment behind a LoadBalancer Service (ports 80 and 443, an address from the node
/// network's pool), and IngressClass `skiff`, marked default, naming the controller.
async fn install_ingress(client: &kube::Client) -> Result<()> {
    let ns = INGRESS_NAMESPACE;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    create_or_replace(&namespaces, ns, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
        .await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let account =
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "skiff-ingress", "namespace": ns}});
    create_or_replace(&accounts, "skiff-ingress", account).await?;
    let classes: Api<IngressClass> = Api::all(client.clone());
    create_or_replace(&classes, "skiff", ingress_class()).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    create_or_replace(&services, "skiff-ingress", ingress_service()).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    create_or_replace(&deployments, "skiff-ingress", ingress_deployment()).await
}

/// Namespace of the Ingress controller's pods and LoadBalancer Service.
pub const INGRESS_NAMESPACE: &str = "skiff-ingress";

fn ingress_labels() -> serde_json::Value {
    json!({"app.kubernetes.io/name": "skiff-ingress", "app.kubernetes.io/component": "controller"})
}

fn ingress_class() -> serde_json::Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "skiff", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": "skiff.io/ingress-controller"},
    })
}

fn ingress_service() -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "skiff-ingress", "namespace": INGRESS_NAMESPACE, "labels": ingress_labels()},
        "spec": {
            "type": "LoadBalancer",
            "selector": ingress_labels(),
            "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https"},
            ],
        },
    })
}

fn ingress_deployment() -> serde_json::Value {
    let publish = format!("{INGRESS_NAMESPACE}/skiff-ingress");
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "skiff-ingress", "namespace": INGRESS_NAMESPACE, "labels": ingress_labels()},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": ingress_labels()},
            "template": {
                "metadata": {"labels": ingress_labels()},
                "spec": {
                    "serviceAccountName": "skiff-ingress",
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "controller",
                        "image": SKIFF_IMAGE,
                        "args": ["ingress", "--http-listen", "0.0.0.0:80", "--https-listen", "0.0.0.0:443",
                                 "--metrics-listen", "0.0.0.0:10254", "--publish-service", publish],
                        "ports": [
                            {"name": "http", "containerPort": 80, "protocol": "TCP"},
                            {"name": "https", "containerPort": 443, "protocol": "TCP"},
                            {"name": "metrics", "containerPort": 10254, "protocol": "TCP"},
                        ],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 10254}, "periodSeconds": 2},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 10254}, "periodSeconds": 10},
                    }],
                },
            },
        },
    })
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
