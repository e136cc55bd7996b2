"""Turning worker results into the table: ratios to the best peer, text and Markdown.

A row's ratio is its median divided by the best (lowest) median among the
peers (every implementation that is not tracejit) that ran and passed the
check on the same workload and case; tracejit's ratio is the headline
number, below 1 means tracejit is faster. In a GPU run (``meta["device"]``
is "cuda") the NumPy row is a CPU baseline: labelled so, and never the best
peer. CPU and GPU runs keep separate README sections.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from benchmarks.harness import is_tracejit

README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"
GPU_README_START = "<!-- bench-gpu:start -->"
GPU_README_END = "<!-- bench-gpu:end -->"

COLUMNS = ("Workload", "Case", "Library", "Median", "vs best peer", "Check", "Notes")


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.3g} µs"
    return f"{seconds * 1e9:.3g} ns"


def passed(result: dict[str, Any]) -> bool:
    check = result.get("check") or {}
    return result.get("status") == "ok" and check.get("ok") is not False


def best_peer_times(results: Sequence[dict[str, Any]]) -> dict[tuple[str, str], float]:
    best: dict[tuple[str, str], float] = {}
    for result in results:
        if is_tracejit(result["implementation"]) or result.get("baseline") or not passed(result):
            continue
        key = (result["workload"], result["variant"])
        best[key] = min(best.get(key, float("inf")), result["median_s"])
    return best


def check_text(result: dict[str, Any]) -> str:
    status = result.get("status")
    if status == "skipped":
        return f"skipped: {result.get('message', '')}"
    if status != "ok":
        stage = result.get("stage")
        where = f" ({stage})" if stage else ""
        return f"error{where}: {result.get('message', '')}"
    check = result.get("check") or {}
    if check.get("ok") is None:
        return check.get("problem") or "not checked"
    if check["ok"]:
        return "ok"
    return f"FAIL: {check.get('problem')}"


def notes_text(result: dict[str, Any]) -> str:
    parts = []
    if result.get("note"):
        parts.append(result["note"])
    if result.get("status") == "ok":
        if "since_process_start_s" in result:
            parts.append(f"import {format_seconds(result.get('import_s'))}, "
                         f"first call {format_seconds(result.get('first_call_s'))}")
            if result.get("compiled_ready_s") is not None:
                parts.append(f"interpreted; C ready at {format_seconds(result['compiled_ready_s'])}")
        elif result.get("first_call_s") is not None and result["workload"] != "W7":
            parts.append(f"first call {format_seconds(result['first_call_s'])}")
    return "; ".join(parts)


def library_label(result: dict[str, Any]) -> str:
    """The Library column: the implementation, marked where it is a GPU run's CPU baseline."""
    if result.get("baseline"):
        return f"{result['implementation']} (CPU baseline)"
    return result["implementation"]


def rows(results: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    best = best_peer_times(results)
    table = []
    for result in results:
        median = result.get("median_s") if result.get("status") == "ok" else None
        peer = best.get((result["workload"], result["variant"]))
        ratio = f"{median / peer:.2f}x" if median is not None and peer else "-"
        table.append((result["workload"], result["variant"], library_label(result),
                      format_seconds(median), ratio, check_text(result), notes_text(result)))
    return table


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def text_table(results: Sequence[dict[str, Any]], max_width: int = 60) -> str:
    body = [tuple(_truncate(cell, max_width) for cell in row) for row in rows(results)]
    widths = [max([len(c)] + [len(row[i]) for row in body]) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)),
             "  ".join("-" * w for w in widths)]
    previous = None
    for row in body:
        group = row[:2]
        if previous is not None and group != previous:
            lines.append("")
        previous = group
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    def escape(cell: str) -> str:
        return cell.replace("|", "\\|")
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows(results):
        cells = list(row)
        if is_tracejit(cells[2]):
            cells[2], cells[4] = f"**{cells[2]}**", f"**{cells[4]}**" if cells[4] != "-" else "-"
        lines.append("| " + " | ".join(escape(_truncate(c, 120)) for c in cells) + " |")
    return "\n".join(lines)


def versions_line(results: Sequence[dict[str, Any]]) -> str:
    versions: dict[str, str] = {}
    for result in results:
        versions.update(result.get("versions") or {})
    return ", ".join(f"{name} {version}" for name, version in sorted(versions.items()))


def is_gpu_run(meta: dict[str, Any]) -> bool:
    return meta.get("device", "cpu") == "cuda"


def gpu_line(results: Sequence[dict[str, Any]]) -> str:
    """The GPUs the rows ran on, as each library named them (numba for tracejit)."""
    names: dict[str, list[str]] = {}
    for result in results:
        if result.get("gpu"):
            libraries = names.setdefault(result["gpu"], [])
            if result["implementation"] not in libraries:
                libraries.append(result["implementation"])
    if not names:
        return "GPU: none usable (every GPU row was skipped or failed before reaching the device)."
    return "GPU: " + "; ".join(f"{name} [{', '.join(libraries)}]" for name, libraries in names.items()) + "."


