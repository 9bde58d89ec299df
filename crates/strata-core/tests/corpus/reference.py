#!/usr/bin/env python3
"""Renders a template as Ansible's `template` module does, for strata's corpus test.

Usage: reference.py TEMPLATE VARS.json [--salt]  (the output goes to stdout, byte for byte)

Jinja2 is configured as Ansible configures it: trim_blocks, strict undefined, a leading
`#jinja2:` line obeyed and removed, and the output padded with newlines to as many final
newlines as the template has (Ansible's `preserve_trailing_newlines`: Jinja2 drops the
template's final one). The Ansible filters and tests the corpus's templates use are
written here after ansible-core's source (`plugins/filter/core.py`, `plugins/test/core.py`).

With --salt, as Salt's `render_jinja_tmpl` (salt/utils/templates.py) renders a
`file.managed` template with its default options: Jinja2's own whitespace (no trim_blocks,
no lstrip_blocks, the final newline dropped), StrictUndefined, the `do` and `loopcontrols`
extensions, and one newline appended when the template ends in one. What Salt's context
holds is emulated: VARS.json is the pillar and the file's `context:` at once, so its keys
are variables and `salt['pillar.get']('a:b', default, delimiter=':')` (and `config.get`)
walks it as Salt's `traverse_dict_and_list` does (a missing key gives the default, '' when
none is given; `merge=True` as Salt's `pillar.get`); `grains` is whatever VARS.json gives
under that name, read by `salt['grains.get']` and `salt['grains.filter_by']`. These
functions are a stand-in for Salt itself, written after its source (below). The context
is also the environment's globals, as Salt makes it, so an imported `map.jinja` sees it.

Templates a case imports or includes are in its directory's `include/` (Jinja2's
FileSystemLoader there; strata finds them in a module's `include/`).
"""

import copy
import fnmatch
import hashlib
import json
import os
import shlex
import sys

import jinja2
import jinja2.ext
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


def mandatory(value, msg=None):
    if isinstance(value, jinja2.Undefined):
        raise jinja2.UndefinedError(msg or "Mandatory variable not defined.")
    return value


def quote(value):
    """Ansible's `quote`: `shlex.quote` of the text, none as ''."""
    return shlex.quote("" if value is None else str(value))


def get_hash(data, hashtype="sha1"):
    """Ansible's `hash`: the hex digest of the UTF-8 text."""
    h = hashlib.new(hashtype)
    h.update(str(data).encode("utf-8"))
    return h.hexdigest()


def to_bool(value):
    """Ansible's `bool`: yes/on/1/true (any case) true, no/off/0/false false, the rest
    by `== 1`; none stays none."""
    if value is None or isinstance(value, bool):
        return value
    word = str(value).lower() if isinstance(value, (str, int)) else value
    if word in ("yes", "on", "1", "true"):
        return True
    if word in ("no", "off", "0", "false"):
        return False
    return word == 1


# A stand-in for Salt itself (which is not installed here): the execution functions the
# corpus's formulas call, written after Salt's source (salt/utils/data.py's
# traverse_dict_and_list and filter_by, salt/utils/dictupdate.py's update,
# salt/modules/pillar.py's get, salt/modules/grains.py's get and filter_by).
_MISSING = object()


def traverse(data, key, default, delimiter=":"):
    """salt.utils.data.traverse_dict_and_list."""
    value = data
    for part in key.split(delimiter):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list):
            try:
                value = value[int(part)]
            except (ValueError, IndexError):
                return default
        else:
            return default
    return value


def dict_update(dest, upd):
    """salt.utils.dictupdate.update(dest, upd), recursive, lists replaced."""
    for key, val in upd.items():
        sub = dest.get(key)
        if isinstance(sub, dict) and isinstance(val, dict):
            dest[key] = dict_update(sub, val)
        else:
            dest[key] = val
    return dest


def filter_by(lookup_dict, lookup, traverse_data, merge=None, default="default", base=None):
    """salt.utils.data.filter_by."""
    ret = None
    val = traverse(traverse_data, lookup, [])
    for each in val if isinstance(val, list) else [val]:
        for key in lookup_dict:
            if fnmatch.fnmatchcase(str(each), str(key)):
                ret = lookup_dict[key]
                break
        if ret is not None:
            break
    if ret is None:
        ret = lookup_dict.get(default, None)
    if base and base in lookup_dict:
        base_values = lookup_dict[base]
        if ret is None:
            ret = base_values
        elif isinstance(base_values, dict):
            ret = dict_update(copy.deepcopy(base_values), ret)
    if merge:
        if ret is None:
            ret = merge
        else:
            dict_update(ret, copy.deepcopy(merge))
    return ret


