"""Test sessions. Each session builds the distributions as wheels and installs them into its own venv, so a
packaging mistake (a missing entry point or module) fails here.

    nox -s ci          what CI runs: the core alone, then every plugin and the cross-package tests together
    nox -s core        core tests with no plugin installed
    nox -s plugin      each plugin's own tests, in its own venv (core + that plugin and what it depends on)
    nox -s all         every distribution installed, every test
    nox -s unsloth     the Unsloth backend in a venv with Unsloth's pins (TRL 1.15), plus the TRL backend's tests there
    nox -s demo        the offline demo, as the README runs it
    nox -s wheels      one wheel per distribution in dist/, to install elsewhere (docs/installing.md)
    nox -s docs        the documentation site (mkdocs build --strict)
"""

from __future__ import annotations

from pathlib import Path

import nox

ROOT = Path(__file__).parent
DIST = ROOT / "dist"
CORE = "aligntune_core"
PLUGINS = {
    "trl": "plugins/aligntune-backend-trl",
    "hh-rlhf": "plugins/aligntune-data-hh-rlhf",
    "oasst1": "plugins/aligntune-data-oasst1",
    "dpop": "plugins/aligntune-loss-dpop",  # the example third-party loss plugin
}
# The CPU build of torch available on our machines; ranges in our dependencies accept it, so nothing bigger is pulled.
TORCH = "torch==2.13.0"
UNSLOTH = "plugins/aligntune-backend-unsloth"
# Unsloth pins trl<=1.15, transformers<=5.17, datasets<5 and torch<2.15. With these pins pip keeps the CPU torch;
# the registry's torchvision 0.28.0 is a CUDA build whose operators fail to load next to it, so it is removed after
# installing (nothing we run needs it).
UNSLOTH_STACK = [TORCH, "torchvision==0.28.0", "unsloth==2026.10.9"]

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = False
nox.options.sessions = ["ci"]


def _build_wheels(session: nox.Session, *sources: str) -> list[str]:
    session.install("build")
    wheels = []
    for source in sources:
        out = DIST / Path(source).name
        session.run("python", "-m", "build", "--wheel", "--outdir", str(out), source, silent=True)
        wheels.append(str(max(out.glob("*.whl"), key=lambda p: p.stat().st_mtime)))
    return wheels


def _install(session: nox.Session, *sources: str) -> None:
    session.install(TORCH)
    session.install(*_build_wheels(session, *sources), "pytest")


def _pytest(session: nox.Session, *paths: str) -> None:
    # Run from a temporary directory against the installed wheels, not the source tree.
    session.run("pytest", "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"), *session.posargs, *paths)


@nox.session
def core(session: nox.Session) -> None:
    _install(session, CORE)
    _pytest(session, "aligntune_core/tests")


@nox.session
@nox.parametrize("name", list(PLUGINS))
def plugin(session: nox.Session, name: str) -> None:
    _install(session, CORE, PLUGINS[name])
    _pytest(session, PLUGINS[name] + "/tests")


@nox.session(name="all")
def all_(session: nox.Session) -> None:
    _install(session, CORE, *PLUGINS.values())
    session.install("tensorboard")  # the tracker test reads the event files back
    _pytest(session, "aligntune_core/tests", *(p + "/tests" for p in PLUGINS.values()), "tests")


@nox.session
def unsloth(session: nox.Session) -> None:
    session.install(*UNSLOTH_STACK)
    session.install(*_build_wheels(session, CORE, PLUGINS["trl"], UNSLOTH), "pytest")
    session.run("pip", "uninstall", "-y", "torchvision")
    session.run("python", "-c", "import trl; print('TRL', trl.__version__)")
    # Separate processes: importing unsloth patches transformers/trl for the rest of the process.
    _pytest(session, PLUGINS["trl"] + "/tests")
    _pytest(session, UNSLOTH + "/tests")


# The docs site's builders, pinned to the versions it was checked with.
DOCS_STACK = ["mkdocs==1.6.1", "mkdocs-material==9.8.2", "mkdocstrings==1.0.8", "mkdocstrings-python==2.0.11"]


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built with --strict: a broken link, anchor or API reference fails."""
    session.install(*DOCS_STACK)
    session.run("mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
                "--site-dir", session.create_tmp() + "/site", env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def ci(session: nox.Session) -> None:
    session.notify("docs")
    session.notify("core")
    session.notify("all")
    session.notify("unsloth")


@nox.session
def wheels(session: nox.Session) -> None:
    """One wheel per distribution in dist/<folder>/, to install on another machine (docs/installing.md)."""
    for wheel in _build_wheels(session, CORE, *PLUGINS.values(), UNSLOTH):
        session.log(wheel)


@nox.session
def demo(session: nox.Session) -> None:
    _install(session, CORE, PLUGINS["trl"])
    session.run("aligntune", "train")
