"""benchmarks/gpu/report.py: the bookkeeping of benchmarks/gpu/run.sh (standard library only).

    python report.py record OUTDIR STEP STATUS RC SECONDS LIMIT LOGFILE COMMAND   # parse a step's log, append a line
    python report.py summary OUTDIR                                               # write OUTDIR/summary.md, print it
    python report.py env OUTDIR SMOKE         # OUTDIR/env.txt: machine and versions; fails if an import fails

Each step's figures are read off the text the benchmark scripts print today (throughput.py's table and its FLOP line,
decode_overhead.py's two lines, pytest's closing line), so the scripts need no change for this; a ``--json`` option
on them would make this parsing unnecessary.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROW = re.compile(r"^(usual|engine|host)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+(\S+)\s*$")
STAGE = re.compile(r"^\s+(usual|engine)\s+(.+?)\s+([\d.]+) s/image$")
FLOPS = re.compile(
    r"engine FLOPs per image ([\d.]+) TFLOP; (\S+) matmul rate ([\d.]+) TFLOP/s; FLOP floor \d+ "
    r"ms/image; reached (\d+) % of it"
)
PAIR = re.compile(r"^pair (\w+) \((.*?)\), (\d+) images.*?(\d+) new tokens, batch (\d+), device (\S+)")
DECODE = re.compile(r"^(eager|compiled):\s+(-?[\d.]+) ms per step")
DECODE_HEAD = re.compile(r"^Florence-2 (\w+) depth, tiny widths, (\d+) sequences x (\d+) tokens on (\S+)")
PYTEST = re.compile(r"^=*\s*((?:\d+ \w+(?: \w+)?, )*\d+ \w+(?: \w+)?) in ([\d.]+)s")


def parse(text: str) -> dict:
    figures: dict = {}
    for line in text.splitlines():
        if match := PAIR.match(line):
            figures.update(
                pair=match[1],
                models=match[2],
                images=int(match[3]),
                tokens=int(match[4]),
                batch=int(match[5]),
                device=match[6],
            )
        elif match := ROW.match(line):
            figures.setdefault("sides", {})[match[1]] = {
                "images_per_second": float(match[2]),
                "seconds": float(match[3]),
                "peak_host_mb": int(match[4]),
                "peak_gpu_mb": None if match[5] == "-" else float(match[5]),
            }
        elif match := STAGE.match(line):
            figures.setdefault("stages", {}).setdefault(match[1], {})[match[2]] = float(match[3])
        elif match := FLOPS.search(line):
            tflop, rate = float(match[1]), float(match[3])
            figures.update(
                tflop_per_image=tflop,
                matmul_kind=match[2],
                matmul_tflops=rate,
                floor_ms=1e3 * tflop / rate,
                floor_percent=int(match[4]),
            )
        elif match := DECODE_HEAD.match(line):
            figures.update(depth=match[1], rows=int(match[2]), tokens=int(match[3]), device=match[4])
        elif match := DECODE.match(line):
            figures[f"{match[1]}_ms_per_step"] = float(match[2])
        elif match := PYTEST.match(line.strip()):
            figures["pytest"] = match[1]
    figures["recompiles"] = text.count("Recompiling function")
    figures["cudagraph_skips"] = len(re.findall(r"skipping cudagraphs", text))
    errors = [line for line in text.splitlines() if re.match(r"^\w*(Error|Exception)\b|^E\s", line)]
    if errors:
        figures["last_error"] = errors[-1][:300]
    return figures


def record(outdir: Path, step: str, status: str, rc: str, seconds: str, limit: str, log: str, command: str) -> None:
    text = Path(log).read_text(errors="replace") if log and Path(log).is_file() else ""
    row = {
        "step": step,
        "status": status,
        "rc": int(rc),
        "seconds": round(float(seconds), 1),
        "limit_s": int(limit),
        "command": command,
        **parse(text),
    }
    if status == "ok" and row.get("pytest") is None and step == "gpu-tests":
        row["pytest"] = "no summary line"
    with open(outdir / "results.jsonl", "a") as results:
        results.write(json.dumps(row) + "\n")


def _side(row: dict | None, side: str) -> dict:
    return ((row or {}).get("sides") or {}).get(side) or {}


def _fmt(value, spec: str = ".1f", unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def summary(outdir: Path) -> str:
    rows = [json.loads(line) for line in (outdir / "results.jsonl").read_text().splitlines() if line.strip()]
    by = {row["step"]: row for row in rows}
    env = {}
    if (outdir / "env.txt").is_file():
        for line in (outdir / "env.txt").read_text().splitlines():
            key, _, value = line.partition(": ")
            if value:
                env.setdefault(key.strip(), value.strip())
    lines = [
        f"### GPU check: {env.get('gpu', 'no GPU')}, {env.get('host', '')}",
        "",
        f"`{env.get('command', 'bash benchmarks/gpu/run.sh OUTDIR')}` on commit {env.get('commit', '?')}, "
        f"{env.get('date', '')}; torch {env.get('torch', '?')}, transformers {env.get('transformers', '?')}, "
        f"supervision {env.get('supervision', '?')}, Python {env.get('python', '?')}.",
        "",
        "| measurement | result | target |",
        "|---|---|---|",
    ]
    host = _side(by.get("host"), "host")
    if host:
        lines.append(
            f"| host ceiling (model answering at once, {by['host'].get('images')} images) | "
            f"{host['images_per_second']:.1f} images/s | above the accurate pair's rate |"
        )
    decode = by.get("decode")
    if decode and "eager_ms_per_step" in decode:
        eager, compiled = decode["eager_ms_per_step"], decode.get("compiled_ms_per_step")
        gain = f" ({eager / compiled:.1f}x)" if compiled else ""
        lines.append(
            f"| decoding step, Florence-2-{decode.get('depth')} depth, tiny widths, {decode.get('rows')} "
            f"sequences x {decode.get('tokens')} tokens | eager {eager:.2f} ms, compiled "
            f"{_fmt(compiled, '.2f', ' ms')}{gain} | |"
        )
    usual = _side(by.get("usual"), "usual")
    compiled = _side(by.get("default-compiled"), "engine")
    eager = _side(by.get("default-eager"), "engine")
    if usual:
        lines.append(f"| usual loop, default pair, one image at a time | {usual['images_per_second']:.3f} images/s | |")
    for name, side in (("compiled", compiled), ("eager", eager)):
        if side:
            ratio = (
                f" = **{side['images_per_second'] / usual['images_per_second']:.1f}x** the usual loop" if usual else ""
            )
            row = by[f"default-{name}"]
            lines.append(
                f"| engine, default pair, {name}, batch {row.get('batch')} | "
                f"{side['images_per_second']:.2f} images/s{ratio} | {'>= 20x' if name == 'compiled' else ''} |"
            )
    accurate = by.get("accurate")
    if accurate and _side(accurate, "engine"):
        side = _side(accurate, "engine")
        lines.append(
            f"| engine, accurate pair, compiled, batch {accurate.get('batch')} | "
            f"{side['images_per_second']:.1f} images/s; {_fmt(accurate.get('tflop_per_image'), '.3f')} "
            f"TFLOP/image; {accurate.get('matmul_kind', '')} matmul {_fmt(accurate.get('matmul_tflops'), '.0f')}"
            f" TFLOP/s; floor {_fmt(accurate.get('floor_ms'), '.2f')} ms/image: "
            f"**{accurate.get('floor_percent', '-')} %** of it | >= 40 % |"
        )
    peaks = [
        f"{step} {_side(row, 'engine').get('peak_gpu_mb') or _side(row, 'usual').get('peak_gpu_mb'):.0f} MB"
        for step, row in by.items()
        if (_side(row, "engine").get("peak_gpu_mb") or _side(row, "usual").get("peak_gpu_mb"))
    ]
    if peaks:
        lines.append(f"| peak GPU memory (torch.cuda.max_memory_allocated) | {'; '.join(peaks)} | |")
    tests = by.get("gpu-tests")
    if tests:
        lines.append(f"| GPU tests (`pytest -m gpu`) | {tests.get('pytest') or tests['status']} | all pass |")
    compiles = [
        f"{step}: {row['recompiles']} recompiles, {row['cudagraph_skips']} cudagraph skips"
        for step, row in by.items()
        if step in ("decode", "default-compiled", "accurate") and row["status"] == "ok"
    ]
    if compiles:
        lines.append(f"| TORCH_LOGS=recompiles,perf_hints | {'; '.join(compiles)} | |")
    lines += ["", "| step | status | seconds (limit) | command |", "|---|---|---|---|"]
    for row in rows:
        status = row["status"] + (f" (rc {row['rc']})" if row["status"] not in ("ok", "skipped") else "")
        if row.get("last_error") and row["status"] != "ok":
            status += f": `{row['last_error'][:120]}`"
        lines.append(f"| {row['step']} | {status} | {row['seconds']:.0f} ({row['limit_s']}) | `{row['command']}` |")
    text = "\n".join(lines) + "\n"
    (outdir / "summary.md").write_text(text)
    return text


def environment(outdir: Path, smoke: bool) -> None:
    """Writes OUTDIR/env.txt ("key: value" lines); imports what the steps need, so a broken install fails here."""
    import datetime
    import importlib.metadata as metadata
    import os
    import platform
    import subprocess

    import pycocotools.mask  # noqa: F401
    import supervision  # noqa: F401
    import torch
    import transformers

    import grounded_sam

    def out(*command: str) -> str:
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError) as error:
            return f"({error})"

    assert tuple(map(int, transformers.__version__.split(".")[:2])) >= (5, 23), transformers.__version__
    cuda = torch.cuda.is_available()
    root = Path(__file__).resolve().parents[2]
    lines = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "bash benchmarks/gpu/run.sh OUTDIR" + (" --cpu-smoke" if smoke else ""),
        "commit": out("git", "-C", str(root), "rev-parse", "--short", "HEAD") or "unknown",
        "gpu": (
            f"{torch.cuda.get_device_name(0)} ({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB)"
            if cuda
            else "none (CPU)"
        ),
        "host": f"{os.cpu_count()} CPUs, {platform.machine()}, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "python": f"{platform.python_version()} {sys.executable}",
    }
    for name in (
        "torch",
        "torchvision",
        "transformers",
        "supervision",
        "pycocotools",
        "numpy",
        "huggingface_hub",
        "tokenizers",
        "safetensors",
        "opencv-python-headless",
        "grounded-sam",
    ):
        lines[name] = metadata.version(name)
    lines["grounded_sam from"] = str(Path(grounded_sam.__file__).parent)
    lines["cuda"] = f"{torch.version.cuda}, cudnn {torch.backends.cudnn.version() if cuda else '-'}"
    text = "\n".join(f"{key}: {value}" for key, value in lines.items()) + "\n"
    if cuda:
        text += (
            out(
                "nvidia-smi",
                "--query-gpu=name,memory.total,memory.used,driver_version,clocks.max.sm,power.limit,temperature.gpu",
                "--format=csv",
            )
            + "\n"
        )
    (outdir / "env.txt").write_text(text)


if __name__ == "__main__":
    if sys.argv[1] == "record":
        record(Path(sys.argv[2]), *sys.argv[3:10])
    elif sys.argv[1] == "env":
        environment(Path(sys.argv[2]), sys.argv[3] == "1")
    else:
        print(summary(Path(sys.argv[2])), end="")
