#!/usr/bin/env python3
"""Generate crates/api/src/protobuf/generated.rs: the protobuf schema skiff uses to turn
Kubernetes protobuf request bodies into their JSON form.

Inputs (read-only, never copied into the repository):
  * the upstream `generated.proto` files: field numbers and wire types of every message;
  * the upstream Go type definitions (`types.go` and friends): JSON names, `omitempty`, and whether a
    field is a Go pointer, a value, a slice, a map or an inlined struct. Protobuf alone cannot say
    this, yet Go's JSON output depends on it (`replicas: 0` is kept, `imagePullPolicy: ""` is not);
  * k8s-openapi's generated sources for the same Kubernetes version: every JSON name we emit must be
    a field the Rust side knows, which catches any mismatch between the two inputs above.

Regenerate (Kubernetes 1.33, matching the k8s-openapi `v1_33` feature skiff serves):

    git clone --depth 1 --branch v0.33.9 https://github.com/kubernetes/api /tmp/k8s-api
    git clone --depth 1 --branch v0.33.9 https://github.com/kubernetes/apimachinery /tmp/k8s-apimachinery
    scripts/gen-proto-schema.py --api /tmp/k8s-api --apimachinery /tmp/k8s-apimachinery \\
        --k8s-openapi ~/.cargo/registry/src/*/k8s-openapi-0.29.0/src/v1_33

Then check the result against upstream's own fixtures (every served kind, every field set):

    SKIFF_K8S_API_TESTDATA=/tmp/k8s-api/testdata/HEAD cargo test -p skiff-api protobuf -- --ignored

To serve another kind in protobuf, add it to ROOTS below and regenerate; only messages reachable
from ROOTS end up in the table.
"""

import argparse
import glob
import os
import re
import sys
from collections import OrderedDict

# (apiVersion, kind, protobuf message). DeleteOptions is accepted under any apiVersion (client-go
# labels it with the group version of the resource being deleted); its entry uses "*".
ROOTS = [
    ("v1", "Namespace", "k8s.io.api.core.v1.Namespace"),
    ("v1", "Service", "k8s.io.api.core.v1.Service"),
    ("v1", "Endpoints", "k8s.io.api.core.v1.Endpoints"),
    ("v1", "Pod", "k8s.io.api.core.v1.Pod"),
    ("v1", "Node", "k8s.io.api.core.v1.Node"),
    ("v1", "Secret", "k8s.io.api.core.v1.Secret"),
    ("v1", "ConfigMap", "k8s.io.api.core.v1.ConfigMap"),
    ("v1", "Event", "k8s.io.api.core.v1.Event"),
    ("v1", "ServiceAccount", "k8s.io.api.core.v1.ServiceAccount"),
    ("discovery.k8s.io/v1", "EndpointSlice", "k8s.io.api.discovery.v1.EndpointSlice"),
    ("apps/v1", "Deployment", "k8s.io.api.apps.v1.Deployment"),
    ("apps/v1", "ReplicaSet", "k8s.io.api.apps.v1.ReplicaSet"),
    ("autoscaling/v1", "Scale", "k8s.io.api.autoscaling.v1.Scale"),
    ("networking.k8s.io/v1", "Ingress", "k8s.io.api.networking.v1.Ingress"),
    ("networking.k8s.io/v1", "IngressClass", "k8s.io.api.networking.v1.IngressClass"),
    ("coordination.k8s.io/v1", "Lease", "k8s.io.api.coordination.v1.Lease"),
    ("v1", "Binding", "k8s.io.api.core.v1.Binding"),
    ("authentication.k8s.io/v1", "TokenRequest", "k8s.io.api.authentication.v1.TokenRequest"),
    ("*", "DeleteOptions", "k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions"),
]

# Messages whose Go type has its own JSON form; the decoder renders them by hand.
SPECIAL = {
    "k8s.io.apimachinery.pkg.apis.meta.v1.Time": "Time",
    "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime": "MicroTime",
    "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1": "RawJson",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "RawJson",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "Quantity",
}

# Types the decoder does not render yet, because no served kind uses them. Reaching one is an error
# that says what to add to the decoder (and to this script) first.
UNSUPPORTED = {
    "k8s.io.apimachinery.pkg.apis.meta.v1.Duration": "metav1.Duration (JSON: a Go duration string such as 1m30s)",
    "double": "double fields (JSON: a Go-formatted float64)",
}

