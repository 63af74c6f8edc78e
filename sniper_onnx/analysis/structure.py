"""The operator DAG, the layer graph seen through plumbing ops, branches and the critical path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sniper_onnx.analysis.costs import NodeCost

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx


@dataclass
class Structure:
    layer_edges: dict[str, set[str]]  # layer -> the layers it feeds, looking through plumbing ops
    input_fanout: int  # most distinct layers fed by one graph input
    critical_path: list[str]  # layer names, first to last


def operator_graph(costs: list[NodeCost]) -> "nx.DiGraph":
    """Every operator node (with its costs as attributes); an edge per tensor between two nodes.

    networkx takes a quarter of a second to import, so the graph is built on first use only.
    """
    import networkx as nx

    graph = nx.DiGraph()
    producer: dict[str, str] = {}
    for cost in costs:
        graph.add_node(cost.name, op_type=cost.op_type, category=cost.category, is_layer=cost.is_layer,
                       macs=cost.macs, params=cost.params)
        for tensor in cost.inputs:
            source = producer.get(tensor)
            if source is not None and not graph.has_edge(source, cost.name):
                graph.add_edge(source, cost.name, tensor=tensor)
        for tensor in cost.outputs:
            producer[tensor] = cost.name
    return graph


def layer_edges(costs: list[NodeCost], graph_inputs: list[str]) -> tuple[dict[str, set[str]], int]:
    """Which layers feed which, bypassing plumbing; static (constant or shape) tensors carry no edge."""
    feeders: dict[str, frozenset[str]] = {name: frozenset({f"input:{name}"}) for name in graph_inputs}
    edges: dict[str, set[str]] = {f"input:{name}": set() for name in graph_inputs}
    for cost in costs:
        if cost.category == "constant":
            continue
        sources = frozenset().union(*(feeders.get(t, frozenset()) for t in cost.inputs))
        if cost.is_layer:
            edges.setdefault(cost.name, set())
            for source in sources:
                edges[source].add(cost.name)
            sources = frozenset({cost.name})
        for tensor in cost.outputs:
            feeders[tensor] = sources
    fanout = max((len(edges.pop(f"input:{name}")) for name in graph_inputs), default=0)
    return edges, fanout


def critical_path(costs: list[NodeCost], edges: dict[str, set[str]]) -> list[str]:
    """Heaviest path by MACs through the layer DAG; ties go to the path with more layers."""
    by_name = {c.name: c for c in costs}
    best: dict[str, tuple[int, int]] = {}
    previous: dict[str, str | None] = {}
    predecessors: dict[str, list[str]] = {name: [] for name in edges}
    for source, targets in edges.items():
        for target in targets:
            predecessors[target].append(source)
    for cost in costs:  # costs are in topological order
        if cost.name not in edges:
            continue
        chosen = max(predecessors[cost.name], key=lambda p: best[p], default=None)
        base = best[chosen] if chosen is not None else (0, 0)
        best[cost.name] = (base[0] + by_name[cost.name].macs, base[1] + 1)
        previous[cost.name] = chosen
    if not best:
        return []
    end = max(best, key=lambda name: best[name])
    path = []
    while end is not None:
        path.append(end)
        end = previous[end]
    return path[::-1]


def analyse_structure(costs: list[NodeCost], graph_inputs: list[str]) -> Structure:
    edges, fanout = layer_edges(costs, graph_inputs)
    path = critical_path(costs, edges)
    on_path = set(path)
    for cost in costs:
        cost.on_critical_path = cost.name in on_path
    return Structure(edges, fanout, path)


def max_branches(structure: Structure) -> int:
    """The most layers fed by one layer's output (or one graph input): 1 for a chain, 4 for Inception."""
    widest = max((len(targets) for targets in structure.layer_edges.values()), default=0)
    best = max(widest, structure.input_fanout)
    return max(best, 1) if structure.layer_edges else 0
