#!/usr/bin/env python3
"""Renders a template as Ansible's `template` module does, for strata's corpus test.

Usage: reference.py TEMPLATE VARS.json  (the output goes to stdout, byte for byte)

Jinja2 is configured as Ansible configures it: trim_blocks, keep_trailing_newline,
strict undefined, a leading `#jinja2:` line obeyed and removed. The few Ansible filters
the corpus's templates use are written here after Ansible's documentation.
"""

import json
import sys

import jinja2
import yaml


def comment(text, style="plain", **kw):
    styles = {
        "plain": {"decoration": "# "},
        "erlang": {"decoration": "% "},
        "c": {"decoration": "// "},
        "cblock": {"beginning": "/*", "decoration": " * ", "end": " */"},
        "xml": {"beginning": "<!--", "decoration": " - ", "end": "-->"},
    }
    chosen = styles[style]
    around = kw.get("decoration", chosen["decoration"]).rstrip()
    p = {"newline": "\n", "beginning": "", "prefix": around, "prefix_count": 1,
         "decoration": "", "postfix": around, "postfix_count": 1, "end": ""}
    p.update(chosen)
    p.update(kw)
    nl, deco = p["newline"], p["decoration"]
    out = ""
    if p["beginning"]:
        out += p["beginning"] + nl
    if p["prefix"]:
        out += (nl if p["prefix"] == nl else p["prefix"] + nl) * int(p["prefix_count"])
    body = deco + text.replace(nl, nl + deco)
    out += body.replace(deco + nl, deco.rstrip() + nl)
    out += nl.join([""] + [p["postfix"]] * int(p["postfix_count"]))
    if p["end"]:
        out += nl + p["end"]
    return out


def to_nice_yaml(value, indent=4, **kw):
    return yaml.dump(value, indent=indent, allow_unicode=True, default_flow_style=False, **kw)


def to_yaml(value, **kw):
    return yaml.dump(value, allow_unicode=True, default_flow_style=None, **kw)


def to_nice_json(value, indent=4, sort_keys=True, **kw):
    return json.dumps(value, indent=indent, sort_keys=sort_keys, separators=(",", ": "), **kw)


def ternary(value, true_val, false_val, none_val=None):
    if value is None and none_val is not None:
        return none_val
    return true_val if bool(value) else false_val


def version(value, other, operator="eq"):
    """Ansible's `version` test for dotted numbers (what the corpus compares)."""
    a = [int(x) for x in str(value).split(".")]
    b = [int(x) for x in str(other).split(".")]
    ops = {"==": "eq", "=": "eq", "<": "lt", "<=": "le", ">": "gt", ">=": "ge", "!=": "ne"}
    op = ops.get(operator, operator)
    return {"eq": a == b, "ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op]


def main():
    template_path, vars_path = sys.argv[1], sys.argv[2]
    with open(template_path, encoding="utf-8") as f:
        source = f.read()
    with open(vars_path, encoding="utf-8") as f:
        variables = json.load(f)
    options = {"trim_blocks": True, "keep_trailing_newline": True}
    if source.startswith("#jinja2:"):
        line, _, source = source.partition("\n")
        for pair in line[len("#jinja2:"):].split(","):
            key, value = pair.split(":", 1)
            options[key.strip()] = {"True": True, "False": False}[value.strip()]
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, **options)
    env.filters.update({
        "comment": comment, "to_nice_yaml": to_nice_yaml, "to_yaml": to_yaml,
        "to_nice_json": to_nice_json, "to_json": json.dumps, "ternary": ternary,
    })
    env.tests["version"] = version
    out = env.from_string(source).render(variables)
    sys.stdout.buffer.write(out.encode("utf-8"))


if __name__ == "__main__":
    main()
