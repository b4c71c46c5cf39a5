"""Benchmark: the base install (pyproject `dependencies`, no extras) into an OpenShift AI workbench-like kernel.

Makes a fresh python3.11 venv (pip 26.3), installs the kernel a workbench image ships (torch 2.13.0 CPU,
JupyterLab 4.4.10, ipykernel: setup, timed apart), then times `pip install <repo>` (base only, wheels only,
no constraints file: the ranges in pyproject decide) with a cold pip cache. Checks that the kernel's torch,
jupyterlab and ipykernel are unchanged, no CUDA/nvidia-* package came in, `pip check` is clean, the local
stack (llama_cpp, moto, milvus_lite) is not importable and every docbot_lib module imports; then runs
notebooks/00-environment-check.ipynb with DOCBOT_STACK=cluster and prints its cell outputs. Prints the
figures; exits 1 if a check fails. Takes a few minutes.

    python bench/workbench_install.py [--keep] [--venv PATH] [--no-run-notebook] [--warm-cache]
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIP_VERSION = "26.3"
KERNEL = ("torch", "jupyterlab", "ipykernel")
LOCAL_STACK = ("llama_cpp", "moto", "milvus_lite")
MODULES = "core.settings checks pipeline.vectordb pipeline.serving k8s.manifests pipeline.store pipeline.ingest pipeline.rag pipeline.api".split()
PEER = (
    "peer: `make install` (requirements.txt + constraints.txt, the whole local stack) "
    "4-10 min on a machine's first llama.cpp build"
)
failures: list[str] = []


def check(name: str, ok: bool, detail: str = "") -> bool:
    print(f"  [{'ok' if ok else 'FAIL'}] {name}" + (f": {detail}" if detail else ""))
    if not ok:
        failures.append(name)
    return ok


def run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], text=True, capture_output=True, **kw)


def timed(cmd, **kw) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    return run(cmd, **kw), time.monotonic() - start


def freeze(py: Path, env) -> dict[str, str]:
    out = {}
    for line in run([py, "-m", "pip", "freeze", "--all"], env=env).stdout.splitlines():
        name, sep, ver = line.partition("==") if "==" in line else line.partition(" @ ")
        if sep:
            out[re.sub(r"[-_.]+", "-", name).lower()] = ver.strip()
    return out


def mib(path: Path) -> float:
    """Size on disk (allocated blocks, hard links once)."""
    stats = (os.lstat(os.path.join(folder, f)) for folder, _, files in os.walk(path) for f in files)
    return sum({(st.st_dev, st.st_ino): st.st_blocks for st in stats}.values()) * 512 / 2**20


def pick_jupyterlab(py: Path, env, wanted: str) -> str:
    out = run([py, "-m", "pip", "index", "versions", "jupyterlab"], env=env).stdout
    found = re.search(r"Available versions: (.*)", out)
    versions = [v.strip() for v in found.group(1).split(",")] if found else []
    if wanted not in versions or wanted == "4.6.6":
        wanted = next(v for v in versions if re.fullmatch(r"4\.\d+\.\d+", v) and v != "4.6.6")
        print(f"  jupyterlab: taking {wanted}, the newest 4.x here but 4.6.6")
    return wanted


def fail_out(proc: subprocess.CompletedProcess, lines: int = 25) -> str:
    """The tail of a failed command's output ("" when it succeeded)."""
    return "" if proc.returncode == 0 else "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-lines:])


