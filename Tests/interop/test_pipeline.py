"""`compressor pipeline`: the example recipes run end to end and their outputs keep the stated
quality in ONNX Runtime; the failing recipe exits 2 and still writes model and report; the same
recipe gives the same bytes anywhere; a pipeline equals its steps run as subcommands, byte for
byte; every report validates against docs/report-schema.json; the HTML report renders in
headless Chromium with an empty console and the charts the report calls for."""
import json
import os
import pathlib
import re
import shutil
import subprocess

import jsonschema
import numpy as np
import onnx
import pytest

from conftest import FIXTURES, ROOT, ort_outputs

EXAMPLES = ROOT / "examples"
SCHEMA = json.loads((ROOT / "docs" / "report-schema.json").read_text())
DATA = FIXTURES / "data"
LABELS = np.load(DATA / "digits_y.npy")

# What each example promises, as ONNX Runtime measures it on the 360-sample test split.
EXPECTED = {
    "edge-latency": {"model": "cnn_residual", "min_accuracy": 0.98, "max_size": 0.4},
    "smallest": {"model": "mlp", "min_accuracy": 0.95, "max_size": 0.2},
    "accuracy-first": {"model": "transformer_block", "min_accuracy": 0.89, "max_size": 0.65},
}


def split_feeds(model):
    if model == "transformer_block":
        z = np.load(DATA / "digits_tokens.npz")
        return {k: z[k] for k in z.files}
    if model in ("cnn_residual", "mobile_cnn"):
        return {"image": np.load(DATA / "digits_img.npy")}
    return {"input": np.load(DATA / "digits_x.npy")}


def ort_accuracy(path, model):
    return float((ort_outputs(path, split_feeds(model))[0].argmax(-1) == LABELS).mean())


@pytest.fixture(scope="module")
def runs(compressor_release, tmp_path_factory):
    """Every example run once: its exit code, stdout, stderr, model, report and page."""
    out = tmp_path_factory.mktemp("examples")
    result = {}
    for name in [*EXPECTED, "failing"]:
        r = compressor_release("pipeline", EXAMPLES / f"{name}.yaml", "-o", out / f"{name}.onnx", "--report",
                               out / f"{name}.json", "--html", out / f"{name}.html", "--no-timings", check=False)
        result[name] = (r, out / f"{name}.onnx", out / f"{name}.json", out / f"{name}.html")
    return result


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_examples_meet_their_gates_in_onnx_runtime(runs, name):
    r, model, report, _ = runs[name]
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"pipeline {name}.yaml: wrote ") and "gates all" in r.stdout, r.stdout
    onnx.checker.check_model(str(model), full_check=True)
    rep = json.loads(report.read_text())
    jsonschema.validate(rep, SCHEMA)
    expected = EXPECTED[name]
    source = FIXTURES / f"{expected['model']}.onnx"
    accuracy = ort_accuracy(model, expected["model"])
    assert accuracy >= expected["min_accuracy"], (name, accuracy)
    assert model.stat().st_size <= expected["max_size"] * source.stat().st_size
    # compressor's runtime and ONNX Runtime agree on the accuracy the report states.
    assert abs(rep["metrics"][-1]["quality"]["accuracy"] - accuracy) <= 1 / 360 + 1e-9
    assert rep["metrics"][0]["quality"]["accuracy"] == pytest.approx(ort_accuracy(source, expected["model"]), abs=1e-9)
    assert all(g["passed"] for g in rep["gates"])
    assert [s["command"] for s in rep["steps"]] == [m["step"] for m in rep["metrics"][1:]]
    assert rep["inputs"][0]["role"] == "recipe" and rep["inputs"][1]["file"] == source.name


def test_failing_recipe_exits_2_and_still_writes_everything(runs):
    r, model, report, html = runs["failing"]
    assert r.returncode == 2, r.stderr
    assert model.exists() and html.exists()
    onnx.checker.check_model(str(model))
    rep = json.loads(report.read_text())
    jsonschema.validate(rep, SCHEMA)
    failed = [g for g in rep["gates"] if not g["passed"]]
    assert [g["gate"] for g in failed] == ["accuracy-drop"]
    assert failed[0]["margin"] < 0 and failed[0]["summary"].startswith("accuracy-drop 74.17 > 0.5 (failed by 73.67)")
    assert r.stderr.splitlines()[-1] == "compressor: gate failed: accuracy-drop 74.17 > 0.5 (failed by 73.67)"
    assert "gates 1 of 2 FAILED: accuracy-drop 74.17 > 0.5 (failed by 73.67), size 0.2812 <= 0.3" in r.stdout