def header_lines(meta: dict[str, Any], results: Sequence[dict[str, Any]]) -> list[str]:
    size = "--quick" if meta["quick"] else "full sizes"
    if meta.get("merged_runs"):
        size += f", {meta['merged_runs']} runs merged"
    lines = [f"Run: started {meta['date']}, {size}, {meta['wall_s']:.0f} s in all."]
    if is_gpu_run(meta):
        lines.append(gpu_line(results))
    lines += [
        (f"{'Host' if is_gpu_run(meta) else 'Machine'}: {meta['machine']}, {meta['cores']} cores; "
         f"load average {meta['load_start']:.2f} before the run, {meta['load_end']:.2f} after."),
        (f"Threads: {meta['threads']} per library ({meta['thread_variables']}; "
         f"torch.set_num_threads({meta['threads']}); JAX/XLA uses its default pool)"
         f"{' for the host side and the CPU baseline' if is_gpu_run(meta) else ''}."),
        f"Versions: {versions_line(results)}.",
    ]
    if meta.get("partial"):
        lines.append("Note: this run was cut short; only the rows above were measured.")
    if meta.get("loaded"):
        lines.append("Note: the machine was busy with other work during this run "
                     "(load average above half the cores before it started), so timings are noisy.")
    return lines


def markdown_report(meta: dict[str, Any], results: Sequence[dict[str, Any]]) -> str:
    return "\n".join(["\n".join(f"{line}  " for line in header_lines(meta, results)), "",
                      markdown_table(results)])


USAGE = """\
## Benchmarks

```bash
pip install -e '.[bench]'        # the peers: JAX, numba, PyTensor, PyTorch (CPU build; see pyproject.toml)
python -m benchmarks.run         # everything at full size: about 10 min on 2 cores, mostly peers compiling
python -m benchmarks.run --quick --only W5 --libs tracejit,numpy   # smoke test, ~10 s
python -m benchmarks.run --json run.json --update-readme            # keep the raw results, refresh this section
python -m benchmarks.run --from-json run.json --update-readme       # re-render a saved run
python -m benchmarks.run --device cuda                             # the GPU table (W1, W3, W4), below
```

`--quick` shrinks sizes and repeats (its numbers are not the benchmark); with every peer
installed it still takes about 10 minutes, because torch.compile, PyTensor and numba compile
for real. Workloads: W1 the fused chain `tanh(x*y+z)*exp(-x**2)+sqrt(abs(z))` (10M elements);
W2 logistic-regression value and gradient (X 1000x100); W3 one MLP training step (784-256-10,
tanh, softmax cross-entropy, L2, SGD, batch 128, float32); W4 row softmax and logsumexp
(4096x1024 float32, values near 1000; tracejit runs the naive formula and relies on its
stability rewrites, the peers call their library functions); W5 the call overhead of
`f(a, b) = a + b` on 0-d arrays; W6 the first call of the W3 step in a fresh process, timed
from process start (interpreter, imports, trace, compile, run), with an empty (cold) and then
a filled (warm) on-disk cache, median of 3 (tracejit's cold first call runs on its NumPy
interpreter while the C module builds in the background; the notes say when compiled code
was ready; every other timing is of compiled code); W7 the FAST_RUN rewrite time of a
deep-MLP training graph (the same graph built for tracejit and PyTensor).

Each (workload, library, case) runs in its own process with every thread pool pinned to the
same count (`--threads`, default all cores) and is checked against a float64 NumPy reference
computed from the same inputs. *vs best peer* is the median divided by the best median
among the other libraries that passed (below 1: faster than every peer). `tracejit` is the
`@tj.compile` front end; `tracejit.function` the Theano-style `tj.function` with shared
weights and updates. Medians are per call (W6: per process; W7: per rewrite).
"""


GPU_USAGE = """\
## Benchmarks on the GPU

```bash
python -m benchmarks.run --device cuda --json gpu.json --update-readme   # W1, W3, W4
python -m benchmarks.run --device cuda --quick --only W1                 # smoke test
python -m benchmarks.run --from-json gpu-w1.json,gpu-w34.json --update-readme   # merge split runs
```

W1, W3 and W4 (as above) with tracejit (`device="cuda"`), PyTorch (CUDA tensors), torch.compile
and JAX on the GPU; NumPy on the host is kept as the CPU baseline row (never the best peer).
Inputs (and W3's parameters) are put in device memory once, before the timing: numba device
arrays for tracejit, CUDA tensors for torch, committed device arrays for JAX. Every timed call
ends with a wait for the device (tracejit: the device's synchronize; torch:
`torch.cuda.synchronize()`; JAX: `block_until_ready`), so it covers the kernels and not only
their launch; outputs stay on the device and the first call's are copied to the host, after
its clock has stopped, to check them against the float64 NumPy reference. A library without a
usable GPU is listed as skipped with the reason.
"""


def readme_section(meta: dict[str, Any], results: Sequence[dict[str, Any]]) -> str:
    if is_gpu_run(meta):
        return (f"{GPU_README_START}\n{GPU_USAGE}\n### Latest GPU results\n\n"
                f"{markdown_report(meta, results)}\n{GPU_README_END}")
    return f"{README_START}\n{USAGE}\n### Latest results\n\n{markdown_report(meta, results)}\n{README_END}"


def write_readme_section(path: str, meta: dict[str, Any], results: Sequence[dict[str, Any]]) -> None:
    """Rewrite the run's own section of the README: the CPU one, or the GPU one (made after
    the CPU section when it does not exist yet)."""
    if is_gpu_run(meta):
        update_readme(path, readme_section(meta, results), GPU_README_START, GPU_README_END,
                      after=README_END)
    else:
        update_readme(path, readme_section(meta, results))


def update_readme(path: str, section: str, start: str = README_START, end: str = README_END,
                  after: str | None = None) -> None:
    """Replace the text between ``start`` and ``end`` (nothing else changes).

    Where the markers are absent the section is inserted after the line with
    the ``after`` marker, if given and present, else appended.
    """
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    elif after is not None and after in text:
        cut = text.index(after) + len(after)
        line_end = text.find("\n", cut)
        cut = len(text) if line_end < 0 else line_end + 1
        text = text[:cut] + "\n" + section + "\n" + text[cut:]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
