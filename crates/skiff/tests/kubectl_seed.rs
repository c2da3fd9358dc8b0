//! kubectl v1.32 (validation on, the default) against `skiff server`, driven by the Service
//! manifests of seed 003: apply / re-apply / three-way merge, the printed columns, watch,
//! describe, label and annotate, the three patch types, deletes, optimistic concurrency,
//! the scale subresource, explain, server-side dry run, wait and the OpenAPI index.
//!
//! Every expectation is upstream kube-apiserver behaviour (see
//! /work/shared/reference/apiserver.md), not whatever skiff happens to print.

mod common;

use std::time::Duration;

use common::{LineStream, TestServer};

const SEED_SERVICES: &str = include_str!("fixtures/seed003/services.yaml");
const SEED_SERVICES_CHANGED: &str = include_str!("fixtures/seed003/services_changed.yaml");
const NUMBERS_API_CLUSTERIP: &str = include_str!("fixtures/seed003/numbers_api_clusterip.yaml");
const NUMBERS_API_EXTERNALNAME: &str = include_str!("fixtures/seed003/numbers_api_externalname.yaml");
const NUMBERS_API_SELECTORLESS: &str = include_str!("fixtures/seed003/numbers_api_selectorless.yaml");

const SEED_SERVICE_NAMES: [&str; 5] =
    ["numbers-api", "numbers-web", "numbers-web-node", "numbers-api-external", "numbers-api-headless"];

/// A server with the seed Services applied.
fn seeded() -> TestServer {
    let s = TestServer::start();
    s.apply(SEED_SERVICES);
    s
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn get_json(s: &TestServer, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    json(&s.kubectl_ok(&all))
}

/// The line kubectl printed for `kind/name` (`service/numbers-api unchanged`).
fn line_for<'a>(output: &'a str, object: &str) -> &'a str {
    output
        .lines()
        .find(|l| l.split_whitespace().next() == Some(object))
        .unwrap_or_else(|| panic!("no line for {object} in:\n{output}"))
}

/// `kubectl get` table rows keyed by NAME, each split on whitespace (no cell has spaces).
fn table_rows(output: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or_default().split_whitespace().map(str::to_owned).collect();
    let rows = lines.map(|l| l.split_whitespace().map(str::to_owned).collect()).collect();
    (header, rows)
}

fn row<'a>(rows: &'a [Vec<String>], name: &str) -> &'a [String] {
    rows.iter().find(|r| r.first().map(String::as_str) == Some(name)).unwrap_or_else(|| panic!("no row {name}"))
}

