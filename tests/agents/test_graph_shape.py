"""The loop's shape, read from the compiled graph: the edges come from each node's Command[Literal[...]] type."""

from __future__ import annotations

from fr_agent.agents.repair import build_graph


def test_repair_graph_edges():
    graph = build_graph().compile().get_graph()
    edges = {(e.source, e.target) for e in graph.edges}
    expected = {
        ("__start__", "analyse"),
        ("analyse", "precheck"),
        ("precheck", "run_stage"),
        ("precheck", "finish"),
        ("run_stage", "run_stage"),
        ("run_stage", "diagnose"),
        ("run_stage", "evaluate"),
        ("diagnose", "plan"),
        ("diagnose", "finish"),
        ("plan", "approve"),
        ("plan", "finish"),
        ("approve", "apply_fix"),
        ("approve", "plan"),
        ("apply_fix", "verify_fix"),
        ("verify_fix", "run_stage"),
        ("verify_fix", "plan"),
        ("evaluate", "publish"),
        ("evaluate", "plan"),
        ("evaluate", "finish"),
        ("publish", "finish"),
        ("finish", "__end__"),
        ("plan", "plan"),
    }
    assert expected <= edges, expected - edges
    assert "flowchart" in graph.draw_mermaid() or "graph" in graph.draw_mermaid()
