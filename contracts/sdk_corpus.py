#!/usr/bin/env python3
"""Builds the SDK corpus: assign bodies made with the real msgraph-sdk models, serialized the
way its request builders serialize them (kiota's JsonSerializationWriter), for every v1.0
assign action, every target type it takes, every element and settings subtype, and every enum
member. graph-vcr's tests check each body and expect no error (tests/sdk_corpus.rs).

A maintainer's tool, run by hand (it needs PyPI packages); the output is committed:
    pip install msgraph-sdk==1.65.0
    python3 contracts/sdk_corpus.py PATH/TO/graph-assign-contracts.json tests/data/sdk_corpus.json

Types and properties come from the reference data's v1.0 types (with the SDK's module and class
for each); values are valid ones for each property's type; navigation properties are left out,
as a request body has none.
"""
import datetime
import importlib
import json
import re
import sys

from kiota_serialization_json.json_serialization_writer import JsonSerializationWriter

sys.path.insert(0, __import__("os").path.dirname(__file__))
import beta_sdk_types as beta_types  # noqa: E402  (the beta models' property reader)

GUID = "3f1c2a9e-6b1d-4c39-9a55-0f0d1c2b3a4d"


def snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def sdk_class(types, name):
    info = types[name]["sdk_v1_1_65_0"]
    return getattr(importlib.import_module(info["python_module"]), info["python_class"])


def enum_class(name):
    short = name.split(".")[-1]
    module = importlib.import_module("msgraph.generated.models." + snake(short))
    return getattr(module, short[0].upper() + short[1:])


def concrete(types, name):
    """`name` and every type derived from it that is not abstract."""
    names = [name] + types[name]["derived_types"]
    return [n for n in names if n in types and not types[n]["abstract"]]


class Builder:
    def __init__(self, ref):
        self.types = ref["v1.0"]["types"]
        self.enums = ref["v1.0"]["enums"]

    def value(self, prop, name, choice):
        ty = prop["type"]
        if ty == "Edm.String":
            return GUID if name.lower().endswith("id") else f"{name} value"
        if ty == "Edm.Boolean":
            return True
        if ty in ("Edm.Int32", "Edm.Int64"):
            return 30
        if ty == "Edm.DateTimeOffset":
            return datetime.datetime(2026, 12, 1, 9, 30, tzinfo=datetime.timezone.utc)
        if ty in self.enums:
            members = self.enums[ty]["members"]
            member = choice.get(ty, members[0]["name"])
            return getattr(enum_class(ty), member[0].upper() + member[1:])
        if ty in self.types:
            subtype = choice.get(ty, concrete(self.types, ty)[0])
            return self.instance(subtype, choice)
        return None

    def instance(self, name, choice):
        obj = sdk_class(self.types, name)()
        for pname, prop in self.types[name]["properties"].items():
            if prop.get("kind") == "navigation" or prop["collection"]:
                continue
            if pname == "target":
                value = self.instance(choice["target"], choice)
            else:
                value = self.value(prop, pname, choice)
            if value is not None and hasattr(obj, snake(pname)):
                setattr(obj, snake(pname), value)
        return obj


def body_class(action):
    segments = [s for s in action["path_template"].split("/")[1:]]
    module = ["msgraph", "generated"] + ["item" if s.startswith("{") else snake(s) for s in segments]
    module += ["assign_post_request_body"]
    return getattr(importlib.import_module(".".join(module)), "AssignPostRequestBody")


def serialize(body):
    writer = JsonSerializationWriter()
    writer.write_object_value(None, body)
    return writer.get_serialized_content().decode()