#[test]
fn seed_apply_reapply_and_three_way_merge() {
    let s = TestServer::start();
    let first = s.apply(SEED_SERVICES);
    for name in SEED_SERVICE_NAMES {
        assert_eq!(line_for(&first, &format!("service/{name}")), format!("service/{name} created"));
    }
    assert_eq!(line_for(&first, "endpoints/numbers-api-headless"), "endpoints/numbers-api-headless created");

    // Re-applying the same file sends no patch for any Service. (Endpoints print `configured`
    // upstream too: `subsets` is an atomic list and the server defaults `protocol` inside it.)
    let again = s.apply(SEED_SERVICES);
    for name in SEED_SERVICE_NAMES {
        assert_eq!(line_for(&again, &format!("service/{name}")), format!("service/{name} unchanged"));
    }

    let before = get_json(&s, &["svc", "numbers-api"]);
    let changed = s.apply(SEED_SERVICES_CHANGED);
    assert_eq!(line_for(&changed, "service/numbers-api"), "service/numbers-api configured");
    assert_eq!(line_for(&changed, "service/numbers-web-node"), "service/numbers-web-node configured");
    assert_eq!(line_for(&changed, "service/numbers-web"), "service/numbers-web unchanged");

    let api = get_json(&s, &["svc", "numbers-api"]);
    assert_eq!(api["metadata"]["labels"], serde_json::json!({"app": "numbers-api"}), "tier label must be removed");
    let ports: Vec<_> = api["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| (p["name"].clone(), p["port"].clone(), p["targetPort"].clone(), p["protocol"].clone()))
        .collect();
    assert_eq!(
        ports,
        vec![
            ("http".into(), 8081.into(), 80.into(), "TCP".into()),
            ("metrics".into(), 9090.into(), 9090.into(), "TCP".into()),
        ],
        "port 80 must be gone, 8081 and 9090 present with defaults"
    );
    assert_eq!(api["spec"]["clusterIP"], before["spec"]["clusterIP"], "clusterIP survives an apply");
    assert_eq!(api["metadata"]["uid"], before["metadata"]["uid"]);

    let node = get_json(&s, &["svc", "numbers-web-node"]);
    assert_eq!(node["spec"]["ports"].as_array().map(Vec::len), Some(1), "{node}");
    assert_eq!(node["spec"]["ports"][0]["port"], 8081);
    assert_eq!(node["spec"]["ports"][0]["nodePort"], 30080, "a Service keeps its own nodePort across edits");

    let last_applied = api["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .expect("last-applied annotation");
    assert!(!last_applied.contains("tier"), "{last_applied}");
}

/// The tutorial applies numbers-api three times under the same name: ClusterIP, then
/// ExternalName, then a selector-less ClusterIP with hand-written Endpoints. Type changes
/// clear and reallocate the ClusterIP like upstream's `dropTypeDependentFields`.
#[test]
fn seed_numbers_api_changes_type_like_the_tutorial() {
    let s = TestServer::start();
    s.apply(NUMBERS_API_CLUSTERIP);
    let cluster_ip = s.kubectl_ok(&["get", "svc", "numbers-api", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(cluster_ip.starts_with("10.96."), "{cluster_ip}");

    let out = s.apply(NUMBERS_API_EXTERNALNAME);
    assert_eq!(out.trim(), "service/numbers-api configured");
    let ext = get_json(&s, &["svc", "numbers-api"]);
    assert_eq!(ext["spec"]["type"], "ExternalName");
    assert_eq!(ext["spec"]["externalName"], "raw.githubusercontent.com");
    for gone in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "ports", "selector"] {
        assert!(ext["spec"].get(gone).is_none(), "spec.{gone} must be cleared: {}", ext["spec"]);
    }

    let out = s.apply(NUMBERS_API_SELECTORLESS);
    assert!(out.contains("service/numbers-api configured"), "{out}");
    assert!(out.contains("endpoints/numbers-api created"), "{out}");
    let svc = get_json(&s, &["svc", "numbers-api"]);
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert!(svc["spec"].get("externalName").is_none(), "{}", svc["spec"]);
    assert!(svc["spec"]["clusterIP"].as_str().is_some_and(|ip| ip.starts_with("10.96.")), "{}", svc["spec"]);
    let eps = s.kubectl_ok(&["get", "endpoints", "numbers-api", "-o", "jsonpath={.subsets[0].addresses[0].ip}"]);
    assert_eq!(eps, "192.168.123.234");
    let (header, rows) = table_rows(&s.kubectl_ok(&["get", "endpoints", "numbers-api"]));
    assert_eq!(header, ["NAME", "ENDPOINTS", "AGE"]);
    assert_eq!(row(&rows, "numbers-api")[1], "192.168.123.234:80");
}

#[test]
fn get_prints_upstream_service_columns() {
    let s = seeded();
    let (header, rows) = table_rows(&s.kubectl_ok(&["get", "svc"]));
    assert_eq!(header, ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);

    let api = row(&rows, "numbers-api");
    assert_eq!(&api[1..5], ["ClusterIP", api[2].as_str(), "<none>", "80/TCP"]);
    assert!(api[2].starts_with("10.96."), "{api:?}");
    let web = row(&rows, "numbers-web");
    assert_eq!(web[1], "LoadBalancer");
    assert_eq!(web[3], "<pending>", "a LoadBalancer without status shows <pending>");
    assert!(web[4].starts_with("8080:3") && web[4].ends_with("/TCP"), "allocated nodePort shown: {web:?}");
    let node = row(&rows, "numbers-web-node");
    assert_eq!(&node[3..5], ["<none>", "8080:30080/TCP"]);
    let ext = row(&rows, "numbers-api-external");
    assert_eq!(&ext[1..5], ["ExternalName", "<none>", "raw.githubusercontent.com", "<none>"]);
    let headless = row(&rows, "numbers-api-headless");
    assert_eq!(&headless[1..5], ["ClusterIP", "None", "<none>", "80/TCP"]);
    assert_eq!(row(&rows, "kubernetes")[2], "10.96.0.1");

    let (header, rows) = table_rows(&s.kubectl_ok(&["get", "svc", "-o", "wide"]));
    assert_eq!(header, ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]);
    assert_eq!(row(&rows, "numbers-web-node")[6], "app=numbers-web");
    assert_eq!(row(&rows, "numbers-api-headless")[6], "<none>");

    // -o yaml and -o jsonpath agree with the table.
    let yaml = s.kubectl_ok(&["get", "svc", "numbers-api", "-o", "yaml"]);
    assert!(yaml.starts_with("apiVersion: v1\nkind: Service\n"), "{yaml}");
    assert!(yaml.contains(&format!("clusterIP: {}\n", api[2])), "{yaml}");
    assert!(yaml.contains("resourceVersion: \""), "{yaml}");
    assert!(yaml.contains("uid: "), "{yaml}");
    let ip = s.kubectl_ok(&["get", "svc", "numbers-api", "-o", "jsonpath={.spec.clusterIP}"]);
    assert_eq!(ip, api[2]);
    let names = s.kubectl_ok(&["get", "svc", "-l", "app=numbers-api", "-o", "name"]);
    assert_eq!(names.trim(), "service/numbers-api");
}

#[test]
fn get_watch_sees_a_create() {
    let s = seeded();
    let mut cmd = s.kubectl_cmd();
    cmd.args(["get", "svc", "-w"]);
    let mut watch = LineStream::spawn(cmd);
    // The initial list is printed before the watch starts.
    watch.wait_for(Duration::from_secs(15), |l| l.starts_with("numbers-web-node "));
    let out = s.kubectl_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata: {name: watched}\nspec: {ports: [{port: 80}]}\n",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = watch.wait_for(Duration::from_secs(15), |l| l.starts_with("watched "));
    let cells: Vec<_> = line.split_whitespace().collect();
    assert_eq!(&cells[1..2], ["ClusterIP"], "{line}");
    assert_eq!(cells[4], "80/TCP", "{line}");
}

#[test]
fn describe_service() {
    let s = seeded();
    let out = s.kubectl_ok(&["describe", "svc", "numbers-web-node"]);
    let field = |name: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no {name}: line in\n{out}"))
    };
    assert_eq!(field("Name"), "numbers-web-node");
    assert_eq!(field("Namespace"), "default");
    assert_eq!(field("Selector"), "app=numbers-web");
    assert_eq!(field("Type"), "NodePort");
    assert!(field("IP").starts_with("10.96."), "{out}");
    assert_eq!(field("Port"), "<unset> 8080/TCP");
    assert_eq!(field("TargetPort"), "80/TCP");
    assert_eq!(field("NodePort"), "<unset> 30080/TCP");
    assert_eq!(field("External Traffic Policy"), "Cluster");
    assert_eq!(field("Session Affinity"), "None");
    assert_eq!(field("Events"), "<none>");

    let ext = s.kubectl_ok(&["describe", "svc", "numbers-api-external"]);
    assert!(ext.lines().any(|l| l.starts_with("External Name:") && l.ends_with("raw.githubusercontent.com")), "{ext}");
}

#[test]
fn label_and_annotate() {
    let s = seeded();
    let labels = |s: &TestServer| get_json(s, &["svc", "numbers-web"])["metadata"]["labels"].clone();
    let annotation = |s: &TestServer| {
        get_json(s, &["svc", "numbers-web"])["metadata"]["annotations"]
            .get("owner")
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };

    assert_eq!(s.kubectl_ok(&["label", "svc", "numbers-web", "env=prod"]).trim(), "service/numbers-web labeled");
    assert_eq!(labels(&s)["env"], "prod");
    let err = s.kubectl_err(&["label", "svc", "numbers-web", "env=dev"]);
    assert!(err.contains("'env' already has a value (prod), and --overwrite is false"), "{err}");
    s.kubectl_ok(&["label", "svc", "numbers-web", "env=dev", "--overwrite"]);
    assert_eq!(labels(&s)["env"], "dev");
    assert_eq!(s.kubectl_ok(&["label", "svc", "numbers-web", "env-"]).trim(), "service/numbers-web unlabeled");
    assert!(labels(&s).get("env").is_none(), "{}", labels(&s));

    // Several objects at once, by selector.
    s.kubectl_ok(&["label", "svc", "-l", "app=numbers-api", "team=numbers"]);
    assert_eq!(get_json(&s, &["svc", "numbers-api"])["metadata"]["labels"]["team"], "numbers");

    let out = s.kubectl_ok(&["annotate", "svc", "numbers-web", "owner=alice"]);
    assert_eq!(out.trim(), "service/numbers-web annotated");
    assert_eq!(annotation(&s), "alice");
    let err = s.kubectl_err(&["annotate", "svc", "numbers-web", "owner=bob"]);
    assert!(err.contains("--overwrite is false"), "{err}");
    s.kubectl_ok(&["annotate", "svc", "numbers-web", "owner=bob", "--overwrite"]);
    assert_eq!(annotation(&s), "bob");
    s.kubectl_ok(&["annotate", "svc", "numbers-web", "owner-"]);
    assert_eq!(annotation(&s), serde_json::Value::Null);
    // The apply annotation is untouched by all of this.
    let annotations = &get_json(&s, &["svc", "numbers-web"])["metadata"]["annotations"];
    assert!(annotations.get("kubectl.kubernetes.io/last-applied-configuration").is_some(), "{annotations}");
}

#[test]
fn patch_with_json_merge_and_strategic() {
    let s = seeded();
    let svc = |s: &TestServer| get_json(s, &["svc", "numbers-web"]);
    let rv0 = svc(&s)["metadata"]["resourceVersion"].clone();

    let out = s.kubectl_ok(&[
        "patch",
        "svc",
        "numbers-web",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/ports/0/port","value":8181},{"op":"add","path":"/metadata/labels","value":{"via":"json"}}]"#,
    ]);
    assert_eq!(out.trim(), "service/numbers-web patched");
    let after_json = svc(&s);
    assert_eq!(after_json["spec"]["ports"][0]["port"], 8181);
    assert_eq!(after_json["metadata"]["labels"]["via"], "json");
    assert_ne!(after_json["metadata"]["resourceVersion"], rv0);

    // merge patch: maps merge, null deletes, lists are replaced wholesale.
    s.kubectl_ok(&[
        "patch",
        "svc",
        "numbers-web",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"labels":{"via":null,"merge":"yes"}},"spec":{"selector":{"app":"web-v2"}}}"#,
    ]);
    let after_merge = svc(&s);
    assert_eq!(after_merge["metadata"]["labels"], serde_json::json!({"merge": "yes"}));
    assert_eq!(after_merge["spec"]["selector"], serde_json::json!({"app": "web-v2"}));

    // strategic merge patch (kubectl's default type): ports merge by their `port` key.
    s.kubectl_ok(&[
        "patch",
        "svc",
        "numbers-web",
        "--type",
        "strategic",
        "-p",
        r#"{"spec":{"ports":[{"port":8181,"name":"main"},{"port":9000,"name":"extra"}]}}"#,
    ]);
    let after_smp = svc(&s);
    let ports = after_smp["spec"]["ports"].as_array().expect("ports");
    assert_eq!(ports.len(), 2, "{ports:?}");
    let main = ports.iter().find(|p| p["port"] == 8181).expect("port 8181 kept");
    assert_eq!(main["name"], "main");
    assert_eq!(main["targetPort"], 80, "fields not in the patch survive the merge");
    assert_eq!(main["nodePort"], after_json["spec"]["ports"][0]["nodePort"], "its nodePort is kept");
    let extra = ports.iter().find(|p| p["port"] == 9000).expect("port 9000 added");
    assert!(extra["nodePort"].as_i64().is_some_and(|p| (30000..=32767).contains(&p)), "{extra}");

    // `$patch: delete` removes one entry by key.
    s.kubectl_ok(&["patch", "svc", "numbers-web", "-p", r#"{"spec":{"ports":[{"port":9000,"$patch":"delete"}]}}"#]);
    let ports = svc(&s)["spec"]["ports"].as_array().expect("ports").clone();
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(ports[0]["port"], 8181);
}

#[test]
fn delete_by_label_and_all_in_a_namespace() {
    let s = TestServer::start();
    s.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n");
    for (name, group) in [("a", "blue"), ("b", "blue"), ("c", "green")] {
        s.apply(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: team, labels: {{grp: {group}}}}}\n\
             spec: {{ports: [{{port: 80}}]}}\n"
        ));
    }
    let out = s.kubectl_ok(&["-n", "team", "delete", "svc", "-l", "grp=blue"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["service \"a\" deleted", "service \"b\" deleted"]);
    assert_eq!(s.kubectl_ok(&["-n", "team", "get", "svc", "-o", "name"]).trim(), "service/c");

    let out = s.kubectl_ok(&["-n", "team", "delete", "svc", "--all"]);
    assert_eq!(out.trim(), "service \"c\" deleted");
    let out = s.kubectl(&["-n", "team", "get", "svc"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "No resources found in team namespace.");
    // Nothing outside the namespace was touched.
    assert_eq!(s.kubectl_ok(&["get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"]), "10.96.0.1");
}

/// The tutorial warns that `kubectl delete svc --all` in `default` also deletes `kubernetes`.
/// Upstream lets it (no protection), and the API server's kubernetes-service controller
/// recreates it with the first IP of the range within its 10 s reconcile interval.
#[test]
fn delete_all_in_default_deletes_kubernetes_and_it_comes_back() {
    let s = seeded();
    let out = s.kubectl_ok(&["delete", "svc", "--all"]);
    assert!(out.lines().any(|l| l == "service \"kubernetes\" deleted"), "{out}");
    for name in SEED_SERVICE_NAMES {
        assert!(out.lines().any(|l| l == format!("service \"{name}\" deleted")), "{out}");
    }
    s.eventually("default/kubernetes to be recreated", Duration::from_secs(20), || {
        let out = s.kubectl(&["get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"]);
        (out.status.success() && out.stdout == b"10.96.0.1").then_some(())
    });
    let seed_left = s.kubectl_ok(&["get", "svc", "-o", "name"]);
    assert_eq!(seed_left.trim(), "service/kubernetes", "only kubernetes comes back");
}

#[test]
fn replace_with_a_stale_resource_version_conflicts() {
    let s = seeded();
    let stale = s.kubectl_ok(&["get", "svc", "numbers-api", "-o", "json"]);
    s.kubectl_ok(&["label", "svc", "numbers-api", "bump=1"]);
    let fresh = get_json(&s, &["svc", "numbers-api"]);

    let out = s.kubectl_stdin(&["replace", "-f", "-"], &stale);
    assert!(!out.status.success(), "replace with a stale resourceVersion must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "Error from server (Conflict): error when replacing \"STDIN\": Operation cannot be fulfilled on \
             services \"numbers-api\": the object has been modified; please apply your changes to the latest \
             version and try again"
        ),
        "{err}"
    );
    assert_eq!(get_json(&s, &["svc", "numbers-api"]), fresh, "the failed replace changed nothing");

    // With the current resourceVersion the same replace goes through.
    let mut current = json(&stale);
    current["metadata"]["resourceVersion"] = fresh["metadata"]["resourceVersion"].clone();
    current["metadata"]["labels"]["replaced"] = "yes".into();
    let out = s.kubectl_stdin(&["replace", "-f", "-"], &current.to_string());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "service/numbers-api replaced");
    assert_eq!(get_json(&s, &["svc", "numbers-api"])["metadata"]["labels"]["replaced"], "yes");
}

