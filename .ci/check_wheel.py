"""CI: the wheel a user installs holds every package of the source tree, and its CLI works.

Run by .ci/run after the editable install: builds a wheel, installs it NON-editable into a fresh
virtual environment, and from a folder outside the checkout (so the source tree cannot shadow it)
checks that every source package imports from that environment's site-packages, that
``ptx-annotate --help`` runs, and that ``ptx-annotate info`` reads a real CT (or a generated
phantom when ../shared/data is absent).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
ROOTS = {"ptx_annotator": "ptx_annotator", "ptx_annotator.plugins": "plugins", "ptx_annotator.training": "training"}
SHARED_CT = REPO.parent / "shared" / "data" / "ct" / "tcia_lung_pet_ct_dx_A0001"


def source_packages() -> list[str]:
    names = []
    for name, folder in ROOTS.items():
        for init in sorted((REPO / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(REPO / folder)
            names.append(".".join([name, *rel.parts]))
    return sorted(set(names))


def wheel_modules(wheel: pathlib.Path) -> list[str]:
    """The Python files of the package inside ``wheel`` (paths in the wheel)."""
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        return [n for n in archive.namelist() if n.startswith("ptx_annotator/") and n.endswith(".py")]


def source_file(wheel_path: str) -> pathlib.Path:
    """Where a wheel's ``ptx_annotator/...`` file comes from in the source tree (ROOTS, longest first)."""
    parts = wheel_path.split("/")
    for name, folder in sorted(ROOTS.items(), key=lambda item: -len(item[0])):
        depth = len(name.split("."))
        if ".".join(parts[:depth]) == name:
            return REPO / folder / "/".join(parts[depth:])
    raise AssertionError(f"{wheel_path} lies outside the packages of the source tree")


def run(cmd, **kw):
    print("+", " ".join(map(str, cmd)), flush=True)
    return subprocess.run(cmd, check=True, text=True, **kw)


def main() -> int:
    work = pathlib.Path(tempfile.mkdtemp(prefix="ptx-wheel-"))
    shutil.rmtree(REPO / "build", ignore_errors=True)  # setuptools would pack a stale build/lib into the wheel
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work / "dist"), str(REPO)])
    wheels = sorted((work / "dist").glob("ptx_annotator-*.whl"))
    assert len(wheels) == 1, f"expected one wheel, found {wheels}"
    stale = [name for name in wheel_modules(wheels[0]) if not source_file(name).is_file()]
    assert not stale, f"the wheel holds modules the source tree does not (a stale build/ folder?): {stale}"
    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    run([str(py), "-m", "pip", "install", "-q", str(wheels[0])])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    packages = source_packages()
    probe = ("import importlib, json, sys\n"
             f"names = {packages!r}\n"
             "where = {n: importlib.import_module(n).__file__ for n in names}\n"
             "print(json.dumps(where))\n")
    out = run([str(py), "-c", probe], cwd=work, env=env, capture_output=True).stdout
    where = json.loads(out)
    site = str(venv)
    outside = {n: f for n, f in where.items() if not f.startswith(site)}
    assert not outside, f"packages not from the installed wheel: {outside}"
    print(f"wheel: all {len(packages)} source packages installed", flush=True)
    cli = venv / "bin" / "ptx-annotate"
    run([str(cli), "--help"], cwd=work, env=env, capture_output=True)
    study = SHARED_CT
    if not study.is_dir():
        made = run([str(py), "-c", "import sys; from ptx_annotator.synthetic.phantom import make_chest_phantom, "
                    "save_phantom; print(save_phantom(make_chest_phantom(), sys.argv[1])[0])", str(work / "phantom")],
                   cwd=work, env=env, capture_output=True).stdout
        study = pathlib.Path(made.strip().splitlines()[-1])
    info = run([str(cli), "info", str(study), "--json"], cwd=work, env=env, capture_output=True).stdout
    json.loads(info)
    print(f"wheel: ptx-annotate info {study.name} --json works from the wheel", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        for leftover in pathlib.Path(tempfile.gettempdir()).glob("ptx-wheel-*"):
            shutil.rmtree(leftover, ignore_errors=True)
