#!/usr/bin/env python3
"""Writes contracts/beta_types.json: the element types of the beta assign actions that the
reference data does not describe, read from the msgraph-beta-sdk 1.66.0 models.

The reference gives v1.0's types and beta's additions to them; 22 beta actions take element
types that exist only in beta (the Settings Catalog's configurationPolicies, health scripts,
Windows update profiles, ...). Their properties are read from each model's
get_field_deserializers (the JSON key and the getter, which names the type), their subtypes
from create_from_discriminator_value, and the enums they use from the SDK's enum classes.

A maintainer's tool, run by hand (it needs the beta SDK); the output is committed and compiled in:
    pip install msgraph-beta-sdk==1.66.0
    python3 contracts/beta_sdk_types.py PATH/TO/graph-assign-contracts.json contracts/
"""
import enum
import importlib
import inspect
import json
import re
import sys

GETTERS = {
    "get_str_value": "Edm.String",
    "get_bool_value": "Edm.Boolean",
    "get_int_value": "Edm.Int32",
    "get_float_value": "Edm.Double",
    "get_datetime_value": "Edm.DateTimeOffset",
    "get_timedelta_value": "Edm.Duration",
    "get_uuid_value": "Edm.Guid",
    "get_date_value": "Edm.Date",
}
FIELD = re.compile(r'"([^"]+)": lambda n : setattr\(self, \'[^\']+\', n\.(\w+)\(([^)]*)\)\)')


def snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def graph_name(cls_name):
    return "microsoft.graph." + cls_name[0].lower() + cls_name[1:]


def model(cls_name):
    module = importlib.import_module("msgraph_beta.generated.models." + snake(cls_name))
    return getattr(module, cls_name)


class Reader:
    def __init__(self, known):
        self.known = known  # names the reference already describes (v1.0 + beta additions)
        self.types = {}
        self.enums = {}

    def enum(self, cls_name):
        name = graph_name(cls_name)
        if name not in self.enums:
            cls = model(cls_name)
            self.enums[name] = [m.value for m in cls if isinstance(m, enum.Enum)]
        return name

    def properties(self, cls):
        props = {}
        for klass in reversed(cls.__mro__):
            fn = klass.__dict__.get("get_field_deserializers")
            if fn is None:
                continue
            for key, getter, arg in FIELD.findall(inspect.getsource(fn)):
                if key == "@odata.type":
                    continue
                collection = "collection" in getter
                if getter in GETTERS:
                    ty = GETTERS[getter]
                elif getter in ("get_enum_value", "get_collection_of_enum_values"):
                    ty = self.enum(arg.strip())
                elif getter in ("get_object_value", "get_collection_of_object_values"):
                    if self.is_entity(arg.strip()):
                        continue  # a navigation property: never part of a request body
                    ty = self.complex(arg.strip())
                elif getter == "get_collection_of_primitive_values":
                    ty = {"str": "Edm.String", "bool": "Edm.Boolean", "int": "Edm.Int32"}.get(arg.strip(), "object")
                else:
                    ty = "object"
                props[key] = {"type": ty, "collection": collection, "nullable": True}
        return props

    def is_entity(self, cls_name):
        entity = importlib.import_module("msgraph_beta.generated.models.entity").Entity
        return issubclass(model(cls_name), entity)

    def derived(self, cls):
        source = inspect.getsource(cls.create_from_discriminator_value)
        return sorted({graph_name(c) for c in re.findall(r"import (\w+)", source)} - {graph_name(cls.__name__)})

    def complex(self, cls_name):
        name = graph_name(cls_name)
        if name in self.known or name in self.types:
            return name
        self.types[name] = None  # placeholder against cycles
        cls = model(cls_name)
        base = cls.__mro__[1].__name__
        info = {
            "abstract": False,
            "base": graph_name(base) if base not in ("object", "AdditionalDataHolder", "Entity") else None,
            "derived": [],
            "properties": self.properties(cls),
            "required": [],
        }
        self.types[name] = info
        for d in self.derived(cls):
            self.complex(d.split(".")[-1][0].upper() + d.split(".")[-1][1:])
        info["derived"] = [d for d in self.derived(cls) if d in self.types or d in self.known]
        return name


def main(src, out_dir):
    ref = json.load(open(src))
    known = set(ref["v1.0"]["types"]) | set(ref["beta_differences"]["type_differences_from_beta_sdk"])
    reader = Reader(known)
    for action in ref["beta_differences"]["actions"]:
        for p in action["parameters"]:
            if p["sdk_element_class"] != "str":
                reader.complex(p["sdk_element_class"])
    # The settings subtypes beta adds (winGet and others), which the reference knows by name only.
    for diff in ref["beta_differences"]["type_differences_from_beta_sdk"].values():
        for d in diff.get("beta_sdk_discriminator_values_added", []):
            short = d.lstrip("#").split(".")[-1]
            reader.complex(short[0].upper() + short[1:])
    doc = {
        "source": "contracts/beta_sdk_types.py from msgraph-beta-sdk 1.66.0 models (get_field_deserializers, create_from_discriminator_value, enum classes)",
        "types": {k: v for k, v in sorted(reader.types.items()) if v is not None},
        "enums": dict(sorted(reader.enums.items())),
    }
    with open(f"{out_dir}/beta_types.json", "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"{len(doc['types'])} types, {len(doc['enums'])} enums")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
