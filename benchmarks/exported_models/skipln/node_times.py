"""Per-kernel measured (ORT profiler, 1 thread, ORT_ENABLE_ALL) vs kernel-sum predicted, for one model.
Mapping: optimized-graph nodes joined by tensors that do not exist in the original graph form a
'unit'; a unit covers the original nodes whose outputs vanished, walking back from its outputs.
usage: pernode.py MODEL.onnx OUT.json [runs]"""
import sys, json, tempfile, time
from pathlib import Path
from collections import defaultdict
import numpy as np
import onnx, onnxruntime as ort
from sniper_onnx.analysis import analyze
from sniper_onnx.analysis.kernels import kernel_row, kernel_group, kernel_table
from sniper_onnx.predictors import load_predictor

DEV = "AMD EPYC | cpu fp32 t1 opt-all"
path, out = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 40
model = onnx.load(path)
res = analyze(model)
pred = load_predictor(None, devices=[DEV])
nets = pred.network_matrix([dict(res.features)])
dev = pred.device_vector(DEV)
full = pred.predict([dict(res.features)], [DEV], kernel_tables=[kernel_table(res.nodes)]).rows[0].seconds
anodes = [n for n in res.nodes if not n.subgraph]
layers = [n for n in anodes if n.is_layer]
rows = [np.array([kernel_row(n)], dtype=np.float32) for n in layers]
p = pred.run(np.tile(nets, (len(layers), 1)), np.tile(dev, (len(layers), 1)), rows)["kernel_seconds"]
# a one-row table is a whole network to the graph, which adds a call's cost to it: take it off
from sniper_onnx.predictors.kernelnet import call_log_seconds_numpy
from sniper_onnx.predictors.runtime import params_of
p = p - float(np.exp(call_log_seconds_numpy(params_of(pred), dev)))
pnode = {n.name: float(x) for n, x in zip(layers, p)}

# ---- profile
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
opt_path = str(Path(out).with_suffix(".opt.onnx"))
so.optimized_model_filepath = opt_path
tmp = tempfile.mkdtemp()
so.enable_profiling = True; so.profile_file_prefix = tmp + "/prof"
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
rng = np.random.default_rng(0)
feed = {}
for i in s.get_inputs():
    shp = [d if isinstance(d, int) else 1 for d in i.shape]
    if "int64" in i.type:
        feed[i.name] = rng.integers(0, 1000, shp).astype(np.int64)
        if i.name == "attention_mask": feed[i.name][:] = 1
    else:
        feed[i.name] = rng.standard_normal(shp).astype(np.float32)
WARM = 10
walls = []
for k in range(WARM + runs):
    t = time.perf_counter(); s.run(None, feed); walls.append(time.perf_counter() - t)
events = json.loads(Path(s.end_profiling()).read_text())
times = defaultdict(list); optype = {}
for e in events:
    if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
        nm = e["name"][: -len("_kernel_time")]
        times[nm].append(e["dur"] * 1e-6)
        optype[nm] = e.get("args", {}).get("op_name", "?")
med = {k: float(np.median(v[WARM:])) for k, v in times.items()}
mn = {k: float(min(v[WARM:])) for k, v in times.items()}

# ---- units of the optimized graph
opt = onnx.load(opt_path)
orig_tensors = set()
oprod = {}
for n in model.graph.node:
    for o in n.output:
        orig_tensors.add(o); oprod[o] = n
orig_tensors |= {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer}
opt_tensors = {o for n in opt.graph.node for o in n.output} | {i.name for i in opt.graph.input} | {i.name for i in opt.graph.initializer}
parent = {n.name: n.name for n in opt.graph.node}
def find(x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]; x = parent[x]
    return x
tprod = {o: n.name for n in opt.graph.node for o in n.output}
for n in opt.graph.node:
    for i in n.input:
        if i and i not in orig_tensors and i in tprod:
            parent[find(i and tprod[i])] = find(n.name)
units = defaultdict(list)
for n in opt.graph.node:
    units[find(n.name)].append(n)
covered = {}  # original node name -> unit
for u, members in units.items():
    stack = [o for m in members for o in m.output if o in orig_tensors]
    seen = set()
    while stack:
        t = stack.pop()
        if t in seen or t not in oprod: continue
        seen.add(t)
        src = oprod[t]
        if src.name in covered: continue
        covered[src.name] = u
        for i in src.input:
            if i and i in oprod and i not in opt_tensors:
                stack.append(i)
# analyzer node -> unit
a_unit = {}
for n in anodes:
    for nm in (n.name, *n.fused_from):
        if nm in covered:
            a_unit[n.name] = covered[n.name] if n.name in covered else covered[nm]; break
ures = {}
for u, members in units.items():
    an = [n for n in anodes if a_unit.get(n.name) == u]
    ures[u] = dict(unit=u, kernels=[(m.name, m.op_type, m.domain) for m in members],
                   meas=sum(med.get(m.name, 0.0) for m in members), meas_min=sum(mn.get(m.name, 0.0) for m in members),
                   pred=sum(pnode.get(n.name, 0.0) for n in an),
                   anodes=[dict(name=n.name, op=n.op_type, group=kernel_group(n) if n.is_layer else "-",
                                ins=[list(x) if x else None for x in n.input_shapes],
                                outs=[list(x) if x else None for x in n.output_shapes],
                                macs=int(n.macs or 0), pred=pnode.get(n.name, 0.0), fused_from=list(n.fused_from))
                           for n in an])
uncovered = [dict(name=n.name, op=n.op_type, pred=pnode[n.name]) for n in layers if n.name not in a_unit]
noevent = [m.name for mem in units.values() for m in mem if m.name not in med]
out_json = dict(model=path, full_pred=full, sum_node_pred=sum(pnode.values()),
                wall_min=min(walls[WARM:]), wall_med=float(np.median(walls[WARM:])),
                prof_sum_med=sum(med.values()), prof_sum_min=sum(mn.values()),
                units=list(ures.values()), uncovered=uncovered, kernels_without_event=noevent,
                events={k: (optype[k], med[k], mn[k]) for k in med})
Path(out).write_text(json.dumps(out_json, indent=1))
print(f"{path}: full pred {full*1e3:.3f} ms, sum node preds {sum(pnode.values())*1e3:.3f}, wall min {min(walls[WARM:])*1e3:.3f} "
      f"med {np.median(walls[WARM:])*1e3:.3f}, prof sum med {sum(med.values())*1e3:.3f} min {sum(mn.values())*1e3:.3f}")
print("uncovered layer nodes:", [(u['name'], u['op'], round(u['pred'] * 1e3, 4)) for u in uncovered])
print("kernels without event:", noevent)
