//! A watch-fed, in-memory copy of one resource type that reports every change as
//! "added", "updated (with the previous version)" or "deleted" — what client-go's
//! informers give upstream controllers and what kube-runtime's reflector does not.
//!
//! The workload controllers need the previous version (a pod whose labels changed must
//! wake the ReplicaSets it used to match) and the moment an object *first* appears (the
//! ReplicaSet controller counts observed creations against its expectations), so this
//! module drives kube-runtime's store [`Writer`] itself and compares before and after.
//!
//! The callback runs on the cache task right after the store changed, so anything it
//! looks up in any store already sees the new state. It must be quick: it only updates
//! bookkeeping and puts keys on work queues.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// One change to the cached collection, after the cache applied it.
pub enum Change<K> {
    /// The object was not in the cache before (it was created, or first seen on a list).
    Added(Arc<K>),
    /// A new version of an object the cache already held.
    Updated { old: Arc<K>, new: Arc<K> },
    /// The object is gone: a watch DELETED event, or absent from a re-list.
    Deleted(Arc<K>),
}

/// Starts watching `api` on a background task and returns the store it fills.
/// `on_change` sees every change once the store reflects it.
pub fn spawn<K>(api: Api<K>, what: &'static str, mut on_change: impl FnMut(Change<K>) + Send + 'static) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, mut writer) = reflector::store::<K>();
    let store = reader.clone();
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => apply(&mut writer, &reader, event, &mut on_change),
                Err(e) => tracing::warn!(resource = what, error = %e, "watch failed; retrying"),
            }
        }
        tracing::error!(resource = what, "watch stream ended");
    });
    store
}

fn apply<K>(
    writer: &mut reflector::store::Writer<K>,
    reader: &Store<K>,
    event: watcher::Event<K>,
    on_change: &mut impl FnMut(Change<K>),
) where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    match &event {
        watcher::Event::Apply(obj) => {
            let key = ObjectRef::from_obj(obj);
            let old = reader.get(&key);
            writer.apply_watcher_event(&event);
            let Some(new) = reader.get(&key) else { return };
            on_change(match old {
                None => Change::Added(new),
                Some(old) => Change::Updated { old, new },
            });
        }
        watcher::Event::Delete(obj) => {
            writer.apply_watcher_event(&event);
            on_change(Change::Deleted(Arc::new(obj.clone())));
        }
        watcher::Event::Init | watcher::Event::InitApply(_) => writer.apply_watcher_event(&event),
        watcher::Event::InitDone => {
            // A (re-)list replaces the whole store: report what differs from before, as
            // an informer's resync does, so no addition or deletion goes unnoticed.
            let before: HashMap<ObjectRef<K>, Arc<K>> =
                reader.state().into_iter().map(|o| (ObjectRef::from_obj(o.as_ref()), o)).collect();
            writer.apply_watcher_event(&event);
            let mut before = before;
            for new in reader.state() {
                match before.remove(&ObjectRef::from_obj(new.as_ref())) {
                    None => on_change(Change::Added(new)),
                    Some(old) if old.meta().resource_version != new.meta().resource_version => {
                        on_change(Change::Updated { old, new })
                    }
                    Some(_) => {}
                }
            }
            for (_, gone) in before {
                on_change(Change::Deleted(gone));
            }
        }
    }
}