/// `kubectl create deployment|namespace|configmap` build typed objects and send them as
/// protobuf (`application/vnd.kubernetes.protobuf`), which kube-apiserver accepts.
#[test]
fn create_deployment_and_scale_it() {
    let s = TestServer::start();
    let out = s.kubectl_ok(&["create", "namespace", "apps"]);
    assert_eq!(out.trim(), "namespace/apps created");
    let out = s.kubectl_ok(&["-n", "apps", "create", "deployment", "web", "--image=nginx", "--replicas=2"]);
    assert_eq!(out.trim(), "deployment.apps/web created");
    let deploy = get_json(&s, &["-n", "apps", "deployment", "web"]);
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(deploy["spec"]["selector"]["matchLabels"]["app"], "web");
    assert_eq!(deploy["spec"]["template"]["spec"]["containers"][0]["image"], "nginx");

    let out = s.kubectl_ok(&["-n", "apps", "scale", "deployment", "web", "--replicas=5"]);
    assert_eq!(out.trim(), "deployment.apps/web scaled");
    assert_eq!(get_json(&s, &["-n", "apps", "deployment", "web"])["spec"]["replicas"], 5);
}

/// The scale subresource with a Deployment created by `kubectl apply` (JSON on the wire).
#[test]
fn scale_subresource_of_an_applied_deployment() {
    let s = TestServer::start();
    s.apply(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n  selector: \
         {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: \
         [{name: nginx, image: nginx}]}\n",
    );
    let generation = get_json(&s, &["deployment", "web"])["metadata"]["generation"].as_i64().expect("generation");

    let out = s.kubectl_ok(&["scale", "deployment", "web", "--replicas=5"]);
    assert_eq!(out.trim(), "deployment.apps/web scaled");
    let deploy = get_json(&s, &["deployment", "web"]);
    assert_eq!(deploy["spec"]["replicas"], 5);
    assert_eq!(deploy["metadata"]["generation"], generation + 1, "a spec change bumps generation");

    let scale = json(&s.kubectl_ok(&["get", "--raw", "/apis/apps/v1/namespaces/default/deployments/web/scale"]));
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 5);
    assert_eq!(scale["status"]["selector"], "app=web");

    // With a precondition kubectl GETs the Scale and PUTs it back.
    s.kubectl_ok(&["scale", "deployment", "web", "--current-replicas=5", "--replicas=3"]);
    assert_eq!(get_json(&s, &["deployment", "web"])["spec"]["replicas"], 3);
    let err = s.kubectl_err(&["scale", "deployment", "web", "--current-replicas=5", "--replicas=1"]);
    assert!(err.contains("replicas to be 5, was 3"), "{err}");
}

