"""Hostile YAML/JSON: alias bombs and deep nesting are refused with the file and line (issue 17)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ovapipe.bounded import MAX_ALIAS_NODES, MAX_DEPTH, check_depth, load_json, load_yaml
from ovapipe.errors import ConfigError

CAPV = Path(__file__).parent / "data" / "capv"


def alias_bomb(depth: int, width: int, indent: str = "") -> str:
    lines = [f"{indent}l0: &l0 [lol, lol]"]
    for level in range(1, depth + 1):
        refs = ", ".join([f"*l{level - 1}"] * width)
        lines.append(f"{indent}l{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


def walked(value: Any) -> int:
    """Nodes a full walk visits (aliases counted each time), iteratively."""
    count, pending = 0, [value]
    while pending:
        node = pending.pop()
        count += 1
        if isinstance(node, dict):
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return count


@settings(max_examples=60, deadline=None)
@given(depth=st.integers(1, 12), width=st.integers(2, 10))
def test_alias_bombs_are_refused_or_small(depth: int, width: int) -> None:
    text = alias_bomb(depth, width)
    try:
        data = load_yaml(text, "bomb.yaml")
    except ConfigError as exc:
        assert exc.message.startswith("bomb.yaml: line ")
        assert "aliases expand to more than" in exc.message
        return
    assert walked(data) <= MAX_ALIAS_NODES + 4 * len(text)


@settings(max_examples=40, deadline=None)
@given(depth=st.integers(1, 3 * MAX_DEPTH), flow=st.booleans(), json_form=st.booleans())
def test_deep_nesting_is_refused_beyond_the_cap(depth: int, flow: bool, json_form: bool) -> None:
    if json_form:
        text = "[" * depth + "]" * depth
        loader = load_json
    elif flow:
        text = "[" * depth + "]" * depth
        loader = load_yaml
    else:
        text = "".join("  " * level + "-\n" for level in range(depth - 1)) + "  " * depth + "- x\n"
        loader = load_yaml
    if depth > MAX_DEPTH:
        with pytest.raises(ConfigError, match="nested more than"):
            loader(text, "deep")
    else:
        loader(text, "deep")


def test_json_deeper_than_python_recursion_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="deep: nested more than"):
        load_json("[" * 200_000 + "]" * 200_000, "deep")


def test_recursive_alias_is_refused_with_its_line() -> None:
    with pytest.raises(ConfigError, match=r"x.yaml: line 2: alias \*a refers to a node"):
        load_yaml("top:\n  a: &a [1, *a]\n", "x.yaml")


def test_plain_anchors_still_load() -> None:
    assert load_yaml("a: &x {k: 1}\nb: *x\n", "x.yaml") == {"a": {"k": 1}, "b": {"k": 1}}


def test_check_depth_on_loaded_values() -> None:
    value: Any = []
    for _ in range(MAX_DEPTH + 1):
        value = [value]
    with pytest.raises(ConfigError, match="v: nested"):
        check_depth(value, "v")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("depth", [7, 9])
def test_cluster_template_refuses_a_bomb_inside_a_machine_template(
    tmp_path: Path, depth: int
) -> None:
    """Measured: 1.2 KB took 4.9 s / 161 MB at depth 7 and was at 3.7 GB after 120 s at 9."""
    from ovapipe.clustertemplate import ClusterTemplateRequest, run

    bomb = alias_bomb(depth, 9, indent="      ")
    text = (
        "apiVersion: infrastructure.cluster.x-k8s.io/v1beta1\n"
        "kind: VSphereMachineTemplate\n"
        "metadata:\n  name: ${CLUSTER_NAME}-worker\n"
        "spec:\n  template:\n    spec:\n      template: t\n" + bomb
    )
    assert len(text) < 2048
    source = tmp_path / "bomb.yaml"
    source.write_text(text)
    with pytest.raises(ConfigError, match=r"bomb.yaml: document 1: line \d+: aliases expand"):
        run(ClusterTemplateRequest(in_path=source, gpus=["10de:1eb8"]))


def test_var_file_nesting_is_capped(tmp_path: Path) -> None:
    from ovapipe.varfiles import load_layer

    layer = tmp_path / "deep.json"
    layer.write_text(json.dumps({"x": json.loads("[" * 150 + "]" * 150)}))
    with pytest.raises(ConfigError, match=r"deep\.json: nested more than"):
        load_layer(layer)


def test_project_invoke_yaml_bomb_is_refused_before_invoke_reads_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    from ovapipe.paths import REPO_ROOT

    (tmp_path / "tasks.py").write_text((REPO_ROOT / "tasks.py").read_text())
    (tmp_path / "invoke.yaml").write_text("ovapipe:\n  datacenter: DC0\n" + alias_bomb(9, 9))
    result = subprocess.run([sys.executable, "-m", "invoke", "--list"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "invoke.yaml: line " in result.stderr and "aliases expand" in result.stderr
    assert "Traceback" not in result.stderr


def test_plain_project_invoke_yaml_is_left_to_invoke(tmp_path: Path) -> None:
    from ovapipe.bounded import refuse_hostile_project_config

    (tmp_path / "invoke.yaml").write_text("ovapipe:\n  datacenter: DC0\n  list: [a, b]\n")
    refuse_hostile_project_config(tmp_path / "tasks.py")


def test_set_json_list_nesting_is_capped() -> None:
    from ovapipe.varfiles import coerce

    with pytest.raises(ConfigError, match="--set iso_paths: nested more than"):
        coerce("[" * 100_000, {"type": "array"}, "iso_paths")
