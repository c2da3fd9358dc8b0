//! The files of `/var/run/secrets/kubernetes.io/serviceaccount`: `token`, `ca.crt` and
//! `namespace`, so in-cluster clients (client-go, kube-rs `Config::infer`) work.
//!
//! The token comes from the TokenRequest API (`serviceaccounts/<sa>/token`, bound to the
//! pod, as kubelet's projected volume) and is refreshed at 80% of its lifetime; servers
//! without TokenRequest are served from a legacy `kubernetes.io/service-account-token` Secret.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{bail, Result};
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::ipam::write_atomic;

/// Lifetime asked for, as kubelet (1 h plus a few seconds).
const TOKEN_SECONDS: i64 = 3607;

/// Whether the pod gets the service-account mount.
pub fn wants_token(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.automount_service_account_token).unwrap_or(true)
}

/// Writes the three files into `dir`; returns how soon the token should be refreshed.
/// `token_api_missing` remembers that the server has no TokenRequest API, so later pods
/// go straight to the Secret fallback.
pub async fn write_files(
    client: &kube::Client,
    pod: &Pod,
    ca_pem: &[u8],
    dir: &Path,
    token_api_missing: &AtomicBool,
) -> Result<Duration> {
    std::fs::create_dir_all(dir)?;
    let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    write_atomic(&dir.join("namespace"), namespace.as_bytes())?;
    write_atomic(&dir.join("ca.crt"), ca_pem)?;
    let (token, refresh) = fetch_token(client, pod, &namespace, token_api_missing).await?;
    write_atomic(&dir.join("token"), token.as_bytes())?;
    Ok(refresh)
}

async fn fetch_token(
    client: &kube::Client,
    pod: &Pod,
    namespace: &str,
    token_api_missing: &AtomicBool,
) -> Result<(String, Duration)> {
    let sa = pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into());
    if !token_api_missing.load(Ordering::Relaxed) {
        if let Some(found) = token_request(client, pod, namespace, &sa, token_api_missing).await? {
            return Ok(found);
        }
    }
    token_secret(client, namespace, &sa).await
}

/// A bound token from the TokenRequest API; None when the server has no such API.
async fn token_request(
    client: &kube::Client,
    pod: &Pod,
    namespace: &str,
    sa: &str,
    token_api_missing: &AtomicBool,
) -> Result<Option<(String, Duration)>> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": [], "expirationSeconds": TOKEN_SECONDS,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod.metadata.name, "uid": pod.metadata.uid}},
    });
    let answer = accounts
        .create_subresource::<serde_json::Value, serde_json::Value>("token", sa, &PostParams::default(), &request)
        .await;
    match answer {
        Ok(answer) => {
            let Some(token) = answer["status"]["token"].as_str() else { bail!("TokenRequest answer without a token") };
            Ok(Some((token.to_owned(), Duration::from_secs((TOKEN_SECONDS as u64) * 4 / 5))))
        }
        // A missing ServiceAccount is `serviceaccounts "<name>" not found`; any other 404 means
        // the server does not serve the subresource.
        Err(kube::Error::Api(e)) if (e.code == 404 && !e.message.contains("serviceaccounts \"")) || e.code == 405 => {
            tracing::info!("the API server has no TokenRequest API; using service-account token Secrets");
            token_api_missing.store(true, Ordering::Relaxed);
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// A legacy `kubernetes.io/service-account-token` Secret of the ServiceAccount.
async fn token_secret(client: &kube::Client, namespace: &str, sa: &str) -> Result<(String, Duration)> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let list = secrets.list(&ListParams::default().fields("type=kubernetes.io/service-account-token")).await;
    let items = match list {
        Ok(list) => list.items,
        // Servers without that field selector: filter here.
        Err(_) => secrets.list(&ListParams::default()).await?.items,
    };
    for secret in items {
        let for_sa = secret.metadata.annotations.as_ref().and_then(|a| a.get("kubernetes.io/service-account.name"));
        if secret.type_.as_deref() == Some("kubernetes.io/service-account-token")
            && for_sa.map(String::as_str) == Some(sa)
        {
            if let Some(token) = secret.data.as_ref().and_then(|d| d.get("token")) {
                return Ok((String::from_utf8_lossy(&token.0).into_owned(), Duration::from_secs(600)));
            }
        }
    }
    bail!("no token for ServiceAccount {namespace}/{sa}: the API server has no TokenRequest API and no token Secret exists")
}