#[test]
fn explain_service_spec_ports() {
    let s = TestServer::start();
    let out = s.kubectl_ok(&["explain", "service.spec.ports"]);
    assert!(out.contains("KIND:       Service"), "{out}");
    assert!(out.contains("VERSION:    v1"), "{out}");
    assert!(out.contains("FIELD: ports <[]ServicePort>"), "{out}");
    for field in ["appProtocol", "name", "nodePort", "port", "protocol", "targetPort"] {
        assert!(out.lines().any(|l| l.trim_start().starts_with(&format!("{field}\t"))), "no {field} in {out}");
    }
    let out = s.kubectl_ok(&["explain", "service.spec.type"]);
    assert!(out.contains("ExternalName"), "{out}");
}

#[test]
fn apply_dry_run_server_persists_nothing() {
    let s = TestServer::start();
    let manifest = "apiVersion: v1\nkind: Service\nmetadata: {name: dry}\nspec: {type: NodePort, ports: [{port: 80, \
                    nodePort: 30090}]}\n";
    let rv_before = get_json(&s, &["svc"])["metadata"]["resourceVersion"].clone();
    let out = s.kubectl_stdin(&["apply", "--dry-run=server", "-o", "json", "-f", "-"], manifest);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dry = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(dry["spec"]["ports"][0]["nodePort"], 30090, "the dry run answers the defaulted object");
    assert!(dry["spec"]["clusterIP"].as_str().is_some_and(|ip| ip.starts_with("10.96.")), "{dry}");

    let err = s.kubectl_err(&["get", "svc", "dry"]);
    assert!(err.contains("services \"dry\" not found"), "{err}");
    assert_eq!(get_json(&s, &["svc"])["metadata"]["resourceVersion"], rv_before, "nothing was written");
    // The dry run allocated nothing: the same nodePort is free for real.
    assert_eq!(s.apply(manifest).trim(), "service/dry created");
}