# Protobuf scalar types the decoder renders, with their `FieldType` variant.
SCALARS = {"string": "String", "bytes": "Bytes", "bool": "Bool", "int32": "Int32", "int64": "Int64"}
PROTO_SCALARS = {"double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32", "fixed64"}
PROTO_SCALARS |= {"sfixed32", "sfixed64", "bool", "string", "bytes"}

# The protobuf packages we read, and where their sources live relative to --api / --apimachinery.
PACKAGES = {
    "k8s.io.api.core.v1": ("api", "core/v1"),
    "k8s.io.api.apps.v1": ("api", "apps/v1"),
    "k8s.io.api.discovery.v1": ("api", "discovery/v1"),
    "k8s.io.api.networking.v1": ("api", "networking/v1"),
    "k8s.io.api.coordination.v1": ("api", "coordination/v1"),
    "k8s.io.api.autoscaling.v1": ("api", "autoscaling/v1"),
    "k8s.io.api.authentication.v1": ("api", "authentication/v1"),
    "k8s.io.apimachinery.pkg.apis.meta.v1": ("apimachinery", "pkg/apis/meta/v1"),
    "k8s.io.apimachinery.pkg.runtime": ("apimachinery", "pkg/runtime"),
    "k8s.io.apimachinery.pkg.runtime.schema": ("apimachinery", "pkg/runtime/schema"),
    "k8s.io.apimachinery.pkg.util.intstr": ("apimachinery", "pkg/util/intstr"),
    "k8s.io.apimachinery.pkg.api.resource": ("apimachinery", "pkg/api/resource"),
}


def fail(msg):
    sys.exit(f"gen-proto-schema: {msg}")


# ---------------------------------------------------------------------------------------------
# generated.proto


PROTO_FIELD = re.compile(
    r"^\s*(?:(optional|repeated|required)\s+([\w.]+)|map<\s*(\w+)\s*,\s*([\w.]+)\s*>)\s+(\w+)\s*=\s*(\d+)\s*(\[[^\]]*\])?\s*;"
)


def parse_proto(path, package):
    """Returns {full message name: [field dict in declaration order]}."""
    messages = {}
    current = None
    depth = 0
    for raw in open(path, encoding="utf-8"):
        line = raw.split("//", 1)[0].rstrip()
        if not line.strip():
            continue
        m = re.match(r"^message\s+(\w+)\s*\{", line)
        if m and depth == 0:
            current = f"{package}.{m.group(1)}"
            messages[current] = []
            depth = 1
            continue
        if current is None:
            continue
        if re.match(r"^\s*message\s", line):
            fail(f"{path}: nested message definitions are not supported: {line.strip()}")
        if line.strip() == "}":
            depth -= 1
            if depth == 0:
                current = None
            continue
        f = PROTO_FIELD.match(line)
        if not f:
            fail(f"{path}: cannot parse field line in {current}: {line.strip()}")
        label, ty, key, value, name, number, _options = f.groups()
        if key is not None:
            if key != "string":
                fail(f"{current}.{name}: map keys other than string are not supported")
            label, ty = "map", value
        messages[current].append(
            {"label": label, "type": resolve_type(ty, package), "name": name, "number": int(number)}
        )
    return messages


def resolve_type(ty, package):
    if ty in PROTO_SCALARS:
        return ty
    if ty.startswith("."):
        return ty[1:]
    if "." in ty:
        return ty
    return f"{package}.{ty}"


# ---------------------------------------------------------------------------------------------
# Go struct definitions


GO_FIELD = re.compile(r"^\s*(?:(\w+)\s+)?(\S+)\s+`([^`]*)`\s*$")
TAG = re.compile(r'(\w+):"([^"]*)"')


def parse_go_structs(directory):
    """Returns {struct name: [Go field dict in declaration order]} for every non-test .go file."""
    structs = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.go"))):
        if path.endswith("_test.go"):
            continue
        lines = open(path, encoding="utf-8").read().split("\n")
        i = 0
        while i < len(lines):
            m = re.match(r"^type (\w+) struct \{\s*$", lines[i])
            i += 1
            if not m:
                continue
            name, fields = m.group(1), []
            while i < len(lines) and lines[i] != "}":
                line = lines[i]
                i += 1
                if not line.strip() or line.strip().startswith("//"):
                    continue
                f = GO_FIELD.match(line)
                if not f:
                    # Fields without struct tags are not serialized by protobuf; they cannot matter.
                    continue
                go_name, go_type, tags = f.groups()
                tags = dict(TAG.findall(tags))
                fields.append({"go_name": go_name, "go_type": go_type, "embedded": go_name is None, **tags})
            structs[name] = fields
    return structs