def main(src, out):
    ref = json.load(open(src))
    b = Builder(ref)
    corpus = []
    seen = set()
    skipped = []
    for action in ref["v1.0"]["actions"]:
        path = "/v1.0" + re.sub(r"\{[^}]*\}", "x-1", action["path_template"])
        if not action.get("in_msgraph_sdk_1_65_0"):
            skipped.append(path)
            continue
        element = action["element_type"]
        target_prop = b.types[element]["properties"].get("target")
        if target_prop is None:
            continue
        targets = concrete(b.types, target_prop["type"])
        choices = [{"target": t} for t in targets]
        # Every element subtype, settings subtype and enum member, on a group target.
        group = targets[0] if "groupAssignmentTarget" not in str(targets) else "microsoft.graph.groupAssignmentTarget"
        for name, prop in b.types[element]["properties"].items():
            ty = prop["type"]
            if ty in b.types and name != "target":
                for sub in concrete(b.types, ty):
                    choices.append({"target": group, ty: sub})
                    for sname, sprop in b.types[sub]["properties"].items():
                        if sprop["type"] in b.enums:
                            for m in b.enums[sprop["type"]]["members"]:
                                choices.append({"target": group, ty: sub, sprop["type"]: m["name"]})
            if ty in b.enums:
                for m in b.enums[ty]["members"]:
                    choices.append({"target": group, ty: m["name"]})
        for sub in concrete(b.types, element):
            if sub != element:
                choices.append({"target": group, "element": sub})
        for choice in choices:
            element_obj = b.instance(choice.get("element", element), choice)
            if "element" in choice and getattr(element_obj, "odata_type", None) is None:
                # The SDK leaves an element's @odata.type unset; a caller who means the
                # subtype sets it.
                element_obj.odata_type = "#" + choice["element"]
            body = body_class(action)()
            setattr(body, snake(action["parameter"]), [element_obj])
            text = serialize(body)
            if (path, text) in seen:
                continue
            seen.add((path, text))
            note = ", ".join(f"{k.split('.')[-1]}={v.split('.')[-1]}" for k, v in sorted(choice.items()))
            corpus.append({"path": path, "made_with": note, "body": text})
    beta_bodies(ref, corpus)
    doc = {
        "source": "contracts/sdk_corpus.py with msgraph-sdk 1.65.0 and msgraph-beta-sdk 1.66.0 (kiota JsonSerializationWriter)",
        "not_in_the_sdk": skipped,
        "bodies": corpus,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"{len(corpus)} bodies")


def beta_model(cls_name):
    module = importlib.import_module("msgraph_beta.generated.models." + snake(cls_name))
    return getattr(module, cls_name)


def beta_targets(ref):
    """(class name, fields) of every concrete target type the beta SDK has."""
    types = ref["v1.0"]["types"]
    names = concrete(types, "microsoft.graph.deviceAndAppManagementAssignmentTarget")
    out = []
    for n in names:
        short = n.split(".")[-1]
        fields = {snake(p): GUID for p in types[n]["properties"] if p.endswith("Id")}
        out.append((short[0].upper() + short[1:], fields))
    return out


