"""The Python `kubernetes` client against `skiff server`.

Run by crates/skiff/tests/python_client.rs as
`python3 tests/python/test_client.py <kubeconfig> <namespace>`; exits non-zero on the first
failed check. Covers what a Python operator does with Services: create, list, watch from the
list's resourceVersion (events must arrive in commit order), patch with a dict (sent as a
strategic merge patch), delete.
"""

import sys
import threading

from kubernetes import client, config, watch

WATCHED_SERVICES = [f"ordered-{i}" for i in range(5)]


def service(name, port=80, labels=None):
    return client.V1Service(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {"suite": "python"}),
        spec=client.V1ServiceSpec(
            selector={"app": name},
            ports=[client.V1ServicePort(name="http", port=port, target_port=8080)],
        ),
    )


def check_create_and_list(core, ns):
    created = core.create_namespaced_service(ns, service("py-web", labels={"suite": "python", "tier": "web"}))
    assert created.metadata.uid, "create returned no uid"
    assert created.metadata.resource_version, "create returned no resourceVersion"
    assert created.spec.cluster_ip and created.spec.cluster_ip.startswith("10.96."), created.spec.cluster_ip
    assert created.spec.ports[0].protocol == "TCP", "protocol was not defaulted"

    listed = core.list_namespaced_service(ns, label_selector="tier=web")
    assert [s.metadata.name for s in listed.items] == ["py-web"], listed.items
    assert listed.metadata.resource_version, "list has no resourceVersion"
    print("create/list: ok")


def check_watch_order(core, ns):
    """Creates five Services while watching from the list's resourceVersion; the ADDED events
    must name them in creation order with increasing resourceVersions."""
    start = core.list_namespaced_service(ns).metadata.resource_version
    seen = []
    errors = []

    def consume():
        w = watch.Watch()
        try:
            for event in w.stream(
                core.list_namespaced_service, ns, resource_version=start, timeout_seconds=20
            ):
                obj = event["object"]
                if event["type"] == "ADDED" and obj.metadata.name in WATCHED_SERVICES:
                    seen.append((obj.metadata.name, int(obj.metadata.resource_version)))
                if len(seen) == len(WATCHED_SERVICES):
                    w.stop()
        except Exception as e:  # reported by the main thread
            errors.append(e)

    consumer = threading.Thread(target=consume)
    consumer.start()
    for name in WATCHED_SERVICES:
        core.create_namespaced_service(ns, service(name))
    consumer.join(timeout=30)
    assert not consumer.is_alive(), f"watch did not deliver all events in time: {seen}"
    assert not errors, f"watch failed: {errors}"
    assert [name for name, _ in seen] == WATCHED_SERVICES, f"events out of order: {seen}"
    versions = [rv for _, rv in seen]
    assert versions == sorted(versions) and len(set(versions)) == len(versions), versions
    assert versions[0] > int(start), (start, versions)
    print("watch order: ok")


def check_strategic_patch(core, ns):
    """A dict body is sent as application/strategic-merge-patch+json: ports merge by `port`."""
    patch = {
        "metadata": {"labels": {"patched": "yes", "tier": None}},
        "spec": {"ports": [{"name": "metrics", "port": 9090}]},
    }
    patched = core.patch_namespaced_service("py-web", ns, patch)
    ports = sorted((p.name, p.port) for p in patched.spec.ports)
    assert ports == [("http", 80), ("metrics", 9090)], ports
    assert patched.metadata.labels == {"suite": "python", "patched": "yes"}, patched.metadata.labels

    # Same port key again: the entry is merged, not duplicated.
    patched = core.patch_namespaced_service("py-web", ns, {"spec": {"ports": [{"port": 9090, "targetPort": 9191}]}})
    assert len(patched.spec.ports) == 2, patched.spec.ports
    by_port = {p.port: p for p in patched.spec.ports}
    assert by_port[9090].target_port == 9191, by_port[9090]
    assert by_port[9090].name == "metrics", by_port[9090]
    print("strategic merge patch: ok")


def check_delete(core, ns):
    core.delete_namespaced_service("py-web", ns)
    try:
        core.read_namespaced_service("py-web", ns)
    except client.exceptions.ApiException as e:
        assert e.status == 404, e
    else:
        raise AssertionError("service still readable after delete")
    names = [s.metadata.name for s in core.list_namespaced_service(ns).items]
    assert "py-web" not in names, names
    print("delete: ok")


def main():
    kubeconfig, ns = sys.argv[1], sys.argv[2]
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    check_create_and_list(core, ns)
    check_watch_order(core, ns)
    check_strategic_patch(core, ns)
    check_delete(core, ns)
    print("all python client checks passed")


if __name__ == "__main__":
    main()
