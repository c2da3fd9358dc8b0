//! Leader election over a `coordination.k8s.io/v1` Lease, as client-go's leaderelection
//! does: the holder renews `renewTime` every [`RENEW_INTERVAL`]; anyone may take the Lease
//! over once it has not been renewed for `leaseDurationSeconds`. Every write is a
//! compare-and-swap on the Lease's resourceVersion, so two replicas cannot both win.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::oneshot;

use crate::Context;

pub const LEASE_DURATION: Duration = Duration::from_secs(15);
pub const RENEW_INTERVAL: Duration = Duration::from_secs(2);
const RETRY_INTERVAL: Duration = Duration::from_secs(2);

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Whether a Lease held by someone else has expired.
fn expired(lease: &Lease) -> bool {
    let Some(spec) = &lease.spec else { return true };
    let Some(renew) = &spec.renew_time else { return true };
    let duration = spec.lease_duration_seconds.map(|s| s as i64).unwrap_or(LEASE_DURATION.as_secs() as i64);
    let age = k8s_openapi::jiff::Timestamp::now().duration_since(renew.0).as_secs();
    age > duration
}

/// Tries once to become (or stay) the holder. Returns true when we hold the Lease.
async fn try_acquire_or_renew(api: &Api<Lease>, name: &str, identity: &str) -> kube::Result<bool> {
    let existing = api.get_opt(name).await?;
    let mut lease = match existing {
        None => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(identity.into()),
                    lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        }
        Some(l) => l,
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let ours = spec.holder_identity.as_deref() == Some(identity);
    if !ours && !expired(&lease) {
        return Ok(false);
    }
    let spec = lease.spec.get_or_insert_with(Default::default);
    if !ours {
        spec.holder_identity = Some(identity.into());
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.lease_duration_seconds = Some(LEASE_DURATION.as_secs() as i32);
    spec.renew_time = Some(now());
    // replace() sends our resourceVersion: a concurrent writer makes this fail with 409.
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits until this replica leads, then keeps renewing in the background. The returned
/// receiver fires when leadership is lost (renewals failing for a whole lease duration).
pub async fn acquire(ctx: Arc<Context>) -> anyhow::Result<oneshot::Receiver<()>> {
    let api: Api<Lease> = Api::namespaced(ctx.client.clone(), &ctx.config.lease_namespace);
    let name = ctx.config.lease_name.clone();
    let identity = ctx.config.identity.clone();
    loop {
        match try_acquire_or_renew(&api, &name, &identity).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
        }
        tokio::time::sleep(RETRY_INTERVAL).await;
    }
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut last_ok = std::time::Instant::now();
        loop {
            tokio::time::sleep(RENEW_INTERVAL).await;
            match try_acquire_or_renew(&api, &name, &identity).await {
                Ok(true) => last_ok = std::time::Instant::now(),
                Ok(false) => break,
                Err(e) => tracing::warn!(error = %e, "renewing the leader lease failed"),
            }
            if last_ok.elapsed() > LEASE_DURATION {
                break;
            }
        }
        let _ = tx.send(());
    });
    Ok(rx)
}
