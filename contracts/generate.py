#!/usr/bin/env python3
"""Regenerates contracts/actions.json from the reference data set.

Usage: python3 contracts/generate.py PATH/TO/graph-assign-contracts.json > contracts/actions.json

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


def main(src):
    ref = json.load(open(src))
    out = []
    seen = set()
    for a in ref["v1.0"]["actions"]:
        key = ("v1.0", normalise_template(a["path_template"]))
        if key in seen:
            continue  # managedAppPolicies is listed once per abstract binding type; same contract
        seen.add(key)
        out.append({
            "version": "v1.0",
            "path": key[1],
            "parameters": [{"name": a["parameter"], "element_type": a["element_type"]}],
            "success_status": a["success_status"],
            "success_body": "value" if a["success_body"] else "none",
            "doc_page": a["doc_page"],
        })
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
    json.dump({"source": "graph-assign-contracts.json (msgraph-sdk 1.65.0, msgraph-beta-sdk 1.66.0, "
                         "v1.0 CSDL, microsoft-graph-docs-contrib)",
               "actions": out}, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