def test_same_recipe_twice_anywhere_is_byte_identical(compressor_release, tmp_path):
    """Two runs, different working directories and time zones: the same model, report and page."""
    outputs = []
    for run, tz in [("a", "UTC"), ("b", "Asia/Kathmandu")]:
        cwd = tmp_path / run / "deeper"
        cwd.mkdir(parents=True)
        env = dict(os.environ, TZ=tz)
        r = compressor_release("pipeline", EXAMPLES / "edge-latency.yaml", "-o", "m.onnx", "--report", "r.json",
                               "--html", "r.html", "--no-timings", "--quiet", cwd=cwd, env=env)
        assert r.returncode == 0
        outputs.append([(cwd / f).read_bytes() for f in ("m.onnx", "r.json", "r.html")])
    assert outputs[0] == outputs[1]


def dry_run(run, recipe):
    """A recipe as `--dry-run` prints it: its model and its steps as (at, command, arguments)."""
    r = run("pipeline", recipe, "--dry-run")
    model = re.match(r"^recipe .*: \d+ steps? on (.*) \(\d+ bytes, valid\)$", r.stdout.splitlines()[0]).group(1)
    steps = []
    for line in r.stdout.splitlines():
        m = re.match(r"^  ([0-9.]+)  compressor (\w+)((?: \S+)*?)(?:  \(kept in .*\))?$", line)
        if m:
            steps.append((m.group(1), m.group(2), m.group(3).split()))
    return model, steps


def as_recipe_step(args):
    """Command-line options back into recipe keys."""
    keys = {}
    for a in args:
        key, _, value = a[2:].partition("=")
        if "=" not in a:
            key, value = (key[3:], False) if key.startswith("no-") else (key, True)
        if key in keys:
            keys[key] = (keys[key] if isinstance(keys[key], list) else [keys[key]]) + [value]
        else:
            keys[key] = value
    return keys


@pytest.mark.parametrize("name", ["edge-latency", "smallest"])
def test_pipeline_equals_its_steps_run_as_subcommands(compressor_release, tmp_path, name):
    """The example, rebuilt from its --dry-run as a JSON recipe that keeps every step's model, against
    the same steps run one by one as subcommands: the same models and, step for step, the same
    report sections, byte for byte."""
    model, steps = dry_run(compressor_release, EXAMPLES / f"{name}.yaml")
    pdir, cdir = tmp_path / "pipeline", tmp_path / "commands"
    pdir.mkdir()
    cdir.mkdir()
    recipe = {"model": model, "steps": []}
    for i, (_, command, args) in enumerate(steps):
        keys = as_recipe_step(args)
        if i < len(steps) - 1:
            keys["keep"] = str(pdir / f"step{i + 1}.onnx")
        recipe["steps"].append({command: keys})
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe, indent=1))
    assert dry_run(compressor_release, path)[1] == steps
    compressor_release("pipeline", path, "-o", pdir / f"step{len(steps)}.onnx", "--report", pdir / "report.json",
                       "--no-timings", "--quiet")
    pipeline_report = json.loads((pdir / "report.json").read_text())
    jsonschema.validate(pipeline_report, SCHEMA)

    current = model
    for i, (at, command, args) in enumerate(steps):
        out, rep = cdir / f"step{i + 1}.onnx", cdir / f"step{i + 1}.json"
        args = [a.replace("--teacher=original", f"--teacher={model}") for a in args]
        head = ["--student", current, "--quiet"] if command == "distill" else [current]
        compressor_release(command, *head, "-o", out, "--report", rep, "--no-timings", *args)
        assert out.read_bytes() == (pdir / f"step{i + 1}.onnx").read_bytes(), f"step {at} {command}: models differ"
        section = dict(pipeline_report["steps"][i])
        assert section.pop("at") == at
        alone = json.loads(rep.read_text())
        jsonschema.validate(alone, SCHEMA)
        for key in ("schemaVersion", "tool", "inputs", "metrics", "timings"):
            alone.pop(key, None)
        if command == "distill":
            # The recipe's teacher is `original`; the command line names the file.
            assert alone["options"].pop("teacher") == pathlib.Path(model).name
            assert section["options"].pop("teacher") == "original"
        assert json.dumps(section, sort_keys=True) == json.dumps(alone, sort_keys=True), f"step {at} {command}: sections differ"
        current = out


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("headless Chromium is needed to test the HTML report: bash scripts/bootstrap.sh installs Debian's chromium")