def beta_bodies(ref, corpus):
    """Every beta assign action, each list parameter alone and both together, every target
    type, with and without an assignment filter, with `source` set."""
    filter_type = beta_model("DeviceAndAppManagementAssignmentFilterType")
    source = beta_model("DeviceAndAppManagementAssignmentSource")
    for action in ref["beta_differences"]["actions"]:
        url = action["sdk_url_template"]
        path = re.sub(r"\{[^}]*\}", "x-1", url)
        segments = url.split("/")[2:]
        module = ["msgraph_beta", "generated"] + ["item" if s.startswith("{") else snake(s) for s in segments]
        try:
            body_cls = getattr(importlib.import_module(".".join(module + ["assign_post_request_body"])), "AssignPostRequestBody")
        except ImportError:
            continue
        params = [p for p in action["parameters"] if p["sdk_element_class"] != "str"]
        if not params:
            # A list of ids (windowsAutopilotDeploymentProfiles): one body, group ids.
            body = body_cls()
            for p in action["parameters"]:
                setattr(body, snake(p["name"]), [GUID])
            corpus.append({"path": path, "made_with": "a list of ids", "body": serialize(body)})
            continue
        cloud = "virtualEndpoint" in url
        targets = [("CloudPcManagementGroupAssignmentTarget", {"group_id": GUID})] if cloud else beta_targets(ref)
        variants = []
        for t_cls, fields in targets:
            for filtered in ([False] if cloud else [False, True]):
                variants.append((t_cls, fields, filtered))
        subsets = [[p] for p in params] + ([params] if len(params) > 1 else [])
        for subset in subsets:
            for t_cls, fields, filtered in variants:
                body = body_cls()
                for p in subset:
                    element = beta_model(p["sdk_element_class"])()
                    target = beta_model(t_cls)(**fields)
                    if filtered:
                        target.device_and_app_management_assignment_filter_id = GUID
                        target.device_and_app_management_assignment_filter_type = filter_type.Include
                    if hasattr(element, "target"):
                        element.target = target
                    if hasattr(element, "source"):
                        element.source = source.Direct
                    if hasattr(element, "intent") and p["sdk_element_class"] == "MobileAppAssignment":
                        element.intent = beta_model("InstallIntent").Required
                    if hasattr(element, "install_intent"):
                        element.install_intent = beta_model("InstallIntent").Required
                    setattr(body, snake(p["name"]), [element])
                text = serialize(body)
                note = f"{'+'.join(p['name'] for p in subset)}, target={t_cls}" + (", filter" if filtered else "")
                corpus.append({"path": path, "made_with": note, "body": text})
        # Every member of every enum an element or its target takes (source, intents, filter type).
        reader = beta_types.Reader(set())
        for p in params:
            element_cls = beta_model(p["sdk_element_class"])
            enum_props = {k: v["type"] for k, v in reader.properties(element_cls).items() if v["type"] in reader.enums}
            enum_props["target.deviceAndAppManagementAssignmentFilterType"] = "microsoft.graph.deviceAndAppManagementAssignmentFilterType"
            for key, ty in enum_props.items():
                enum_cls = beta_model(ty.split(".")[-1][0].upper() + ty.split(".")[-1][1:])
                for member in enum_cls:
                    element = element_cls()
                    if cloud:
                        element.target = beta_model("CloudPcManagementGroupAssignmentTarget")(group_id=GUID)
                    else:
                        element.target = beta_model("GroupAssignmentTarget")(group_id=GUID)
                    if key.startswith("target."):
                        if cloud:
                            continue
                        element.target.device_and_app_management_assignment_filter_id = GUID
                        element.target.device_and_app_management_assignment_filter_type = member
                    else:
                        setattr(element, snake(key), member)
                    if hasattr(element, "intent") and getattr(element, "intent") is None and p["sdk_element_class"] == "MobileAppAssignment":
                        element.intent = beta_model("InstallIntent").Required
                    if hasattr(element, "install_intent") and element.install_intent is None:
                        element.install_intent = beta_model("InstallIntent").Required
                    body = body_cls()
                    setattr(body, snake(p["name"]), [element])
                    corpus.append({"path": path, "made_with": f"{p['name']}, {key}={member.value}", "body": serialize(body)})
        if url.endswith("/mobileApps/{mobileApp%2Did}/assign"):
            # Every settings subtype, v1.0's and those beta adds (winGet and others).
            added = ref["beta_differences"]["type_differences_from_beta_sdk"]
            names = concrete(ref["v1.0"]["types"], "microsoft.graph.mobileAppAssignmentSettings")
            for diff in added.values():
                names += [d.lstrip("#") for d in diff.get("beta_sdk_discriminator_values_added", [])]
            for name in sorted(set(names)):
                short = name.split(".")[-1]
                settings = beta_model(short[0].upper() + short[1:])()
                element = beta_model("MobileAppAssignment")(
                    intent=beta_model("InstallIntent").Required,
                    target=beta_model("AllDevicesAssignmentTarget")(),
                    settings=settings,
                )
                body = body_cls()
                body.mobile_app_assignments = [element]
                corpus.append({"path": path, "made_with": f"settings={short}", "body": serialize(body)})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