def salt_functions(pillar, grains):
    """The `salt` dict of execution functions that read the pillar and the grains."""
    def pillar_get(key, default="", merge=False, delimiter=":"):
        if merge:
            if isinstance(default, dict):
                ret = traverse(pillar, key, {}, delimiter)
                if isinstance(ret, dict):
                    return dict_update(copy.deepcopy(default), ret)
            elif isinstance(default, list):
                ret = traverse(pillar, key, [], delimiter)
                if isinstance(ret, list):
                    default = copy.deepcopy(default)
                    default.extend([x for x in ret if x not in default])
                    return default
        return traverse(pillar, key, default, delimiter)

    def grains_get(key, default="", delimiter=":"):
        return traverse(grains, key, default, delimiter)

    def grains_filter_by(lookup_dict, grain="os_family", merge=None, default="default", base=None):
        return filter_by(lookup_dict, grain, grains, merge, default, base)

    return {"pillar.get": pillar_get, "config.get": pillar_get, "grains.get": grains_get,
            "grains.filter_by": grains_filter_by}


class SaltImports(jinja2.ext.Extension):
    """Salt's `{% import_yaml "x" as d %}` (and `import_json`, `import_text`), as its
    SerializerExtension (salt/utils/jinja.py) parses them: an `import` of the file, then
    the module's text loaded as YAML (JSON, or kept as text)."""

    tags = {"import_yaml", "import_json", "import_text"}

    def parse(self, parser):
        converter = parser.stream.current.value[len("import_"):]
        import_node = parser.parse_import()
        target, lineno = import_node.target, import_node.lineno
        return [
            import_node,
            jinja2.nodes.Assign(
                jinja2.nodes.Name(target, "store").set_lineno(lineno),
                jinja2.nodes.Filter(
                    jinja2.nodes.Name(target, "load").set_lineno(lineno),
                    f"load_{converter}", [], [], None, None,
                ).set_lineno(lineno),
            ).set_lineno(lineno),
        ]


def loader(template_path):
    """The case's `include/`, where its template finds the templates it imports."""
    include = os.path.join(os.path.dirname(template_path), "include")
    return jinja2.FileSystemLoader(include) if os.path.isdir(include) else None


def render_salt(source, variables, template_path):
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols", SaltImports],
        loader=loader(template_path),
    )
    env.filters["load_yaml"] = lambda v: yaml.safe_load(str(v))
    env.filters["load_json"] = lambda v: json.loads(str(v))
    env.filters["load_text"] = str
    env.globals["salt"] = salt_functions(variables, variables.get("grains", {}))
    # Salt makes the context globals, so that imported templates (map.jinja) see them.
    env.globals.update(variables)
    out = env.from_string(source).render(variables)
    return out + "\n" if source.endswith("\n") else out


def main():
    template_path, vars_path = sys.argv[1], sys.argv[2]
    salt = sys.argv[3:] == ["--salt"]
    with open(template_path, encoding="utf-8") as f:
        source = f.read()
    with open(vars_path, encoding="utf-8") as f:
        variables = json.load(f)
    if salt:
        sys.stdout.buffer.write(render_salt(source, variables, template_path).encode("utf-8"))
        return
    options = {"trim_blocks": True}
    if source.startswith("#jinja2:"):
        line, _, source = source.partition("\n")
        for pair in line[len("#jinja2:"):].split(","):
            key, value = pair.split(":", 1)
            options[key.strip()] = {"True": True, "False": False}[value.strip()]
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, loader=loader(template_path), **options)
    env.filters.update({
        "comment": comment, "to_nice_yaml": to_nice_yaml, "to_yaml": to_yaml,
        "to_nice_json": to_nice_json, "to_json": json.dumps, "ternary": ternary,
        "mandatory": mandatory, "quote": quote, "hash": get_hash, "bool": to_bool,
    })
    # Ansible's tests (`any` and `all` are Python's builtins there too).
    env.tests.update({"version": version, "version_compare": version, "any": any, "all": all})
    out = env.from_string(source).render(variables)
    trailing = lambda s: len(s) - len(s.rstrip("\n"))
    out += "\n" * max(0, trailing(source) - trailing(out))
    sys.stdout.buffer.write(out.encode("utf-8"))


if __name__ == "__main__":
    main()
