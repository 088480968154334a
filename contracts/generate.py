#!/usr/bin/env python3
"""Regenerates contracts/actions.json from the reference data set.

Usage: python3 contracts/generate.py PATH/TO/graph-assign-contracts.json contracts/
writes contracts/actions.json (the actions) and contracts/types.json (element and target types).

This is a maintainer's tool, run by hand when the reference data changes. graph-vcr never reads
the reference data at build, run or test time: the generated file is committed and compiled in.
"""
import json
import re
import sys


def element_type_from_class(name):
    return "microsoft.graph." + name[0].lower() + name[1:]


def normalise_template(path):
    # Both docs ({deviceConfigurationId}) and kiota ({deviceConfiguration%2Did}) spellings become {id}.
    return re.sub(r"\{[^}]*\}", "{id}", path)


# Properties the service needs although the CSDL marks them nullable: a target that names no
# group or collection assigns nothing. Curated by hand; see docs/DEVIATIONS.md.
REQUIRED = {
    "microsoft.graph.groupAssignmentTarget": ["groupId"],
    "microsoft.graph.exclusionGroupAssignmentTarget": ["groupId"],
    "microsoft.graph.configurationManagerCollectionAssignmentTarget": ["collectionId"],
    "microsoft.graph.cloudPcManagementGroupAssignmentTarget": ["groupId"],
    # Non-nullable install intents: an app or e-book assignment without one means nothing.
    "microsoft.graph.mobileAppAssignment": ["intent"],
    "microsoft.graph.managedEBookAssignment": ["installIntent"],
    "microsoft.graph.iosVppEBookAssignment": ["installIntent"],
}

GETTER_TYPES = {
    "get_str_value": "Edm.String",
    "get_bool_value": "Edm.Boolean",
    "get_int_value": "Edm.Int32",
    "get_object_value": "object",
}


def types_document(ref):
    v1 = ref["v1.0"]
    types = {}
    for name, t in v1["types"].items():
        if name == "microsoft.graph.entity":
            continue
        props = {}
        for pname, p in t["properties"].items():
            if p.get("kind") == "navigation":
                continue  # not part of a request body
            props[pname] = {"type": p["type"], "collection": p["collection"], "nullable": p.get("nullable", True)}
        required = REQUIRED.get(name, [])
        types[name] = {
            "abstract": t["abstract"],
            "base": t["base"] if t["base"] != "microsoft.graph.entity" else None,
            "derived": t["derived_types"],
            "properties": props,
            "required": sorted(set(required)),
        }
    enums = {n: [m["name"] for m in e["members"]] for n, e in v1["enums"].items()}
    beta = ref["beta_differences"]
    added = {}
    derived = {}
    for name, diff in beta["type_differences_from_beta_sdk"].items():
        for pname, p in diff.get("added_properties", {}).items():
            if p["sdk_getter"] == "get_enum_value":
                ty = "microsoft.graph." + p["sdk_type"][0].lower() + p["sdk_type"][1:]
            else:
                ty = GETTER_TYPES[p["sdk_getter"]]
            added.setdefault(name, {})[pname] = {"type": ty, "collection": False, "nullable": True}
        for d in diff.get("beta_sdk_discriminator_values_added", []):
            derived.setdefault(name, []).append(d.lstrip("#"))
    return {
        "v1.0": {"types": types, "enums": enums},
        "beta": {"added_properties": added, "added_derived": derived, "enums": beta["enums"]},
    }


def main(src, out_dir):
    ref = json.load(open(src))
    out = []
    seen = set()
    for a in ref["v1.0"]["actions"]:
        key = ("v1.0", normalise_template(a["path_template"]))
        if key in seen:
            continue  # managedAppPolicies is listed once per abstract binding type; same contract
        seen.add(key)
        action = {
            "version": "v1.0",
            "path": key[1],
            "parameters": [{"name": a["parameter"], "element_type": a["element_type"]}],
            "success_status": a["success_status"],
            "success_body": "value" if a["success_body"] else "none",
            "doc_page": a["doc_page"],
        }
        # Least to most privileged, per permission type, as the docs list them; actions whose
        # permissions the reference could not verify (Cloud PC) have none and are not judged.
        perms = a.get("permissions")
        if isinstance(perms, dict) and isinstance(perms.get("application"), list):
            action["permissions"] = {
                "delegated": perms.get("delegated_work_or_school") or [],
                "application": perms["application"],
            }
        out.append(action)
        # The docs name other paths to the same action (managedAppRegistrations/{id}/
        # appliedPolicies/{id}/assign): the same contract under another path.
        for alt in a.get("alternate_path_templates_documented", []):
            alt_key = ("v1.0", normalise_template(alt))
            if alt_key not in seen:
                seen.add(alt_key)
                out.append({**action, "path": alt_key[1]})
    for a in ref["beta_differences"]["actions"]:
        path = normalise_template(a["sdk_url_template"])
        path = path[len("/beta"):] if path.startswith("/beta") else path
        params = []
        for p in a["parameters"]:
            cls = p["sdk_element_class"]
            params.append({
                "name": p["name"],
                "element_type": "Edm.String" if cls == "str" else element_type_from_class(cls),
            })
        out.append({
            "version": "beta",
            "path": path,
            "parameters": params,
            "success_status": 200 if a["sdk_expects_response_body"] else 204,
            "success_body": "value" if a["sdk_expects_response_body"] else "none",
            "doc_page": None,
        })
    source = ("graph-assign-contracts.json (msgraph-sdk 1.65.0, msgraph-beta-sdk 1.66.0, "
              "v1.0 CSDL, microsoft-graph-docs-contrib)")
    with open(f"{out_dir}/actions.json", "w") as f:
        json.dump({"source": source, "actions": out}, f, indent=2)
        f.write("\n")
    with open(f"{out_dir}/types.json", "w") as f:
        json.dump({"source": source, **types_document(ref)}, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
