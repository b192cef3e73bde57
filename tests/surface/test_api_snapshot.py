"""The public API equals the committed snapshot ``tests/api_snapshot.txt``; every exported name resolves.

The snapshot changes only on purpose. When this test fails after an intended API change, regenerate it
with ``python tests/surface/test_api_snapshot.py --update`` and commit the diff with the change: a reviewer then
sees every added or removed public name. Removing or renaming a name breaks users' code (keep an alias,
or say so in the change log).

Sections: ``keras_patterns`` is ``kp.__all__``; the packages with an ``__all__`` (``analyzers``,
``canonizers``, ``graph``, ``patterns``, ``rules``) list it; the user-facing modules without one
(``callbacks``, ``datasets``, ``errors``, ``io``, ``models``, ``visualization``) list the public names
they define (not the ones they import); ``registry`` is ``kp.list_analyzers()`` (the names users type).
"""

import importlib
import inspect
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script too
import paths  # noqa: E402

SNAPSHOT = os.path.join(paths.TESTS, "api_snapshot.txt")
WITH_ALL = ("analyzers", "canonizers", "graph", "patterns", "rules")
WITHOUT_ALL = ("callbacks", "datasets", "errors", "io", "models", "visualization")
HOW_TO_UPDATE = (
    "If the change is deliberate, regenerate the snapshot with `python tests/test_api_snapshot.py "
    "--update` and commit it with the change. Removed or renamed names break users' code: keep an alias "
    "or announce the removal."
)


def _defined_here(module):
    """Public names a module defines itself: functions and classes whose ``__module__`` is the module,
    and module-level constants (UPPER_CASE)."""
    names = []
    for name, value in vars(module).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        if getattr(value, "__module__", None) == module.__name__ or name.isupper():
            names.append(name)
    return sorted(names)


def current_api():
    """``{section: sorted names}`` of the package as it is now."""
    import keras_patterns as kp

    api = {"keras_patterns": sorted(kp.__all__)}
    for name in WITH_ALL:
        api[f"keras_patterns.{name}"] = sorted(importlib.import_module(f"keras_patterns.{name}").__all__)
    for name in WITHOUT_ALL:
        api[f"keras_patterns.{name}"] = _defined_here(importlib.import_module(f"keras_patterns.{name}"))
    api["registry"] = sorted(kp.list_analyzers())
    return api


def read_snapshot(path=SNAPSHOT):
    sections, current = {}, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], [])
            else:
                current.append(line)
    return sections


def write_snapshot(api, path=SNAPSHOT):
    with open(path, "w", encoding="utf-8") as f:
        f.write("# The public API of keras_patterns, checked by tests/test_api_snapshot.py.\n"
                "# Regenerate with `python tests/surface/test_api_snapshot.py --update` after a deliberate change.\n")
        for section, names in api.items():
            f.write(f"\n[{section}]\n")
            f.writelines(f"{n}\n" for n in names)


@pytest.fixture(scope="module")
def api():
    return current_api()


def test_snapshot_file_is_sorted_and_has_no_duplicates():
    for section, names in read_snapshot().items():
        assert names == sorted(set(names)), f"[{section}] of {SNAPSHOT} must be sorted without duplicates"


def test_public_api_equals_the_snapshot(api):
    snapshot = read_snapshot()
    problems = []
    for section in sorted(set(api) | set(snapshot)):
        now, then = set(api.get(section, [])), set(snapshot.get(section, []))
        if now - then:
            problems.append(f"[{section}] new public names not in the snapshot: {sorted(now - then)}")
        if then - now:
            problems.append(f"[{section}] names in the snapshot that are gone (this breaks users): "
                            f"{sorted(then - now)}")
    assert not problems, "The public API changed.\n" + "\n".join(problems) + "\n" + HOW_TO_UPDATE


def test_every_name_in_all_resolves():
    """``kp.__all__`` is served lazily (PEP 562 ``__getattr__``): each name must resolve, in a fresh
    interpreter too (a name whose lazy module is wrong fails only there, not after another import)."""
    import keras_patterns as kp

    for name in kp.__all__:
        assert getattr(kp, name) is not None, name
        assert name in dir(kp), f"{name!r} is in kp.__all__ but not in dir(kp)"
    for section in WITH_ALL:
        module = importlib.import_module(f"keras_patterns.{section}")
        missing = [n for n in module.__all__ if not hasattr(module, n)]
        assert not missing, f"keras_patterns.{section}.__all__ names {missing}, which do not resolve"


def test_lazy_names_resolve_in_a_fresh_interpreter():
    import subprocess

    root = paths.ROOT
    code = ("import keras_patterns as kp\n"
            "bad = []\n"
            "for n in kp.__all__:\n"
            "    try:\n        getattr(kp, n)\n"
            "    except Exception as e:\n        bad.append((n, repr(e)))\n"
            "print('BAD', bad)")
    env = dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip().splitlines()[-1] == "BAD []", out.stdout + out.stderr


def test_unknown_attribute_is_an_attribute_error():
    import keras_patterns as kp

    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        kp.no_such_name  # noqa: B018
    assert not hasattr(kp, "no_such_name")


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/surface/test_api_snapshot.py --update")
    sys.path.insert(0, paths.ROOT)
    write_snapshot(current_api())
    print(f"wrote {SNAPSHOT}")
