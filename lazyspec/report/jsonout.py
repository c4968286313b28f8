"""JSON output: a documented, versioned document (schema: lazyspec/report/schema.json)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from lazyspec.errors import Diagnostic, Location
from lazyspec.shapes import as_lists

if TYPE_CHECKING:
    from lazyspec.gate import GateReport, RunOutcome
    from lazyspec.preview import Preview
    from lazyspec.result import InferOutcome, InferResult, Totals
    from lazyspec.weights import KeyRow, WeightsReport

JSON_VERSION = 1


def location(loc: Location | None) -> dict[str, Any] | None:
    return None if loc is None else {"path": loc.path, "line": loc.line, "col": loc.col}


def diagnostic(d: Diagnostic) -> dict[str, Any]:
    return {"code": d.code, "severity": d.severity, "message": d.message,
            "location": location(d.location), "trail": list(d.trail), "notes": list(d.notes),
            "hint": d.hint}


def totals(t: Totals) -> dict[str, Any]:
    return {**asdict(t), "macs": t.macs, "non_trainable": t.non_trainable}


def result_fields(r: InferResult | None) -> dict[str, Any]:
    if r is None:
        return {"name": None, "device": None, "dtype": None, "inputs": [], "outputs": [],
                "params": [], "nodes": [], "totals": None, "run": None, "more_runs": [],
                "symbols": {}, "symbolic_outputs": [], "notes": []}
    return {
        "name": r.name, "device": r.device, "dtype": r.dtype,
        "inputs": [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in r.inputs],
        "outputs": [as_lists(o) for o in r.outputs],
        "params": [{"path": p.path, "op": p.op, "module_type": p.module_type,
                    "shape": list(p.shape), "count": p.count, "dtype": p.dtype,
                    "bytes": p.bytes, "trainable": p.trainable, "shared": p.shared,
                    "location": location(p.location)} for p in r.params],
        "nodes": [{"path": n.path, "op": n.op, "depth": n.depth, "input": as_lists(n.input),
                   "output": as_lists(n.output),
                   "skipped": n.skipped, "shared_from": n.shared_from, "params": n.params,
                   "flops": n.flops, "unknown_ops": n.unknown_ops,
                   "activation_bytes": n.activation_bytes, "symbolic": n.symbolic,
                   "location": location(n.location)} for n in r.nodes],
        "totals": totals(r.totals),
        "run": asdict(r.run) if r.run else None,
        "symbols": dict(r.symbols), "symbolic_outputs": list(r.symbolic_outputs),
        "more_runs": [{"inputs": [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype}
                                  for i in m.inputs],
                       "outputs": [as_lists(o) for o in m.outputs]} for m in r.more_runs],
        "notes": list(r.notes),
    }


def infer_document(o: InferOutcome) -> dict[str, Any]:
    return {"version": JSON_VERSION, "command": "infer", "ok": o.exit_code == 0,
            "exit_code": o.exit_code, "spec": o.spec, **result_fields(o.result),
            "ran": o.ran, "diagnostics": [diagnostic(d) for d in o.diagnostics]}


def _run(o: RunOutcome) -> dict[str, Any]:
    r = o.result
    extra = {} if o.checkpoint is None else {"checkpoint": checkpoint_fit(o.checkpoint)}
    return {"spec": o.spec_key, "key": o.key, "inputs": list(o.run.inputs), "scale": o.run.scale,
            "status": o.status, "lock_status": o.lock_status, "drift": o.drift,
            "outputs": [as_lists(x) for x in r.outputs] if r else [],
            "totals": totals(r.totals) if r else None,
            "diagnostics": [diagnostic(d) for d in o.diagnostics], **extra}


def gate_document(report: GateReport) -> dict[str, Any]:
    return {"version": JSON_VERSION, "command": report.command, "ok": report.exit_code == 0,
            "exit_code": report.exit_code, "lock": str(report.lock_path),
            "wrote_lock": report.wrote_lock, "runs": [_run(o) for o in report.outcomes],
            "unused": [{"spec": e.spec, "key": e.key} for e in report.unused],
            "notes": list(report.notes)}


def show_document(p: Preview) -> dict[str, Any]:
    return {"version": JSON_VERSION, "command": "show", "spec": p.spec, "name": p.name,
            "params": [{"path": x.path, "op": x.op, "shape": list(x.shape), "count": x.count,
                        "tied": x.tied, "location": location(x.location)} for x in p.params],
            "known_params": p.known_params, "unknown": p.unknown,
            "lazy_modules": p.lazy_modules}


def dumps(document: dict[str, Any]) -> str:
    """The document as JSON text, safe to print: `json.dumps` escapes every control character
    and lone surrogate (and, with ensure_ascii, everything else beyond ASCII), and a `#` that
    would complete GitHub's old `##[command]` prefix is written `\\u0023`, which decodes the
    same. No line can start with `::`: each starts with a quote, a bracket or a number."""
    text = json.dumps(document, indent=2, ensure_ascii=True)
    return text.replace("##[", "#\\u0023[") + "\n"


def _key(row: KeyRow) -> dict[str, Any]:
    e, s = row.expected, row.stored
    return {"name": row.name, "status": row.status,
            "spec": None if e is None else {"shape": list(e.shape), "dtype": e.dtype,
                                            "kind": e.kind, "tied": list(e.tied)},
            "checkpoint": None if s is None else {"name": s.name, "shape": list(s.shape),
                                                  "dtype": s.dtype, "file": s.file,
                                                  "transposed": row.transposed},
            "location": location(row.location), "note": row.note}


def checkpoint_fit(report: WeightsReport) -> dict[str, Any]:
    """A checkpoint against a spec: what `weights` prints and a gate run carries."""
    layout = report.layout
    return {"checkpoint": report.checkpoint, "format": report.format,
            "files": list(report.files), "fits": report.fits,
            "layout": {"strip_prefix": list(layout.strip_prefix),
                       "add_prefix": layout.add_prefix, "transpose": list(layout.transpose),
                       "ignore": list(layout.ignore)},
            "counts": report.counts(), "keys": [_key(r) for r in report.rows],
            "notes": list(report.notes)}


def weights_document(report: WeightsReport) -> dict[str, Any]:
    return {"version": JSON_VERSION, "command": "weights", "ok": report.exit_code == 0,
            "exit_code": report.exit_code, "spec": report.spec,
            "inputs": [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype}
                       for i in report.inputs],
            "fit": checkpoint_fit(report) if report.compared else None, "ran": report.ran,
            "diagnostics": [diagnostic(d) for d in report.diagnostics]}


class JsonReporter:
    machine = True

    def infer(self, outcome: InferOutcome) -> str:
        return dumps(infer_document(outcome))

    def gate(self, report: GateReport) -> str:
        return dumps(gate_document(report))

    def show(self, preview: Preview) -> str:
        return dumps(show_document(preview))

    def weights(self, report: WeightsReport) -> str:
        return dumps(weights_document(report))
