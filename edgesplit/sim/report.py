"""The reproduction report: Markdown blocks rendered from ``summary.json`` (``edgesplit reproduce``).

``render(summary, testbed)`` returns one Markdown block per name; ``edgesplit.sim.docs`` writes them
between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->`` in README.md,
docs/REPRODUCTION.md, docs/BENCHMARKS.md and docs/ALLOCATION.md (``docs.DOCS``). Nothing here
computes a result: every number comes from the summary (or, for the testbed block, from
``docs/benchmarks/testbed/testbed.json``); the only other text is the paper's own words, quoted in
``PAPER`` (a test checks each against the paper).

Notation (defined once, in docs/REPRODUCTION.md): a ratio ``r x`` means "r times": A is ``r x`` B
when A = r * B. We never write "r times higher" for r + 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

Summary = dict[str, Any]
MODELS: tuple[str, ...] = ("alexnet-paper", "vgg16-paper")
CNN: dict[str, str] = {"alexnet-paper": "AlexNet", "vgg16-paper": "VGG-16"}
NEVER = "never"

# The paper's sentences the report sets its numbers against (section 5), verbatim.
PAPER: dict[str, str] = {
    "alex17": "the inference latencies of DADS and No Split are about 17 and 38 milliseconds for a single "
              "task, which are around 1 time and 3 times higher than our approach, respectively",
    "five": "When five threads are allocated to the task in the baselines, the inference latencies of DADS "
            "and No Split begin to be exceeded by that of our approach",
    "vgg14": "the inference latencies of DADS and No Split are about 1 time and 4 times higher than our "
             "approach",
    "first": "the inference latency of our approach is about 12 and 33 milliseconds lower than those of "
             "DADS and No Split, respectively",
    "six": "when the total inference time of six tasks is considered, we find that the latency of our "
           "approach exceeds that of DADS",
    "vgg6": "begins to exceed that of DADS from the 6-th task in the queue",
    "seven": "the inference latency of No Split keeps much higher than those of our approach and DADS in "
             "the first seven tasks",
    "speed": "the convergence speed of TD3 is a little higher than that of DDPG",
    "half": "the average reward values of TD3 are almost 0.5 times larger than those of DDPG",
    "cifar100": "the accuracy loss of our approach is about 30%, while the losses of CoEdge and Average "
                "Channel Split are about 44% and 49%",
    "cifar10": "the accuracy loss of our method is around 26%, while the losses of CoEdge and Average "
               "Channel Split are around 58% and 65%",
    "mnist": "For MINIST, the accuracy loss of our method is about 4%, while the losses of CoEdge and "
             "Average Channel Split are about 19% and 77%",
    "fashion": "For FASHIONMINIST, the accuracy loss of our method is about 14%, while the losses of "
               "CoEdge and Average Channel Split are about 38% and 71%",
    "links": "We set the transmission speed of wired connection at edge as values random between 605 Gb/s "
             "and 635 Gb/s",
}


def q(key: str) -> str:
    """A paper quote, in quotation marks, with its section."""
    return f'"{PAPER[key]}"'


def ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if abs(v) >= 100 else f"{v:.2f}"


def x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def pct(v: float) -> str:
    """A percentage: two decimals below 1% (a 0.06% gap is not "0.1%"), one above."""
    return f"{v:.2f}%" if 0 < abs(v) < 1 else f"{v:.1f}%"


def n_or_never(v: int | None) -> str:
    return NEVER if v is None else str(v)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def runtime(s: Summary) -> str:
    timing = s.get("timing", {})
    order = [k for k in ("fig6", "fig7", "fig8", "fig9", "compare", "sensitivity", "all") if k in timing]
    rows = [(f"`{t['command']}`", t["started_utc"], f"{t['wall_s']:.0f} s", f"{t['cpu_s']:.0f} s",
             f"{t['load_start']:.2f} -> {t['load_end']:.2f}") for t in (timing[k] for k in order)]
    cpus = {timing[k].get("cpus") for k in order}
    return (table(("command", "started", "wall time", "CPU time (this process)",
                   "load average (1 min) at start -> end"), rows)
            + f"\n\nMachine: {', '.join(str(c) for c in sorted(cpus, key=str))} CPUs, shared with other "
            "work (the load average says how much). The rows are the targets of one `all` run, in turn; a "
            "target run on its own also pays for the exact allocations an earlier target had cached "
            "(seconds).")


def scenario(s: Summary) -> str:
    sc = s["scenario"]
    c = sc["calibration"]
    links = sc["edge_links_gbps"]
    rows = [("edge servers", sc["servers"], "8 (5.1.1)"),
            ("threads in the CNN's zone per server", sc["threads"], "20 (5.1.1)"),
            ("GFLOPS per thread", f"{sc['gflops_per_thread']:.0f}", "80 (5.1.1)"),
            (f"edge links, drawn once with seed {s['seed']} (Gb/s)", f"{min(links):.1f} to {max(links):.1f}",
             "random between 605 and 635 Gb/s"),
            ("edge-cloud link (Mb/s)", f"{sc['cloud_link_mbps']:.1f}", "random between 105 and 125 Mb/s"),
            ("cloud GFLOPS k_c", f"{sc['cloud_gflops']:.1f}", "not given: calibrated (below)")]
    return (table(("parameter", "value (ours)", "paper"), rows)
            + "\n\nCalibration of k_c: at one edge thread DADS sends AlexNet's input "
            f"({c['input_bits']:,} bits, {c['input_ms']:.3f} ms at the link's mid-range "
            f"{c['mid_link_mbps']:.0f} Mb/s) and runs all "
            f"{c['alexnet_gflop']:.4f} GFLOP in the cloud; setting that to the paper's \"about "
            f"{c['dads_paper_ms']:.0f}\" ms gives k_c = {c['cloud_gflops']:.1f} GFLOPS.")


def _conclusion_row(label: str, v: Summary) -> list[str]:
    reach = v["baseline_reaches_ours_paper_at_threads"]
    t = v["times_ours_paper"]
    return [label, ms(v["ours_paper_ms"]), x(t["No Split"]), x(t["DADS"]),
            f"{n_or_never(reach['No Split'])} / {n_or_never(reach['DADS'])}",
            n_or_never(v["ours_paper_exceeds_dads_from_task"])]


CONCLUSION_HEADER = ("Ours (paper), ms", "No Split / Ours (paper), 1 thread",
                     "DADS / Ours (paper), 1 thread", "threads at which No Split / DADS reach Ours (paper)",
                     "Ours (paper) exceeds DADS from task")


def sensitivity_threads(s: Summary) -> str:
    sens = s["sensitivity"]["threads"]
    rows = [[CNN[m], *_conclusion_row(label, v)] for m in MODELS for label, v in sens[m].items()]
    note = "" if s["sensitivity"]["fig6_available"] else "\n\nfig. 6 had not run: no TD3/DDPG rows."
    return table(("CNN", "sub-zones of Ours (paper)", *CONCLUSION_HEADER), rows) + note


def sensitivity_links(s: Summary) -> str:
    sens = s["sensitivity"]["links"]
    rows = []
    for m in MODELS:
        for label, v in sens[m].items():
            row = _conclusion_row(label, v)
            rows.append([CNN[m], row[0], row[1], ms(v["ours_ms"]), *row[2:]])
    return table(("CNN", "edge links 605-635", CONCLUSION_HEADER[0], "Ours (edgesplit), ms",
                  *CONCLUSION_HEADER[1:]), rows)


def fig6(s: Summary) -> str:
    f = s["fig6"]
    rows = [[CNN[r["model"]], r["algo"].upper(), f"{r['final_reward']:.3f}", n_or_never(r["settled_step"]),
             f"step {r['kept_step']}", ms(1e3 * r["latency_s"]), pct(100 * r["gap"])] for r in f["runs"]]
    rows += [[CNN[m], "exact allocator", f"{e['reward']:.3f}", "-", "-", ms(1e3 * e["latency_s"]),
              pct(100 * e["gap"])] for m, e in f["exact"].items()]
    diff = []
    for m in MODELS:
        final = {r["algo"]: r["final_reward"] for r in f["runs"] if r["model"] == m}
        if {"td3", "ddpg"} <= final.keys():
            diff.append(f"{CNN[m]} {final['td3'] - final['ddpg']:+.3f}")
    steps = sorted({r["steps"] for r in f["runs"]})
    return (table(("CNN", "algorithm", f"reward, mean of the last {f['window']} episodes",
                   f"settled from step (moving average within {f['band']} of its final value)", "policy kept",
                   "its summed stage latency, ms", "gap to the certified bound"), rows)
            + f"\n\n{', '.join(str(n) for n in steps)} steps per run. TD3's final reward minus DDPG's: "
            + "; ".join(diff) + ".")


def fig7(s: Summary) -> str:
    a, v = s["fig7"]["alexnet-paper"], s["fig7"]["vgg16-paper"]

    def reach(d: Summary) -> str:
        r = d["baseline_reaches_ours_paper_at_threads"]
        return f"No Split {n_or_never(r['No Split'])}, DADS {n_or_never(r['DADS'])}"

    rows = []
    for name, d, quote in (("AlexNet", a, "alex17"), ("VGG-16", v, "vgg14")):
        at1, t = d["at_1_thread_ms"], d["times_ours_paper"]
        rows += [[name, "No Split, 1 thread", ms(at1["No Split"]), x(t["No Split"]), q(quote)],
                 [name, "DADS, 1 thread", ms(at1["DADS"]), x(t["DADS"]), ""],
                 [name, "Ours (paper)", ms(at1["Ours (paper)"]), x(1.0), ""],
                 [name, "Ours (edgesplit)", ms(at1["Ours (edgesplit)"]), x(at1["Ours (edgesplit)"]
                                                                         / at1["Ours (paper)"]), "-"],
                 [name, "threads at which the baselines reach Ours (paper)", reach(d), "", q("five")]]
    return table(("CNN", "method", "ms (ours)", "/ Ours (paper)", "paper (5.3.1)"), rows)


def fig8(s: Summary) -> str:
    rows = []
    for m in MODELS:
        d = s["fig8"][m]
        gap = d["first_task_gap_ms"]
        alex = m == "alexnet-paper"
        rows += [[CNN[m], "first task: DADS - Ours (paper), No Split - Ours (paper), ms",
                  f"{ms(gap['DADS'])} and {ms(gap['No Split'])}", q("first") if alex else "-"],
                 [CNN[m], "Ours (paper) exceeds DADS from task",
                  n_or_never(d["ours_paper_exceeds_dads_from_task"]), q("six") if alex else q("vgg6")],
                 [CNN[m], "Ours (edgesplit) exceeds DADS from task",
                  n_or_never(d["ours_exceeds_dads_from_task"]), "-"],
                 [CNN[m], "No Split above Ours (paper) for the first n tasks, n =",
                  d["no_split_above_ours_paper_for_first_tasks"], q("seven")]]
    out = table(("CNN", "what", "ours", "paper (5.3.2)"), rows)
    tasks = s["fig8"]["alexnet-paper"]["tasks"]
    shown = [n for n in (1, 2, 4, 6, 8, 10) if n in tasks]
    head = ["n", *(str(n) for n in shown)]
    total = [[f"{CNN[m]} {meth}", *(ms(s["fig8"][m]["total_ms"][meth][tasks.index(n)]) for n in shown)]
             for m in MODELS for meth in ("Ours (paper)", "Ours (edgesplit)", "DADS", "No Split")]
    first = [[f"{CNN[m]} {meth}", *(ms(s["fig8"][m]["first_task_ms"][meth][tasks.index(n)]) for n in shown)]
             for m in MODELS for meth in ("Ours (paper)", "Ours (edgesplit)")]
    return (out + "\n\nTotal latency of n tasks (makespan, ms; `fig8.csv`):\n\n" + table(head, total)
            + "\n\nLatency of the highest-priority task when n tasks are submitted together (ms):\n\n"
            + table(head, first))


FIG9_ROWS: tuple[tuple[str, str, Sequence[int]], ...] = (
    ("rows (ours), one conv per stage", "rows", (8,)),
    ("kernel-rows (the paper's method)", "kernel-rows", (8,)),
    ("CoEdge (fused rows with halos)", "coedge", (8,)),
    ("Average Channel Split", "channels", (8,)),
    ("naive rows, zero-padded slices, 2 / 4 / 8 servers", "naive-rows", (2, 4, 8)),
    ("naive CoEdge, zero-padded, 2 / 4 / 8 servers", "naive-coedge", (2, 4, 8)))
FIG9_PAPER = {"kernel-rows": "about 30% / 26% / 4% / 14%", "coedge": "about 44% / 58% / 19% / 38%",
              "channels": "about 49% / 65% / 77% / 71%"}


def fig9(s: Summary) -> str:
    d, r = s["fig9"]["digits"], s["fig9"]["random"]
    rows = []
    for label, method, servers in FIG9_ROWS:
        cells = [" / ".join(pct(ds["loss_pct"][f"{method}@{k}"]) for k in servers) for ds in (d, r)]
        rows.append([label, *cells, FIG9_PAPER.get(method, "-")])
    return (table(("method (8 servers unless said)", f"digits: accuracy loss ({d['samples']} test images)",
                   f"alexnet-paper: 1 - agreement ({r['samples']} random inputs)",
                   "paper: CIFAR-100 / CIFAR-10 / MNIST / Fashion-MNIST (5.4)"), rows)
            + f"\n\nUnsplit digits-cnn accuracy on those images: {pct(100 * d['unsplit_accuracy'])}. "
            "Lowest agreement of an exact method with the unsplit model: digits "
            f"{pct(100 * d['exact_min_agreement'])}, random inputs {pct(100 * r['exact_min_agreement'])}.")


def _stages(labels: Sequence[str]) -> str:
    if len(labels) <= 4:
        return "; ".join(labels)
    kinds = sorted({lab.split()[1] for lab in labels})
    return f"{len(labels)} x {'/'.join(kinds)}"


def compare(s: Summary) -> str:
    rows, parts = [], []
    for key, c in s["compare"].items():
        scen, model = key.split("/")
        tp, ep = c["throughput_per_s"], c["edge_throughput_per_s"]
        rows.append([scen, CNN[model], f"{c['ours_paper_ms']:.3f}", f"{c['ours_ms']:.3f}", x(c["speedup"]),
                     f"{tp['ours_paper']:.1f} -> {tp['ours']:.1f}",
                     f"{ep['ours_paper']:.0f} -> {ep['ours']:.0f}"])
        for mode, label in (("ours-paper", "Ours (paper)"), ("ours", "Ours (edgesplit)")):
            b = c["breakdown"][mode]
            p = b["parts_ms"]
            parts.append([f"{scen}, {CNN[model]}, {label}", _stages(b["stages"]), f"{p['edge compute']:.3f}",
                          f"{p['edge transfer + wait']:.3f}", f"{p['cloud transfer']:.3f}",
                          f"{p['cloud compute']:.3f}", f"{b['latency_ms']:.3f}"])
    n = next(iter(s["compare"].values()))["saturation_tasks"]
    return (table(("scenario", "CNN", "Ours (paper), ms", "Ours (edgesplit), ms",
                   "Ours (paper) / Ours (edgesplit)", f"throughput, {n} tasks at once (/s)",
                   "edge throughput (/s)"), rows)
            + "\n\nOne task by part (ms; the parts sum to its latency):\n\n"
            + table(("scenario, CNN, method", "stages", "edge compute", "edge transfer + wait",
                     "cloud transfer", "cloud compute", "total"), parts))


def same_plan_modes(points: Sequence[Mapping[str, Any]],
                    reference: str = "edgesplit") -> dict[str, list[str]]:
    """Per ``model@hosts`` of measured testbed points (``edgesplit bench testbed``), the modes that served
    the same route as ``reference`` (the same stages on the same servers, the same edge-cloud cut): their
    measured latencies differ by the noise of the run only, so a ratio near 1 between them is a tie."""
    route = {(p["model"], p["hosts"], p["mode"]): p.get("route") for p in points}
    out: dict[str, list[str]] = {}
    for (model, hosts, mode), served in sorted(route.items()):
        if mode == reference:
            continue
        ref = route.get((model, hosts, reference))
        if ref is not None and served is not None and served == ref:
            out.setdefault(f"{model}@{hosts}", []).append(mode)
    return out


def render_testbed(tb: Summary | None) -> str:
    if tb is None or not tb.get("points"):
        return ("Not measured yet: `edgesplit bench testbed --json` writes "
                "`docs/benchmarks/testbed/testbed.json`, and `edgesplit reproduce report` then renders it "
                "here.")
    def error(p: Summary) -> str:
        measured, predicted = p.get("measured_ms"), p.get("predicted_ms")
        return f"{100 * (predicted / measured - 1):+.1f}%" if measured and predicted else "-"

    def rate(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    rows = [[p["model"], p["hosts"], p["mode"], ms(p.get("measured_ms")), ms(p.get("predicted_ms")), error(p),
             rate(p.get("throughput_per_s")), rate(p.get("predicted_throughput_per_s"))]
            for p in tb["points"]]
    text = ("From `docs/benchmarks/testbed/testbed.json` (`edgesplit bench testbed --json`): single-task "
            "latency on the idle testbed (median) and throughput of a burst submitted at once, measured and "
            "predicted by the simulator for the same cluster file. Error = predicted / measured - 1.\n\n"
            + table(("model", "hosts", "mode", "measured, ms", "predicted, ms", "error",
                     "throughput (/s)", "predicted throughput (/s)"), rows))
    summary = tb.get("summary") or {}
    if summary.get("median_abs_error") is not None:
        text += (f"\n\nPrediction error over all points: median {100 * summary['median_abs_error']:.1f}%, "
                 f"worst {100 * summary['max_abs_error']:.1f}%.")
    same = same_plan_modes(tb["points"])
    for where, ratios in sorted((summary.get("ratios") or {}).items()):
        listed = ", ".join(f"{mode} {x(v)}" for mode, v in sorted(ratios.items()))
        text += f" Measured latency over edgesplit's at {where.replace('@', ', ')} hosts: {listed}."
        if same.get(where):
            text += (f" ({' and '.join(same[where])} served the same plan as edgesplit there: the same "
                     f"stages and cut, so that ratio is a tie within the run's noise.)")
    return text


def bench_headline(s: Summary) -> str:
    c = s["compare"]

    def sp(scen: str) -> str:
        return " / ".join(x(c[f"{scen}/{m}"]["speedup"]) for m in MODELS)

    a = s["fig7"]["alexnet-paper"]["at_1_thread_ms"]
    return table(("what (simulated, scenario seed 0)", "measured", "target", "command"), [
        ("single task, Ours (paper) / Ours (edgesplit), AlexNet / VGG-16", f"paper: {sp('paper')}; edge-1g: "
         f"{sp('edge-1g')}", "never below 1x; at least 2x on edge-1g", "`edgesplit reproduce compare`"),
        ("No Split, alexnet-paper, one 80 GFLOPS thread (model check)", f"{ms(a['No Split'])} ms",
         'paper: "about ... 38 milliseconds"', "`edgesplit reproduce fig7`")])


def bench_runtime(s: Summary) -> str:
    t = s.get("timing", {}).get("all")
    if t is None:
        return "`edgesplit reproduce all` has not been timed in this summary."
    return (f"`edgesplit reproduce all` took {t['wall_s']:.0f} s of wall time ({t['cpu_s']:.0f} s of CPU) on "
            f"{t['started_utc']}, load average {t['load_start']:.2f} at the start and {t['load_end']:.2f} at "
            "the end; each figure's time is in docs/REPRODUCTION.md.")


def model_checks(s: Summary) -> str:
    a, v = s["fig7"]["alexnet-paper"]["at_1_thread_ms"], s["fig7"]["vgg16-paper"]["at_1_thread_ms"]
    return table(("check", "model", "paper"), [
        ("No Split, `alexnet-paper`, one 80 GFLOPS thread", f"{ms(a['No Split'])} ms", q("alex17")),
        ("DADS, `alexnet-paper`, one edge thread, `paper` scenario", f"{ms(a['DADS'])} ms",
         "the same sentence: used to calibrate the cloud"),
        ("No Split / DADS, `vgg16-paper`, one thread", f"{ms(v['No Split'])} ms / {ms(v['DADS'])} ms",
         q("vgg14"))])


def readme(s: Summary) -> str:
    d, r = s["fig9"]["digits"], s["fig9"]["random"]
    v = s["fig7"]["vgg16-paper"]["times_ours_paper"]
    return (f"The exact splits agree with the unsplit model on {pct(100 * d['exact_min_agreement'])} of "
            f"{d['samples']} digits test images and {pct(100 * r['exact_min_agreement'])} of {r['samples']} "
            "random inputs (8 servers); the paper reports accuracy losses of about 4% to 30% for its method "
            "(section 5.4). In the simulator, VGG-16's No Split and DADS at one thread take "
            f"{x(v['No Split'])} and {x(v['DADS'])} "
            'the latency of the paper\'s method, where the paper says "about 1 time and 4 times higher" '
            "(docs/REPRODUCTION.md, with every difference).")


RENDERERS: dict[str, Callable[[Summary], str]] = {
    "runtime": runtime, "scenario": scenario, "sensitivity-threads": sensitivity_threads,
    "sensitivity-links": sensitivity_links, "fig6": fig6, "fig7": fig7, "fig8": fig8, "fig9": fig9,
    "compare": compare, "bench-headline": bench_headline, "bench-runtime": bench_runtime,
    "model-checks": model_checks, "readme": readme}
VOLATILE: frozenset[str] = frozenset({"runtime", "bench-runtime"})  # run times differ on every run


def render(summary: Summary, testbed_points: Summary | None = None) -> dict[str, str]:
    """Every block, by name (module docstring)."""
    blocks = {name: fn(summary) for name, fn in RENDERERS.items()}
    blocks["testbed"] = render_testbed(testbed_points)
    return blocks