def notebook(venv: Path, tmp: Path, src: Path, env) -> None:
    for folder in ("envdir", "home"):
        (tmp / folder).mkdir()
    (tmp / "envdir" / ".env").write_text("")
    nb_env = {k: v for k, v in env.items() if not k.startswith(("AWS_", "DOCBOT_"))}
    nb_env.update(
        DOCBOT_STACK="cluster",
        DOCBOT_ENV_FILE=str(tmp / "envdir" / ".env"),
        HOME=str(tmp / "home"),
        PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}",
    )
    out = tmp / "00.ipynb"
    # --allow-errors keeps every cell's output when a cell fails; "completed" still means no cell raised
    proc, secs = timed(
        [
            venv / "bin" / "jupyter",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--allow-errors",
            "--output",
            out,
            "00-environment-check.ipynb",
        ],
        cwd=src / "notebooks",
        env=nb_env,
        timeout=900,
    )
    if not check("notebook 00 ran", proc.returncode == 0 and out.exists(), fail_out(proc)):
        return
    errors = []
    print(f"--- notebooks/00-environment-check.ipynb, text outputs ({secs:.1f} s) ---")
    for cell in json.loads(out.read_text())["cells"]:
        for o in cell.get("outputs", []):
            if o["output_type"] == "stream":
                print("".join(o["text"]).rstrip())
            elif "data" in o and "text/plain" in o["data"]:
                print("".join(o["data"]["text/plain"]).rstrip())
            elif o["output_type"] == "error":
                errors.append(o["ename"])
                print(f"{o['ename']}: {o['evalue']}")
    print("--- end of notebook output ---")
    print(f"  notebook 00: {'completed' if not errors else 'FAILED (' + ', '.join(errors) + ')'}")
    # only a missing module is the base install's fault; the report's own verdict is not asserted on
    check("notebook 00 found every module", not {"ModuleNotFoundError", "ImportError"} & set(errors))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", type=Path, help="make the venv here (cleared first, kept) instead of a temp folder")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder and its venv")
    ap.add_argument("--jupyterlab", default="4.4.10", help="the kernel's JupyterLab (not 4.6.6)")
    ap.add_argument("--run-notebook", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--warm-cache", action="store_true", help="use pip's own cache (default: an empty one)")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    tmp = Path(tempfile.mkdtemp(prefix="workbench-install-"))
    venv = args.venv.resolve() if args.venv else tmp / "venv"
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    if not args.warm_cache:
        env["PIP_CACHE_DIR"] = str(tmp / "pip-cache")
    pip = [py, "-m", "pip", "install", "--progress-bar", "off"]
    try:
        print(f"venv: {venv} (temp folder {tmp})")
        proc = run(["python3.11", "-m", "venv", "--clear", venv])
        if not check("venv with python3.11", proc.returncode == 0, fail_out(proc)):
            return 1
        proc = run(pip + ["-q", f"pip=={PIP_VERSION}"], env=env)
        version = run([py, "-m", "pip", "--version"], env=env).stdout.split(" from ")[0]
        if not check(f"pip {PIP_VERSION}", proc.returncode == 0, fail_out(proc) or version):
            return 1
        config = [ln for ln in run([py, "-m", "pip", "config", "list"], env=env).stdout.split() if "constraint" in ln]
        print(f"  machine pip config constraints (left as they are): {config or 'none'}")

        # never a CUDA torch: see what torch==2.13.0 resolves to before anything is downloaded
        proc = run(pip + ["--dry-run", "-q", "--no-deps", "--report", "-", "torch==2.13.0"], env=env)
        torch = json.loads(proc.stdout)["install"][0]["metadata"]["version"] if proc.returncode == 0 else "?"
        if not check("torch==2.13.0 resolves to the CPU build", torch.endswith("+cpu"), fail_out(proc) or torch):
            return 1
        kernel_reqs = ["torch==2.13.0", f"jupyterlab=={pick_jupyterlab(py, env, args.jupyterlab)}", "ipykernel"]
        proc, kernel_secs = timed(pip + ["--only-binary=:all:"] + kernel_reqs, env=env)
        if not check(f"kernel setup: {' '.join(kernel_reqs)}", proc.returncode == 0, fail_out(proc)):
            return 1
        before = freeze(py, env)
        kernel = {k: before.get(k, "missing") for k in KERNEL}
        print(f"  kernel (pip freeze): {', '.join(f'{k} {v}' for k, v in kernel.items())}")
        cuda = sorted(k for k in before if k.startswith(("nvidia-", "triton")))
        check(
            "kernel has the CPU torch, no nvidia-*/triton",
            kernel["torch"].endswith("+cpu") and not cuda,
            " ".join([kernel["torch"]] + cuda),
        )
        size_kernel = mib(venv)

        # a copy of the work tree: setuptools writes build/ and *.egg-info into the source folder
        src = tmp / "src"
        shutil.copytree(
            ROOT,
            src,
            ignore=shutil.ignore_patterns(
                ".git", ".venv", "build", "*.egg-info", "__pycache__", ".docbot", "runs", "models", ".env", ".hf-token"
            ),
        )
        log = tmp / "pip-base.log"
        proc, base_secs = timed(pip + ["--only-binary=:all:", "--log", log, src], env=env)
        load = os.getloadavg()[0]
        wheels_only = check("base install, wheels only (--only-binary=:all:)", proc.returncode == 0, fail_out(proc))
        if not wheels_only:
            no_wheel = sorted(set(re.findall(r"for the requirement ([^\s(]+)", proc.stdout + proc.stderr)))
            print(f"  no wheel for: {', '.join(no_wheel) or '(see the pip output above)'}; retrying without it")
            proc, base_secs = timed(pip + ["--log", log, src], env=env)
            if not check("base install (sdists allowed)", proc.returncode == 0, fail_out(proc)):
                return 1
        built = sorted(set(re.findall(r"Building wheel for (\S+)", log.read_text())) - {"docbot"})
        check("no wheel built from source other than docbot", not built, ", ".join(built))

        after = freeze(py, env)
        size_base = mib(venv)
        added = sorted(set(after) - set(before))
        changed = sorted(f"{k} {before[k]} -> {after[k]}" for k in before if k in after and before[k] != after[k])
        for k in KERNEL:
            check(f"{k} unchanged", before.get(k) == after.get(k), f"{before.get(k)} -> {after.get(k)}")
        cuda = sorted(k for k in added if k.startswith(("nvidia-", "triton")))
        check("base install pulled no nvidia-*/triton package", not cuda, ", ".join(cuda))
        proc = run([py, "-m", "pip", "check"], env=env)
        check("pip check", proc.returncode == 0, fail_out(proc))
        probe = f"import importlib.util as u; print(' '.join(m for m in {LOCAL_STACK!r} if u.find_spec(m)))"
        found = run([py, "-c", probe], cwd=tmp, env=env).stdout.split()
        check(f"local stack not importable ({', '.join(LOCAL_STACK)})", not found, " ".join(found))
        imports = "import " + ", ".join(f"docbot_lib.{m}" for m in MODULES)
        proc = run([py, "-c", imports], cwd=tmp, env=env)
        check("docbot_lib modules import", proc.returncode == 0, fail_out(proc, 8))

        if args.run_notebook:
            notebook(venv, tmp, src, env)

        print("\n== figures ==")
        print(
            f"kernel setup ({', '.join(f'{k} {v}' for k, v in kernel.items())}): {kernel_secs:.1f} s"
            " (setup, not the figure)"
        )
        print(
            f"base install (pip install <repo>, base dependencies, "
            f"{'wheels only' if wheels_only else 'sdists allowed'}, cold cache: {not args.warm_cache}): "
            f"{base_secs:.1f} s (1-min load average after it: {load:.1f} on {os.cpu_count()} cores)"
        )
        print(
            f"venv size: {size_kernel:.0f} MiB with the kernel, {size_base:.0f} MiB after the base install "
            f"(+{size_base - size_kernel:.0f} MiB)"
        )
        print(f"packages added by the base install: {len(added)}; versions changed: {', '.join(changed) or 'none'}")
        print(f"  added: {' '.join(f'{k}=={after[k]}' for k in added)}")
        print(
            f"kernel versions unchanged: {'yes' if all(before.get(k) == after.get(k) for k in KERNEL) else 'NO'} ("
            + ", ".join(f"{k} {before.get(k)} -> {after.get(k)}" for k in KERNEL)
            + ")"
        )
        print(PEER)
        print(f"checks: {'all passed' if not failures else 'FAILED: ' + '; '.join(failures)}")
        return 1 if failures else 0
    finally:
        if args.keep:
            print(f"kept: {tmp}" + (f" and {venv}" if args.venv else ""))
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