#[test]
fn wait_for_jsonpath() {
    let s = seeded();
    let out = s.kubectl_ok(&["wait", "--for=jsonpath={.spec.type}=NodePort", "svc/numbers-web-node", "--timeout=15s"]);
    assert_eq!(out.trim(), "service/numbers-web-node condition met");

    // The condition usually becomes true only after the wait started, so it is met by watching.
    let mut cmd = s.kubectl_cmd();
    cmd.args(["wait", "--for=jsonpath={.metadata.labels.ready}=yes", "svc/numbers-api", "--timeout=15s"]);
    let mut waiter = LineStream::spawn(cmd);
    std::thread::sleep(Duration::from_millis(300));
    s.kubectl_ok(&["label", "svc", "numbers-api", "ready=yes"]);
    waiter.wait_for(Duration::from_secs(15), |l| l == "service/numbers-api condition met");
}

#[test]
fn openapi_v3_index_lists_every_group_version() {
    let s = TestServer::start();
    let index = json(&s.kubectl_ok(&["get", "--raw", "/openapi/v3"]));
    let paths = index["paths"].as_object().expect("paths");
    for gv in [
        "api/v1",
        "apis/apps/v1",
        "apis/discovery.k8s.io/v1",
        "apis/networking.k8s.io/v1",
        "apis/coordination.k8s.io/v1",
    ] {
        let url = paths.get(gv).and_then(|p| p["serverRelativeURL"].as_str()).unwrap_or_else(|| panic!("{gv}"));
        assert!(url.starts_with(&format!("/openapi/v3/{gv}?hash=")), "{url}");
    }
    let core = paths["api/v1"]["serverRelativeURL"].as_str().expect("api/v1 url");
    let doc = json(&s.kubectl_ok(&["get", "--raw", core]));
    let service_patch = &doc["paths"]["/api/v1/namespaces/{namespace}/services/{name}"]["patch"];
    assert_eq!(
        service_patch["x-kubernetes-group-version-kind"],
        serde_json::json!({"group": "", "version": "v1", "kind": "Service"})
    );
}
