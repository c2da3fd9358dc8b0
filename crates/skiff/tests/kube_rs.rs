//! kube-rs against `skiff server`: a `watcher` + `reflector` on Services must see every change
//! (in commit order, without relisting) and its store must converge; `Api::patch` with
//! strategic and merge patches and `Api::delete` behave like upstream.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{reflector, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::mpsc;

use common::TestServer;

const NAMESPACE: &str = "kube-rs";
const WAIT: Duration = Duration::from_secs(15);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

/// A client configured from the kubeconfig the server wrote (CA + admin client certificate).
async fn client(s: &TestServer) -> Client {
    let kubeconfig = Kubeconfig::read_from(&s.kubeconfig).expect("reading kubeconfig");
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("kube config");
    Client::try_from(config).expect("kube client")
}

/// Creates the test namespace and returns the Service API inside it.
async fn services(client: &Client) -> Api<Service> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns =
        Namespace { metadata: ObjectMeta { name: Some(NAMESPACE.into()), ..Default::default() }, ..Default::default() };
    namespaces.create(&PostParams::default(), &ns).await.expect("creating namespace");
    Api::namespaced(client.clone(), NAMESPACE)
}

fn service(name: &str, ports: &[(&str, i32)]) -> Service {
    Service {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([("app".to_owned(), name.to_owned())])),
            ports: Some(
                ports
                    .iter()
                    .map(|(port_name, port)| ServicePort {
                        name: Some((*port_name).to_owned()),
                        port: *port,
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn port_numbers(svc: &Service) -> Vec<i32> {
    let mut ports: Vec<i32> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(|p| p.iter().map(|p| p.port).collect())
        .unwrap_or_default();
    ports.sort_unstable();
    ports
}

fn resource_version(svc: &Service) -> u64 {
    let rv = svc.resource_version().unwrap_or_default();
    rv.parse().unwrap_or_else(|_| panic!("resourceVersion {rv:?} of {} is not a revision", svc.name_any()))
}

/// What the test sees of one watcher event.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Init,
    InitDone,
    Apply { name: String, rv: u64 },
    Delete { name: String, rv: u64 },
    Error(String),
}

#[test]
fn watcher_and_reflector_see_every_change() {
    let s = TestServer::start();
    runtime().block_on(async {
        let client = client(&s).await;
        let api = services(&client).await;
        api.create(&PostParams::default(), &service("before-watch", &[("http", 80)])).await.expect("create");

        let (store, writer) = reflector::store();
        let stream = reflector(writer, watcher(api.clone(), watcher::Config::default()));
        let (tx, mut events) = mpsc::unbounded_channel();
        let pump = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let seen = match event {
                    Ok(watcher::Event::Init) => Seen::Init,
                    Ok(watcher::Event::InitApply(_)) => continue,
                    Ok(watcher::Event::InitDone) => Seen::InitDone,
                    Ok(watcher::Event::Apply(svc)) => Seen::Apply { name: svc.name_any(), rv: resource_version(&svc) },
                    Ok(watcher::Event::Delete(svc)) => {
                        Seen::Delete { name: svc.name_any(), rv: resource_version(&svc) }
                    }
                    Err(e) => Seen::Error(e.to_string()),
                };
                if tx.send(seen).is_err() {
                    break;
                }
            }
        });
        tokio::time::timeout(WAIT, store.wait_until_ready()).await.expect("reflector ready in time").expect("ready");
        let initial: Vec<_> = store.state().iter().map(|s| s.name_any()).collect();
        assert_eq!(initial, ["before-watch"]);

        // Every kind of change, on several objects, interleaved.
        let pp = PostParams::default();
        let a = api.create(&pp, &service("a", &[("http", 80)])).await.expect("create a");
        let b = api.create(&pp, &service("b", &[("http", 80)])).await.expect("create b");
        let c = api.create(&pp, &service("c", &[("http", 80)])).await.expect("create c");
        let mut b2 = b.clone();
        b2.labels_mut().insert("updated".into(), "yes".into());
        let b2 = api.replace("b", &pp, &b2).await.expect("replace b");
        let c2 = api
            .patch(
                "c",
                &PatchParams::default(),
                &Patch::Strategic(serde_json::json!({"spec": {"ports": [{"name": "metrics", "port": 9090}]}})),
            )
            .await
            .expect("patch c");
        api.delete("a", &DeleteParams::default()).await.expect("delete a");
        let before = api.get("before-watch").await.expect("get before-watch");
        api.delete("before-watch", &DeleteParams::default()).await.expect("delete before-watch");

        let expected = vec![
            ("apply", "a", Some(resource_version(&a))),
            ("apply", "b", Some(resource_version(&b))),
            ("apply", "c", Some(resource_version(&c))),
            ("apply", "b", Some(resource_version(&b2))),
            ("apply", "c", Some(resource_version(&c2))),
            ("delete", "a", None),
            ("delete", "before-watch", None),
        ];
        let mut seen = Vec::new();
        while seen.len() < expected.len() {
            let event = tokio::time::timeout(WAIT, events.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out; saw {seen:?}"))
                .expect("watch stream ended");
            match event {
                // The initial list, before our changes.
                Seen::Init | Seen::InitDone if seen.is_empty() => {}
                Seen::Apply { .. } | Seen::Delete { .. } => seen.push(event),
                other => panic!("unexpected {other:?} (a relist or a watch error) after {seen:?}"),
            }
        }
        let got: Vec<_> = seen
            .iter()
            .map(|e| match e {
                Seen::Apply { name, rv } => ("apply", name.as_str(), Some(*rv)),
                Seen::Delete { name, .. } => ("delete", name.as_str(), None),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, expected, "every change, once, in commit order");
        let revisions: Vec<u64> = seen
            .iter()
            .map(|e| match e {
                Seen::Apply { rv, .. } | Seen::Delete { rv, .. } => *rv,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(revisions.windows(2).all(|w| w[0] < w[1]), "resourceVersions increase: {revisions:?}");
        assert!(revisions[0] > resource_version(&before), "{revisions:?}");

        // The store converged to exactly what the server holds.
        let mut names: Vec<_> = store.state().iter().map(|s| s.name_any()).collect();
        names.sort();
        assert_eq!(names, ["b", "c"]);
        for live in api.list(&Default::default()).await.expect("list").items {
            let cached = store.state().into_iter().find(|s| s.name_any() == live.name_any()).expect("cached");
            assert_eq!(cached.resource_version(), live.resource_version(), "{}", live.name_any());
            assert_eq!(*cached, live, "cache equals the server's object");
        }
        let cached_b = store.state().into_iter().find(|s| s.name_any() == "b").expect("b");
        assert_eq!(cached_b.labels().get("updated").map(String::as_str), Some("yes"));
        let cached_c = store.state().into_iter().find(|s| s.name_any() == "c").expect("c");
        assert_eq!(port_numbers(&cached_c), [80, 9090]);
        pump.abort();
    });
}

#[test]
fn api_patch_strategic_merge_and_delete() {
    let s = TestServer::start();
    runtime().block_on(async {
        let client = client(&s).await;
        let api = services(&client).await;
        let pp = PatchParams::default();
        let created = api.create(&PostParams::default(), &service("web", &[("http", 80)])).await.expect("create");
        let cluster_ip = created.spec.as_ref().and_then(|s| s.cluster_ip.clone()).expect("allocated clusterIP");

        // Strategic merge: the new port is merged in by its `port` key, the old one stays.
        let patched = api
            .patch(
                "web",
                &pp,
                &Patch::Strategic(serde_json::json!({"spec": {"ports": [{"name": "metrics", "port": 9090}]}})),
            )
            .await
            .expect("strategic patch");
        assert_eq!(port_numbers(&patched), [80, 9090]);
        // The same key again updates that entry in place.
        let patched = api
            .patch(
                "web",
                &pp,
                &Patch::Strategic(serde_json::json!({"spec": {"ports": [{"port": 9090, "targetPort": 9191}]}})),
            )
            .await
            .expect("strategic patch by key");
        let ports = patched.spec.as_ref().and_then(|s| s.ports.clone()).expect("ports");
        let metrics = ports.iter().find(|p| p.port == 9090).expect("9090");
        assert_eq!(metrics.name.as_deref(), Some("metrics"));
        assert_eq!(metrics.target_port, Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9191)));

        // JSON merge patch: maps merge (null deletes), lists are replaced wholesale.
        let patched = api
            .patch(
                "web",
                &pp,
                &Patch::Merge(serde_json::json!({
                    "metadata": {"labels": {"tier": "web"}},
                    "spec": {"selector": {"app": null, "name": "web"}, "ports": [{"name": "https", "port": 443}]}
                })),
            )
            .await
            .expect("merge patch");
        assert_eq!(port_numbers(&patched), [443]);
        assert_eq!(patched.labels().get("tier").map(String::as_str), Some("web"));
        let selector = patched.spec.as_ref().and_then(|s| s.selector.clone()).expect("selector");
        assert_eq!(selector, BTreeMap::from([("name".to_owned(), "web".to_owned())]));
        assert_eq!(patched.spec.as_ref().and_then(|s| s.cluster_ip.clone()), Some(cluster_ip));
        assert!(resource_version(&patched) > resource_version(&created));

        // An invalid patch is refused with the upstream Status.
        let err = api
            .patch("web", &pp, &Patch::Merge(serde_json::json!({"spec": {"ports": [{"port": 0}]}})))
            .await
            .expect_err("port 0 is invalid");
        match err {
            kube::Error::Api(status) => {
                assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"), "{status:?}");
            }
            other => panic!("expected an API error, got {other}"),
        }

        api.delete("web", &DeleteParams::default()).await.expect("delete");
        match api.get("web").await {
            Err(kube::Error::Api(status)) => {
                assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"), "{status:?}")
            }
            other => panic!("expected NotFound after delete, got {other:?}"),
        }
        assert!(api.get_opt("web").await.expect("get_opt").is_none());
        match api.delete("web", &DeleteParams::default()).await {
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 404, "{status:?}"),
            other => panic!("deleting twice must be NotFound, got {other:?}"),
        }
    });
}
