//! Following a kind of object through a kube-rs watch, as a plain sequence of changes.
//!
//! kube's watcher restarts itself (with backoff) whenever its watch breaks and then lists
//! everything again; it reports the listed objects one by one between `Init` and
//! `InitDone`. Here those are gathered into a single [`Change::Relisted`], so a cache can
//! replace its contents at once and notice what disappeared meanwhile.

use std::fmt::Debug;
use std::future::Future;

use futures::StreamExt;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// One change to the watched objects.
pub enum Change<K> {
    Applied(K),
    Deleted(K),
    /// Everything that exists now (the first list, or a list after the watch broke).
    Relisted(Vec<K>),
}

/// Follows `api` with `config` until the process ends, handing each change to `apply`,
/// with every object first turned into what the caller keeps of it by `convert` (so a
/// relist of ten thousand pods is buffered in compact form, not as full objects).
/// `listed` fires once the first complete list has been applied (the cache is warm).
/// Watch errors are logged and retried by the watcher's backoff; this only returns if
/// the watch stream itself ends, which is an error.
pub async fn follow<K, V, C, F>(
    api: Api<K>,
    config: watcher::Config,
    listed: oneshot::Sender<()>,
    convert: C,
    mut apply: F,
) -> anyhow::Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
    C: Fn(K) -> V,
    F: FnMut(Change<V>),
{
    let kind = K::kind(&()).into_owned();
    let mut listed = Some(listed);
    let mut buffer: Vec<V> = Vec::new();
    let mut stream = watcher(api, config).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(obj)) => apply(Change::Applied(convert(obj))),
            Ok(watcher::Event::Delete(obj)) => apply(Change::Deleted(convert(obj))),
            Ok(watcher::Event::Init) => buffer.clear(),
            Ok(watcher::Event::InitApply(obj)) => buffer.push(convert(obj)),
            Ok(watcher::Event::InitDone) => {
                apply(Change::Relisted(std::mem::take(&mut buffer)));
                if let Some(tx) = listed.take() {
                    let _ = tx.send(());
                }
            }
            Err(e) => tracing::warn!(%kind, error = %e, "watch failed; retrying"),
        }
    }
    anyhow::bail!("the watch of {kind} ended")
}

/// The tasks of one controller: its watches first, then its workers.
#[derive(Default)]
pub struct Tasks {
    set: JoinSet<anyhow::Result<()>>,
    listed: Vec<oneshot::Receiver<()>>,
}

impl Tasks {
    /// Starts following `api` (see [`follow`]).
    pub fn watch<K, V, C, F>(&mut self, api: Api<K>, config: watcher::Config, convert: C, apply: F)
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
        V: Send + 'static,
        C: Fn(K) -> V + Send + 'static,
        F: FnMut(Change<V>) + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.listed.push(rx);
        self.set.spawn(follow(api, config, tx, convert, apply));
    }

    /// Waits until every watch has listed once, like upstream's `WaitForCacheSync`: a
    /// controller must not decide anything from a partial cache.
    pub async fn wait_listed(&mut self) -> anyhow::Result<()> {
        for rx in std::mem::take(&mut self.listed) {
            if rx.await.is_err() {
                return match self.set.join_next().await {
                    Some(result) => result?,
                    None => Err(anyhow::anyhow!("a watch ended before listing")),
                };
            }
        }
        Ok(())
    }

    pub fn spawn(&mut self, task: impl Future<Output = anyhow::Result<()>> + Send + 'static) {
        self.set.spawn(task);
    }

    /// Runs until a task fails (they never end otherwise).
    pub async fn join(mut self) -> anyhow::Result<()> {
        while let Some(result) = self.set.join_next().await {
            result??;
        }
        Ok(())
    }
}