# ---------------------------------------------------------------------------------------------
# k8s-openapi: the JSON names the Rust types accept


def openapi_names(root):
    """Returns {struct name: set of JSON field names} from k8s-openapi's Deserialize impls."""
    names = {}
    for path in glob.glob(os.path.join(root, "**", "*.rs"), recursive=True):
        text = open(path, encoding="utf-8").read()
        for m in re.finditer(r"^pub struct (\w+) \{", text, re.M):
            keys = set(re.findall(r'"([^"]+)" => Field::Key_', text))
            names.setdefault(m.group(1), set()).update(keys)
    return names


# ---------------------------------------------------------------------------------------------
# Building the table


def short(name):
    return name.rsplit(".", 1)[1]


def static_name(full):
    """k8s.io.api.core.v1.ServiceSpec -> CORE_V1_SERVICE_SPEC."""
    package, msg = full.rsplit(".", 1)
    prefix = {
        "k8s.io.apimachinery.pkg.apis.meta.v1": "META_V1",
        "k8s.io.apimachinery.pkg.runtime": "RUNTIME",
        "k8s.io.apimachinery.pkg.runtime.schema": "RUNTIME_SCHEMA",
    }.get(package)
    if prefix is None:
        prefix = package.removeprefix("k8s.io.api.").replace(".", "_").upper()
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", msg)
    snake = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", snake)
    return f"{prefix}_{snake.upper()}"


def json_tag(go_field):
    parts = go_field.get("json", "").split(",")
    name, options = parts[0], [o for o in parts[1:] if o]
    for option in options:
        if option not in ("omitempty", "inline"):
            fail(f"unsupported json tag option {option!r} on Go field {go_field}")
    return name, "omitempty" in options


def build(args):
    proto = {}
    go = {}
    for package, (base, rel) in PACKAGES.items():
        directory = os.path.join(getattr(args, base), rel)
        proto_path = os.path.join(directory, "generated.proto")
        if not os.path.exists(proto_path):
            fail(f"missing {proto_path}")
        proto.update(parse_proto(proto_path, package))
        go[package] = parse_go_structs(directory)
        # Any hand-written JSON form on a message we walk generically would be silently wrong.
        for path in glob.glob(os.path.join(directory, "*.go")):
            if path.endswith("_test.go"):
                continue
            for m in re.finditer(r"^func \(\w+ \*?(\w+)\) Marshal(?:JSON|Text)\(", open(path).read(), re.M):
                go[package].setdefault("__custom_json__", []).append(m.group(1))
    known_names = openapi_names(args.k8s_openapi)

    # Breadth-first walk from the roots; special messages are leaves.
    order, seen, queue = [], set(), [root for _, _, root in ROOTS]
    while queue:
        name = queue.pop(0)
        if name in seen or name in SPECIAL:
            continue
        if name not in proto:
            fail(f"message {name} not found in any generated.proto")
        seen.add(name)
        order.append(name)
        for field in proto[name]:
            ty = field["type"]
            if ty in UNSUPPORTED or (ty in PROTO_SCALARS and ty not in SCALARS):
                what = UNSUPPORTED.get(ty, f"{ty} fields")
                fail(f"{name}.{field['name']} needs {what}, which the decoder cannot render yet")
            if ty not in SCALARS:
                queue.append(field["type"])

    inlined_into = {}
    tables = OrderedDict()
    for name in order:
        package = name.rsplit(".", 1)[0]
        if short(name) in go[package].get("__custom_json__", []):
            fail(f"{name} has a custom Go JSON form; add it to SPECIAL and render it in the decoder")
        go_fields = go[package].get(short(name))
        if go_fields is None:
            fail(f"Go struct {short(name)} not found for {name}")
        proto_fields = {f["number"]: f for f in proto[name]}
        rows, covered = [], set()
        for gf in go_fields:
            if "protobuf" not in gf:
                continue  # metav1.TypeMeta and friends: carried by the envelope, not the message.
            # `protobuf:"bytes,3,opt,name=clusterIP"`: wire type, field number, label, name (optional).
            ptag = gf["protobuf"].split(",")
            pf = proto_fields.get(int(ptag[1]))
            if pf is None:
                fail(f"{name}: Go field {gf['go_name']} has protobuf number {ptag[1]} missing from generated.proto")
            pname = pf["name"]
            tag_name = next((p[5:] for p in ptag if p.startswith("name=")), pname)
            if tag_name != pname:
                fail(f"{name}.{pname}: Go tag names protobuf field {ptag[1]} {tag_name!r}")
            covered.add(pf["number"])
            jname, omit = json_tag(gf)
            if jname == "-":
                continue  # Not part of the JSON form.
            go_type = gf["go_type"]
            ty = pf["type"]
            rust_ty = SCALARS.get(ty) or SPECIAL.get(ty) or f"Struct(&{static_name(ty)})"
            empty = "Omit" if omit else "Keep"
            if gf["embedded"] and jname == "":
                if pf["label"] != "optional" or ty in SCALARS or ty in SPECIAL or go_type.startswith("*"):
                    fail(f"{name}.{pname}: only embedded value structs can be inlined")
                inlined_into.setdefault(ty, []).append(name)
                rows.append({"rust": f"inline({pf['number']}, &{static_name(ty)})", "json": None})
                continue
            if jname == "":
                fail(f"{name}.{pname}: field without a JSON name")
            if pf["label"] == "map":
                if go_type.startswith(("*", "[]")):
                    fail(f"{name}.{pname}: map in protobuf but Go type {go_type}")
                shape = "map"
            elif pf["label"] == "repeated":
                if go_type.startswith(("*", "map[")) or go_type == "[]byte":
                    fail(f"{name}.{pname}: repeated in protobuf but Go type {go_type}")
                shape = "list"
            elif pf["label"] == "optional":
                if ty == "bytes" and go_type != "[]byte":
                    fail(f"{name}.{pname}: bytes field with Go type {go_type}")
                shape = "pointer" if go_type.startswith("*") else "value"
            else:
                fail(f"{name}.{pname}: unsupported label {pf['label']}")
            rows.append({"rust": f'{shape}({pf["number"]}, "{jname}", {rust_ty}, {empty})', "json": jname})
        missing = set(proto_fields) - covered
        if missing:
            fail(f"{name}: protobuf field numbers {sorted(missing)} have no Go field")
        tables[name] = rows

    # Every JSON name must be known to k8s-openapi: on the struct itself, or, for structs that are
    # only ever inlined (core/v1 VolumeSource), on every struct that inlines them.
    for name, rows in tables.items():
        owners = [name] if short(name) in known_names else inlined_into.get(name, [])
        if not owners:
            fail(f"{name}: no k8s-openapi struct to check its JSON names against")
        for row in rows:
            for owner in owners:
                if row["json"] is not None and row["json"] not in known_names.get(short(owner), set()):
                    fail(f"{name}: JSON name {row['json']!r} is unknown to k8s-openapi's {short(owner)}")
    return order, tables


