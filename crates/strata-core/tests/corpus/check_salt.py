#!/usr/bin/env python3
"""Checks reference.py's stand-in for Salt against Salt itself (not run by the tests).

Usage: PYTHON-WITH-SALT check_salt.py CORPUS_DIR   (`pip install salt` in a venv)

Renders each Salt case of the corpus with Salt's own `render_jinja_tmpl` (saltenv unset:
imports are found beside the template, so the case's `include/` stands for it) and
Salt's own `pillar.get` / `grains.get` / `grains.filter_by` over the case's VARS.json,
and compares the bytes with `reference.py --salt`. Exit status: how many differ.
"""
import json, os, subprocess, sys
import salt.utils.templates as T
import salt.modules.pillar as P
import salt.modules.grains as G
import salt.modules.config as C

corpus = sys.argv[1]
bad = 0
for case in sorted(os.listdir(corpus)):
    d = os.path.join(corpus, case)
    if not os.path.exists(os.path.join(d, "salt")):
        continue
    variables = json.load(open(os.path.join(d, "vars.json")))
    grains = variables.get("grains", {})
    opts = {"grains": grains, "pillar": variables, "renderer": "jinja|yaml", "id": "n",
            "pillar_raise_on_missing": False}
    for m in (P, G, C):
        m.__pillar__ = variables
        m.__grains__ = grains
        m.__opts__ = opts
    # Salt 3008 masks pillar values unless asked not to (a state's templates see them).
    pget = lambda *a, **k: P.get(*a, unmask=True, **k)
    salt_funcs = {"pillar.get": pget, "config.get": pget, "grains.get": G.get,
                  "grains.filter_by": G.filter_by}
    src = open(os.path.join(d, "template.j2"), encoding="utf-8").read()
    include = os.path.join(d, "include")
    # saltenv unset: Salt loads imports from the template's own directory.
    tmplpath = os.path.join(include if os.path.isdir(include) else d, "template.j2")
    ctx = dict(variables)
    ctx.update({"opts": opts, "saltenv": None, "salt": salt_funcs})
    out = T.render_jinja_tmpl(src, ctx, tmplpath=tmplpath)
    ref = subprocess.run([sys.executable, os.path.join(corpus, "reference.py"),
                          os.path.join(d, "template.j2"), os.path.join(d, "vars.json"), "--salt"],
                         capture_output=True, check=True).stdout.decode()
    print(case, "same" if out == ref else "DIFFERENT")
    if out != ref:
        bad += 1
        import difflib
        sys.stdout.writelines(difflib.unified_diff(ref.splitlines(True), out.splitlines(True), "reference", "salt"))
sys.exit(bad)
