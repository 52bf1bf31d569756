"""The conda environments of envs/ agree with pyproject.toml, the workflow and the code.

- every env file is valid: conda-forge channel, exact pins (`name=version`, pip `name==version`);
- every runtime dependency of pyproject.toml is in some env, at a version its specifier allows,
  and a package pinned in several envs has the same version in all of them;
- every `conda:` directive of the workflow names an env file that exists and installs the
  project (post-deploy script), and each rule's env holds every third-party package the code of
  its `txtrayalign` subcommand imports (found by reading the imports, transitively).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
ENVS = ROOT / "envs"
RULES = ROOT / "workflow" / "rules"
PACKAGE = ROOT / "txtrayalign"

# conda-forge names that differ from the PyPI distribution names in pyproject.toml
CONDA_TO_PYPI = {"pytorch": "torch", "matplotlib-base": "matplotlib"}
# packages an env may carry that pyproject does not list (the interpreter and installers)
TOOLING = {"python", "pip", "setuptools"}


def env_files() -> list[Path]:
    return sorted(ENVS.glob("*.yaml"))


def load_env(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def pinned_packages(path: Path) -> dict[str, Version]:
    """PyPI-normalised name -> pinned version, for the conda and pip dependencies of an env file."""
    pins: dict[str, Version] = {}
    for dep in load_env(path)["dependencies"]:
        if isinstance(dep, dict):
            for spec in dep["pip"]:
                name, _, version = spec.partition("==")
                pins[canonicalize_name(name)] = Version(version)
        else:
            name, _, version = dep.partition("=")
            name = canonicalize_name(name)
            pins[canonicalize_name(CONDA_TO_PYPI.get(name, name))] = Version(version)
    return pins


def runtime_requirements() -> list[Requirement]:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11+")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]]


# ------------------------------------------------------------------------------------ env files


@pytest.mark.parametrize("path", env_files(), ids=lambda p: p.name)
def test_env_file_is_valid_and_pinned(path: Path) -> None:
    env = load_env(path)
    assert isinstance(env, dict) and set(env) >= {"channels", "dependencies"}, (
        f"{path.name}: needs channels and dependencies"
    )
    assert env["channels"][0] == "conda-forge", f"{path.name}: conda-forge must come first"
    conda_pin = re.compile(r"^[a-z0-9][a-z0-9_.-]*=\d[\w.]*$")
    pip_pin = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*==\d[\w.]*$")
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            assert set(dep) == {"pip"}, f"{path.name}: unexpected mapping {dep}"
            assert "pip" in pinned_packages(path), f"{path.name}: a pip section needs pip itself pinned"
            for spec in dep["pip"]:
                assert pip_pin.match(spec), (
                    f"{path.name}: pip dependency {spec!r} is not pinned as name==version"
                )
        else:
            assert conda_pin.match(dep), f"{path.name}: dependency {dep!r} is not pinned as name=version"


def test_envs_exist() -> None:
    assert {"preprocess.yaml", "text.yaml", "train.yaml", "snakemake.yaml"} <= {p.name for p in env_files()}


def test_every_runtime_dependency_is_pinned_in_an_env_within_its_specifier() -> None:
    pins_by_env = {p.name: pinned_packages(p) for p in env_files()}
    for req in runtime_requirements():
        name = canonicalize_name(req.name)
        found = {env: pins[name] for env, pins in pins_by_env.items() if name in pins}
        assert found, f"pyproject dependency {req} is in no env of envs/"
        for env, version in found.items():
            assert req.specifier.contains(version, prereleases=True), (
                f"envs/{env} pins {req.name} {version}, outside pyproject's {req.specifier}"
            )


def test_a_package_has_one_version_across_envs() -> None:
    seen: dict[str, tuple[str, Version]] = {}
    for path in env_files():
        for name, version in pinned_packages(path).items():
            if name in seen:
                assert seen[name][1] == version, (
                    f"{name}: {seen[name][0]} pins {seen[name][1]}, {path.name} pins {version}"
                )
            else:
                seen[name] = (path.name, version)


def test_envs_pin_nothing_pyproject_does_not_know() -> None:
    known = {canonicalize_name(r.name) for r in runtime_requirements()} | TOOLING
    # pinned alongside a direct dependency on purpose
    known |= {"snakemake-executor-plugin-slurm-jobstep"}
    for path in env_files():
        extra = set(pinned_packages(path)) - known
        assert not extra, f"{path.name} pins {sorted(extra)}, which pyproject.toml does not list"


# ------------------------------------------------------------------------------------ workflow


def rule_blocks() -> dict[str, str]:
    """Rule name -> the text of its definition, from workflow/rules/*.smk."""
    if not RULES.is_dir():
        pytest.skip("workflow/rules/ does not exist yet")
    blocks: dict[str, str] = {}
    for smk in sorted(RULES.glob("*.smk")):
        parts = re.split(r"^rule (\w+):", smk.read_text(), flags=re.M)
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            blocks[name] = body
    return blocks


def rule_envs() -> dict[str, Path]:
    """Rule name -> the env file its `conda:` directive names."""
    envs = {}
    for name, body in rule_blocks().items():
        match = re.search(r"^\s+conda:\s*\n\s+[\"']([^\"']+)[\"']", body, flags=re.M)
        if match:
            envs[name] = (RULES / match.group(1)).resolve()
    return envs


def rule_subcommand(body: str) -> str | None:
    """The `txtrayalign` subcommand a rule's shell command runs (also through the torchrun launcher)."""
    shell = body.split("shell:", 1)[1] if "shell:" in body else ""
    match = re.search(r"(?:txtrayalign|\{params\.launcher\})\s+([a-z][a-z-]*)", shell)
    return match.group(1) if match else None


def test_rules_name_existing_envs_that_install_the_project() -> None:
    envs = rule_envs()
    assert envs, "no rule has a conda: directive"
    for rule, env in envs.items():
        assert env.is_file(), f"rule {rule}: conda env {env} does not exist"
        post_deploy = env.with_name(env.stem + ".post-deploy.sh")
        assert post_deploy.is_file(), (
            f"rule {rule}: {post_deploy.name} (installs txtrayalign into the env) is missing"
        )
        assert "pip install" in post_deploy.read_text() and "--editable" in post_deploy.read_text()


def module_file(module: str) -> Path | None:
    rel = Path(*module.split("."))
    for candidate in (ROOT / rel.with_suffix(".py"), ROOT / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def optional_imports(tree: ast.AST) -> set[int]:
    """ids of the import statements inside `try:` blocks that catch ImportError (optional extras)."""
    optional: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        caught = set()
        for handler in node.handlers:
            types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            caught |= {t.id for t in types if isinstance(t, ast.Name)}
        if caught & {"ImportError", "ModuleNotFoundError"}:
            optional |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return optional


def imported_top_level(module: str) -> set[str]:
    """Top-level names of the non-txtrayalign modules `module` needs, transitively (optional ones left out)."""
    found: set[str] = set()
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        parts = current.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run first
        path = module_file(current)
        if path is None:
            continue
        package = current if path.name == "__init__.py" else current.rpartition(".")[0]
        tree = ast.parse(path.read_text(), filename=str(path))
        optional = optional_imports(tree)
        for node in ast.walk(tree):
            names: list[str] = []
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for name in names:
                if name.split(".")[0] == "txtrayalign":
                    todo.append(name)
                elif name:
                    found.add(name.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"__future__", "txtrayalign"}


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distributions_of(top_level: str) -> set[str]:
    dists = _packages_distributions().get(top_level)
    if not dists:
        raise AssertionError(f"imported module {top_level!r} belongs to no installed distribution")
    return {canonicalize_name(d) for d in dists}


def test_each_rule_env_holds_what_its_code_imports() -> None:
    from txtrayalign.cli import COMMANDS

    blocks = rule_blocks()
    checked = []
    missing_modules = []
    for rule, env in rule_envs().items():
        sub = rule_subcommand(blocks[rule])
        assert sub is not None, f"rule {rule}: its shell command runs no txtrayalign subcommand"
        assert sub in COMMANDS, f"rule {rule}: `txtrayalign {sub}` is not a subcommand of txtrayalign/cli.py"
        module = COMMANDS[sub][0]
        if module_file(module) is None:
            missing_modules.append(module)
            continue
        pins = pinned_packages(env)
        for top in sorted(imported_top_level(module)):
            dists = distributions_of(top)
            assert dists & set(pins), (
                f"rule {rule} runs {module}, which imports {top} ({', '.join(sorted(dists))}), "
                f"but envs/{env.name} does not pin it"
            )
        checked.append(rule)
    assert checked, f"no rule's module exists yet ({missing_modules})"


# ------------------------------------------------------------------------------------ post-deploy


def make_env_like_venv(tmp_path: Path) -> Path:
    """A bare virtualenv standing in for a freshly built conda env.

    Its pip and setuptools come from the test interpreter's site-packages (added by a .pth line,
    which does not run that folder's own .pth hooks, so the test environment's own editable
    txtrayalign stays invisible).
    """
    import subprocess
    import sysconfig
    import venv

    env = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env)
    site = Path(
        subprocess.run(
            [env / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "_tooling.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = subprocess.run(
        [env / "bin" / "python", "-c", "import setuptools, pip"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        pytest.skip(f"pip/setuptools of {sys.executable} not usable from a new env: {probe.stderr[-300:]}")
    return env


def copy_checkout(tmp_path: Path) -> Path:
    import shutil

    src = tmp_path / "checkout"
    src.mkdir()
    shutil.copy2(ROOT / "pyproject.toml", src)
    shutil.copytree(PACKAGE, src / "txtrayalign", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return src


@pytest.mark.slow
def test_post_deploy_installs_the_project_into_the_env(tmp_path: Path) -> None:
    import os
    import subprocess

    env, src = make_env_like_venv(tmp_path), copy_checkout(tmp_path)
    elsewhere = tmp_path / "workdir"
    elsewhere.mkdir()
    run_env = {**os.environ, "PATH": f"{env / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(env)}
    script = ENVS / "train.post-deploy.sh"

    # Without TXTRAYALIGN_SRC, from a folder that is not a checkout: a clear refusal.
    run_env.pop("TXTRAYALIGN_SRC", None)
    run_env.pop("PYTHONPATH", None)  # a developer's PYTHONPATH=<checkout> would hide which code the env imports
    lost = subprocess.run(["bash", script], cwd=elsewhere, env=run_env, capture_output=True, text=True)
    assert lost.returncode != 0 and "TXTRAYALIGN_SRC" in lost.stderr

    done = subprocess.run(
        ["bash", script],
        cwd=elsewhere,
        env={**run_env, "TXTRAYALIGN_SRC": str(src)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    where = subprocess.run(
        [env / "bin" / "python", "-c", "import txtrayalign; print(txtrayalign.__file__)"],
        cwd=elsewhere,
        env=run_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where) == src / "txtrayalign" / "__init__.py"  # editable: the checkout's code
    help_text = subprocess.run(
        [env / "bin" / "txtrayalign", "--help"], capture_output=True, text=True, check=True
    )
    assert "train" in help_text.stdout


def test_import_reading_finds_required_and_skips_optional_imports() -> None:
    assert {"torch", "numpy", "pandas"} <= imported_top_level("txtrayalign.train.cli")
    assert "pydicom" in imported_top_level("txtrayalign.images.cli")
    tree = ast.parse(
        "import numpy\ntry:\n    import cv2\nexcept ImportError:\n    cv2 = None\n"
        "try:\n    import yaml\nexcept KeyError:\n    pass\n"
    )
    optional = optional_imports(tree)
    imports = {n.names[0].name: id(n) in optional for n in ast.walk(tree) if isinstance(n, ast.Import)}
    assert imports == {"numpy": False, "cv2": True, "yaml": False}