def render(page, png, tmp_path):
    """Renders a page headless to PNG; returns the DOM and the console messages."""
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", "--window-size=1200,2600"]
    shot = subprocess.run([*args, f"--screenshot={png}", page], capture_output=True, text=True, timeout=120)
    dom = subprocess.run([*args, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    console = [l for l in (shot.stderr + dom.stderr).splitlines() if ":CONSOLE" in l]
    return dom.stdout, console


def test_console_messages_are_caught(tmp_path):
    """The check below would see a console message: a page that logs one."""
    page = tmp_path / "noisy.html"
    page.write_text("<!DOCTYPE html><p>x</p><script>console.error('noise')</script>")
    _, console = render(page.as_uri(), tmp_path / "noisy.png", tmp_path)
    assert any("noise" in l for l in console), console


@pytest.mark.parametrize("name", [*sorted(EXPECTED), "failing"])
def test_html_report_renders_in_chromium(runs, name, tmp_path):
    _, _, report, html = runs[name]
    text = html.read_text()
    # Self-contained: nothing fetched, no script.
    assert "<script" not in text and not re.search(r"(src|href)=\"(https?:)?//", text) and "@import" not in text
    png = tmp_path / f"{name}.png"
    dom, console = render(html.as_uri(), png, tmp_path)
    assert console == [], console
    assert png.stat().st_size > 20_000
    rep = json.loads(report.read_text())
    rows = rep["metrics"]
    # Waterfalls: one bar per metrics row for bytes, and for MACs when every row has them.
    charts = 1 + all("macs" in m for m in rows)
    assert len(re.findall(r'<svg class="chart waterfall"', dom)) == charts
    assert len(re.findall(r'<rect class="bar( base| up)?"', dom.split('<svg class="chart quality"')[0])) >= charts * len(rows)
    points = sum(len([k for k in ("accuracy", "agreement", "meanCosine") if k in (m.get("quality") or {})]) for m in rows)
    assert len(re.findall(r'<circle class="point series-\d"', dom)) == points
    assert len(re.findall(r'<svg class="chart layers"', dom)) >= 1
    decisions = sum(len(p["changes"]) for s in rep["steps"] for p in s["passes"])
    assert len(re.findall(r'<tr class="action-', dom)) == decisions
    gates = len(rep.get("gates") or []) + sum(len(s.get("gates") or []) for s in rep["steps"])
    assert len(re.findall(r"<td class=\"(pass|fail)\">", dom)) == gates
    verdict = re.search(r'<div class="banner (pass|fail|none)" id="verdict">', dom).group(1)
    assert verdict == ("fail" if name == "failing" else "pass")
    if name == "edge-latency":
        shutil.copy(png, ROOT / ".build" / "edge-latency-report.png") if (ROOT / ".build").is_dir() else None


def test_every_report_of_a_subcommand_validates(compressor, tmp_path):
    """Schema 2 for every transforming command, with and without data and gates."""
    cases = [
        ["optimize", FIXTURES / "cnn_residual.onnx", "--data", DATA / "digits_img.npy", "--labels", DATA / "digits_y.npy"],
        ["quantize", FIXTURES / "mlp.onnx", "--gate", "size<=0.5", "--gate", "macs<=1"],
        ["prune", FIXTURES / "mlp.onnx", "--sparsity", "0.5", "--data", DATA / "digits_x.npy", "--gate", "agreement>=0.9"],
        ["factorize", FIXTURES / "mlp.onnx", "--rank-ratio", "0.5"],
        ["prune", FIXTURES / "cnn_residual.onnx", "--structured", "--analyze", "--data", DATA / "calib_img.npy"],
    ]
    for i, args in enumerate(cases):
        rep, page = tmp_path / f"{i}.json", tmp_path / f"{i}.html"
        compressor(*args, "-o", tmp_path / f"{i}.onnx", "--report", rep, "--html", page)
        r = json.loads(rep.read_text())
        jsonschema.validate(r, SCHEMA)
        assert r["schemaVersion"] == 2 and r["tool"]["name"] == "compressor" and "timings" in r
        assert r["inputs"][0]["sha256"] == __import__("hashlib").sha256(args[1].read_bytes()).hexdigest()
        assert page.read_text().startswith("<!DOCTYPE html>")


# max-memory is the process's budget: `compressor pipeline --max-memory` sets it for every step.
RUN_OPTIONS = {"output", "report", "html", "no-timings", "gate", "force", "print-step", "help", "version", "quiet", "student",
               "max-memory"}


@pytest.mark.parametrize("command", ["optimize", "quantize", "prune", "factorize", "distill"])
def test_every_flag_is_a_recipe_key(compressor, tmp_path, command):
    """Every option of the subcommand (but where the output goes) is a key of its recipe step."""
    dump = json.loads(compressor(command, "--experimental-dump-help").stdout)
    keys = set()
    for a in dump["command"]["arguments"]:
        names = [n["name"] for n in a.get("names", []) if n["kind"] == "long"]
        if a["kind"] == "positional" or not names or names[0] in RUN_OPTIONS or names[0].startswith("no-"):
            continue
        keys.add((names[0], a["kind"]))
    assert len(keys) >= {"optimize": 4, "quantize": 18, "prune": 17, "factorize": 11, "distill": 27}[command]
    for key, kind in sorted(keys):
        recipe = tmp_path / f"{key}.yaml"
        recipe.write_text(f"model: {FIXTURES / 'mlp.onnx'}\nsteps:\n  - {command}: {{{key}: {'true' if kind == 'flag' else '1'}}}\n")
        r = compressor("pipeline", recipe, "--dry-run", check=False)
        assert "unknown key" not in r.stderr, (command, key, r.stderr)
        assert r.returncode in (0, 64, 66), (command, key, r.stderr)
