"""Packaging: what nginx reads besides the package (template, Lua, demo manifests) ships in a
wheel, and the code finds it beside the package in a checkout or under <prefix>/share/ingressd.

    pyproject.toml [tool.setuptools.data-files] --wheel--> <prefix>/share/ingressd/...
    ingressd.nginx.rendering.resource_root(package file, prefix) --> templates/, lua/, manifests/
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from ingressd.nginx.rendering import PROJECT_ROOT, resource_root

ROOT = Path(__file__).resolve().parents[1]


def test_a_checkout_is_used_where_it_has_the_template(tmp_path: Path) -> None:
    package_file = tmp_path / "ingressd" / "nginx" / "rendering.py"
    package_file.parent.mkdir(parents=True)
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "nginx.conf.j2").write_text("")
    assert resource_root(package_file, tmp_path / "prefix") == tmp_path


def test_an_installed_package_uses_the_share_directory_of_its_prefix(tmp_path: Path) -> None:
    package_file = tmp_path / "site-packages" / "ingressd" / "nginx" / "rendering.py"
    package_file.parent.mkdir(parents=True)
    assert resource_root(package_file, tmp_path / "venv") == tmp_path / "venv/share/ingressd"


def test_this_checkout_is_where_the_running_code_finds_its_files() -> None:
    assert PROJECT_ROOT == ROOT


def test_the_wheel_data_files_cover_every_lua_module_the_template_and_the_demo() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped: set[str] = set()
    for target, patterns in config["tool"]["setuptools"]["data-files"].items():
        assert target.startswith("share/ingressd/")
        for pattern in patterns:
            matched = sorted(ROOT.glob(pattern))
            assert matched, pattern
            for path in matched:
                relative = path.relative_to(ROOT)
                # Installed at <target>/<name>: the layout under share/ingressd is the checkout's.
                assert f"share/ingressd/{relative.parent}" == target, (pattern, target)
                shipped.add(str(relative))
    needed = {str(p.relative_to(ROOT)) for p in (ROOT / "lua" / "ingressd").rglob("*.lua")}
    needed |= {"templates/nginx.conf.j2"}
    needed |= {str(p.relative_to(ROOT)) for p in (ROOT / "manifests" / "demo").glob("*.yaml")}
    assert needed <= shipped, sorted(needed - shipped)