def render(order, tables, args):
    out = []
    out.append("// @generated by scripts/gen-proto-schema.py from Kubernetes v1.33 (k8s.io/api and")
    out.append("// k8s.io/apimachinery v0.33.9); do not edit. The script's docstring says how to regenerate.")
    out.append("//")
    out.append("// One static per protobuf message reachable from the served kinds, fields in Go struct order")
    out.append("// (the order of the JSON keys). See `schema.rs` for what each constructor means.")
    out.append("")
    out.append("use super::schema::Empty::{Keep, Omit};")
    out.append("use super::schema::FieldType::*;")
    out.append("use super::schema::{inline, list, map, pointer, value, Message, Root};")
    out.append("")
    out.append("/// The kinds whose protobuf bodies [`super::decode`] understands; `\"*\"` matches any apiVersion.")
    out.append("pub(super) static ROOTS: &[Root] = &[")
    for api_version, kind, message in ROOTS:
        out.append(f'    Root {{ api_version: "{api_version}", kind: "{kind}", message: &{static_name(message)} }},')
    out.append("];")
    for name in order:
        out.append("")
        out.append(f"pub(super) static {static_name(name)}: Message = Message {{")
        out.append(f'    name: "{name}",')
        out.append("    fields: &[")
        for row in tables[name]:
            out.append(f"        {row['rust']},")
        out.append("    ],")
        out.append("};")
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    fields = sum(len(rows) for rows in tables.values())
    print(f"wrote {args.out}: {len(order)} messages, {fields} fields")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--api", required=True, help="checkout of k8s.io/api at the target version")
    p.add_argument("--apimachinery", required=True, help="checkout of k8s.io/apimachinery at the same version")
    p.add_argument("--k8s-openapi", required=True, help="k8s-openapi's src/v1_XX directory for that version")
    p.add_argument("--out", default=os.path.join(here, "..", "crates", "api", "src", "protobuf", "generated.rs"))
    args = p.parse_args()
    order, tables = build(args)
    render(order, tables, args)


if __name__ == "__main__":
    main()
