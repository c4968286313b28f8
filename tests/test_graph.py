"""`lazyspec graph`: the architecture as Mermaid and Graphviz DOT (lazyspec.graph and
lazyspec.report.graph_text)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pydot
import pytest
from conftest import SPECS

import lazyspec
from lazyspec.api import graph_for
from lazyspec.compile import Built, SpecModule, build
from lazyspec.dryrun import run
from lazyspec.graph import (
    Edge,
    Graph,
    GraphNode,
    Subgraph,
    build_graph,
)
from lazyspec.inputs import parse_input
from lazyspec.report.graph_text import render, to_dot, to_mermaid
from lazyspec.shapes import read_shape


def render_graph(built: Built, result, fmt: str, depth=None) -> str:
    return render(build_graph(built, result, depth), fmt)


def compiled(path, **options) -> Built:
    loaded = lazyspec.load(path)
    return build(loaded.spec, loaded.options(**options))


def graph(path, *inputs: str, depth=None, **options) -> Graph:
    built = compiled(path, **options)
    result = run(built, [parse_input(i) for i in inputs]) if inputs else None
    return build_graph(built, result, depth)


def edge(g: Graph, source: str, target: str) -> Edge:
    found = [e for e in g.edges if e.source == source and e.target == target]
    assert len(found) == 1, (source, target, found)
    return found[0]


def node(g: Graph, path: str) -> GraphNode:
    (found,) = [n for n in g.nodes() if n.path == path]
    return found


def open_blocks(module: SpecModule, depth: int | None) -> int:
    """How many block calls a graph at this depth should draw as subgraphs."""
    count = 0
    for step in module.steps:
        if (isinstance(step.module, SpecModule) and step.info.shared_from is None
                and (depth is None or step.info.depth + 1 < depth)):
            count += 1 + open_blocks(step.module, depth)
    return count


def parse_dot(text: str) -> tuple[pydot.Dot, list[str], list[pydot.Subgraph]]:
    """The graph, every node name (unquoted, subgraphs included) and every subgraph."""
    with warnings.catch_warnings():  # pydot's parser uses pyparsing's deprecated names
        warnings.simplefilter("ignore", DeprecationWarning)
        graphs = pydot.graph_from_dot_data(text)
    assert graphs is not None and len(graphs) == 1
    (dot,) = graphs
    names: list[str] = []
    clusters: list[pydot.Subgraph] = []

    def collect(g: pydot.Graph) -> None:
        names.extend(n.get_name().strip('"') for n in g.get_nodes()
                     if n.get_name() not in ("node", "edge", "graph"))
        for sub in g.get_subgraphs():
            clusters.append(sub)
            collect(sub)

    collect(dot)
    return dot, names, clusters


def unquote(text: str) -> str:
    assert text.startswith('"') and text.endswith('"'), text
    return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")


# --- the golden file and the DOT parse ----------------------------------------------------------


def test_unet_mermaid_golden(golden):
    # `lazyspec graph specs/unet.yaml --format mermaid`: the input is declared [B, C, H, W], with
    # no sizes, so there is no dry run and no shapes; every block is open.
    text = graph_for(SPECS / "unet.yaml", fmt="mermaid")
    golden("graph-unet.mermaid.out", text)
    assert text.startswith("%% U-Net (small)\nflowchart TD\n")
    assert text == graph_for(SPECS / "unet.yaml", fmt="mermaid")  # deterministic


def test_unet_dot_parses_with_a_cluster_per_block():
    built = compiled(SPECS / "unet.yaml")
    result = run(built, [parse_input("1,3,64,64")])
    g = build_graph(built, result)
    text = render_graph(built, result, "dot")
    dot, names, clusters = parse_dot(text)
    assert dot.get_type() == "digraph"
    # x, inc (6), down1..3 (pool + 6 each), up1..3 (up, cat + 6 each), outc, output
    assert len(names) == len(set(names)) == len(g.nodes()) == 1 + 6 + 3 * 7 + 3 * 8 + 1 + 1
    edges = dot.get_edges()
    assert len(edges) == len(g.edges) == 56
    assert {e.get_source().strip('"') for e in edges} | {e.get_destination().strip('"')
                                                         for e in edges} <= set(names)
    # one cluster per block call: inc, down1..3, up1..3 and the DoubleConv in each Down and Up
    assert len(clusters) == open_blocks(built.module, None) == 13
    assert all(c.get_name().strip('"').startswith("cluster_") for c in clusters)
    labels = sorted(unquote(c.get_graph_defaults()[0]["label"]) for c in clusters)
    assert labels[:3] == ["conv: DoubleConv"] * 3 and "up1: Up" in labels
    shapes = [unquote(e.get_label()) for e in edges]
    assert shapes[0] == "[1, 3, 64, 64]" and shapes[-1] == "[1, 2, 64, 64]"


def test_dot_and_mermaid_escape_quotes_brackets_and_keywords():
    nasty = 'a "q" <b>&amp; #1 `x` [y] (z) {w} | \\ end direction TB\nnext'
    g = Graph(nasty, [
        GraphNode("in_x", "input", "x", "x"),
        Subgraph("cluster_end", "end", "end", nasty, [
            GraphNode("n_end", "op", "end", "end", nasty, skipped="when: false")]),
        GraphNode("out", "output", "output", "output"),
    ], [Edge("in_x", "n_end", "x.0", (1, 2)), Edge("n_end", "out", None, 'odd "shape"')],
        ["in_x"], ["out"])
    dot, names, clusters = parse_dot(to_dot(g))
    assert sorted(names) == ["in_x", "n_end", "out"]
    assert unquote(dot.get_name()) == nasty.replace("\n", "\\n")
    (cluster,) = clusters
    assert unquote(cluster.get_graph_defaults()[0]["label"]) == "end: " + nasty.replace("\n", "\\n")
    assert [unquote(e.get_label()) for e in dot.get_edges()] == ["x.0 [1, 2]", 'odd "shape"']

    text = to_mermaid(g)
    lines = text.splitlines()
    assert lines[0].startswith("%% a ") and "\n" not in lines[0]  # the title, on one line
    body = "\n".join(lines[1:])
    label = ("end: a #quot;q#quot; #lt;b#gt;#amp;amp; #35;1 #96;x#96; [y] (z) {w} | \\ end "
             "direction#32;TB next")
    assert f'subgraph cluster_end ["{label}"]' in body
    assert f'n_end["{label} (skipped: when: false)"]:::skipped' in body
    assert 'n_end -->|"odd #quot;shape#quot;"| out' in body
    for line in lines[1:]:  # every quoted text closes on its line: no stray `"`
        assert line.count('"') % 2 == 0, line


def test_node_ids_stay_unique_and_safe(write_spec):
    spec = write_spec("""
blocks:
  B:
    layers:
      - c: LazyLinear(4)
inputs: {end: [2, 3]}
layers:
  - a: B
    in: end
  - a_c: LazyLinear(4)
  - op: LazyLinear(9)
    repeat: 0
  - LazyLinear(2)
""")
    g = graph(spec, "2,3")
    ids = [n.id for n in g.nodes()] + [s.id for s in g.subgraphs()]
    assert len(ids) == len(set(ids))
    assert all(i.replace("_", "").isalnum() for i in ids)
    assert node(g, "a.c").id == "n_a_c" and node(g, "a_c").id == "n_a_c_2"
    assert g.inputs == ["in_end"]
    skipped = node(g, "2(repeat 0)")  # takes no index: the next node is `2`
    assert skipped.id == "n_2_repeat_0_" and skipped.skipped == "repeat: 0"
    assert skipped.label == "2(repeat 0): LazyLinear (skipped: repeat: 0)"
    assert node(g, "2").id == "n_2"
    parse_dot(render_graph(compiled(spec), None, "dot"))


# --- depth --------------------------------------------------------------------------------------


def test_depth_collapses_blocks_into_one_node():
    g1 = graph(SPECS / "unet.yaml", "1,3,64,64", depth=1)
    assert g1.subgraphs() == []
    assert [n.label for n in g1.nodes()] == [
        "x", "inc: DoubleConv", "down1: Down", "down2: Down", "down3: Down", "up1: Up",
        "up2: Up", "up3: Up", "outc: LazyConv2d", "output"]
    assert [n.kind for n in g1.nodes()][1:8] == ["block"] * 7
    assert edge(g1, "n_down3", "n_up1").label == "[1, 128, 8, 8]"
    assert edge(g1, "n_down2", "n_up1").label == "[1, 64, 16, 16]"  # the skip connection

    g2 = graph(SPECS / "unet.yaml", depth=2)
    assert [s.path for s in g2.subgraphs()] == ["inc", "down1", "down2", "down3", "up1", "up2",
                                               "up3"]
    assert node(g2, "down1.conv").kind == "block"  # DoubleConv at depth 1: drawn as one node
    assert all(n.path.count(".") < 2 for n in g2.nodes())
    assert len(g2.subgraphs()) == open_blocks(compiled(SPECS / "unet.yaml").module, 2)

    full = render_graph(compiled(SPECS / "unet.yaml"), None, "mermaid")
    assert render_graph(compiled(SPECS / "unet.yaml"), None, "mermaid", depth=3) == full
    with pytest.raises(ValueError, match="depth"):
        build_graph(compiled(SPECS / "unet.yaml"), None, 0)


def test_unet_depth_1_mermaid_has_shapes_on_the_edges():
    text = graph_for(SPECS / "unet.yaml", ["1,3,64,64"], depth=1)
    assert 'in_x -->|"[1, 3, 64, 64]"| n_inc' in text
    assert 'n_inc -->|"[1, 16, 64, 64]"| n_down1' in text
    assert 'n_inc -->|"[1, 16, 64, 64]"| n_up3' in text
    assert 'n_outc -->|"[1, 2, 64, 64]"| out' in text
    assert "subgraph" not in text


# --- shapes and block boundaries ----------------------------------------------------------------


def test_block_inputs_and_outputs_connect_through_the_subgraph():
    g = graph(SPECS / "unet.yaml", "1,3,64,64")
    assert g.shapes
    # Up's inner `x` and `skip` come from what feeds the `up1` node: down3's and down2's last ReLU
    assert edge(g, "n_down3_conv_5", "n_up1_up").label == "[1, 128, 8, 8]"
    assert edge(g, "n_down2_conv_5", "n_up1_cat").label == "[1, 64, 16, 16]"
    assert edge(g, "n_up1_up", "n_up1_cat").label == "[1, 64, 16, 16]"
    assert edge(g, "in_x", "n_inc_0").label == "[1, 3, 64, 64]"
    assert edge(g, "n_inc_0", "n_inc_1").label == "[1, 16, 64, 64]"
    assert edge(g, "n_up3_conv_5", "n_outc").label == "[1, 16, 64, 64]"
    # every edge ends at a node, none at a block
    ids = {n.id for n in g.nodes()}
    assert all(e.source in ids and e.target in ids for e in g.edges)
    assert g.outputs == ["out"] and edge(g, "n_outc", "out").label == "[1, 2, 64, 64]"


def test_without_a_result_edges_carry_no_shapes():
    g = graph(SPECS / "unet.yaml")
    assert not g.shapes and all(e.label is None for e in g.edges)
    assert "-->|" not in to_mermaid(g)


def test_declared_inputs_give_shapes_without_input_flags(write_spec):
    spec = write_spec("inputs:\n  x: [2, 20]\nlayers:\n  - fc: LazyLinear(4)\n")
    assert 'in_x -->|"[2, 20]"| n_fc' in graph_for(spec)
    assert 'n_fc -->|"[2, 4]"| out' in graph_for(spec)


def test_named_dims_show_as_names_on_the_edges():
    from lazyspec.result import NodeRecord

    if "symbolic" not in NodeRecord.__dataclass_fields__:
        pytest.skip("this lazyspec has no symbolic shapes")
    text = graph_for(SPECS / "unet.yaml", ["B,3,H,W"], depth=1)
    assert 'in_x -->|"[B, 3, H, W]"| n_inc' in text  # C was given as 3
    assert 'n_inc -->|"[B, 16, H, W]"| n_down1' in text
    assert 'n_down1 -->|"[B, 32, (H//2), (W//2)]"| n_down2' in text
    assert 'n_outc -->|"[B, 2, H, W]"| out' in text
    g = graph(SPECS / "gpt2.yaml", "B,T:int64", scale="tiny")
    assert edge(g, "n_h_0_attn_qkv", "n_h_0_attn_k_0").label == "qkv.1 [B, T, 64]"
    assert edge(g, "n_pos", "n_wpe").label == "[T]"


def test_parse_shape_reads_printed_shapes_back():
    assert read_shape("[B, 16, ((H - 1)//2) + 1]") == ("B", "16", "((H - 1)//2) + 1")
    assert read_shape("[Max(1, H), 3]") == ("Max(1, H)", "3")
    assert read_shape("([B, T, 64], [B, T, 64])") == [("B", "T", "64")] * 2
    assert read_shape("[]") == ()
    assert read_shape("int") == "int"


def test_several_outputs_and_name_k_picks(write_spec):
    spec = write_spec("""
blocks:
  Residual:
    params: {c: 8}
    inputs:
      x:
      skip:
    layers:
      - fc: LazyLinear(c)
        in: x
      - sum: Add
        in: [fc, skip]
    outputs: [sum, fc]
inputs:
  a: [B, 8]
  b: [B, 8]
layers:
  - r: Residual(8)
    in: [a, b]
  - cat: Concat(-1)
    in: [r.0, r.1]
  - parts: Chunk(2, -1)
outputs: [parts.1, r]
""")
    g = graph(spec, "2,8", "2,8")
    assert edge(g, "in_a", "n_r_fc").label == "[2, 8]"
    assert edge(g, "in_b", "n_r_sum").label == "[2, 8]"
    assert edge(g, "n_r_sum", "n_cat").label == "[2, 8]"  # r.0 is the block's `sum`
    assert edge(g, "n_r_fc", "n_cat").label == "[2, 8]"
    assert g.outputs == ["out_0", "out_1"]
    assert edge(g, "n_parts", "out_0").label == "parts.1 [2, 8]"
    assert [e.source for e in g.edges if e.target == "out_1"] == ["n_r_sum", "n_r_fc"]

    collapsed = graph(spec, "2,8", "2,8", depth=1)
    assert [e.label for e in collapsed.edges if e.target == "n_cat"] == ["r.0 [2, 8]",
                                                                         "r.1 [2, 8]"]
    assert [e.label for e in collapsed.edges if e.target == "out_1"] == ["([2, 8], [2, 8])"]
    assert [n.label for n in collapsed.nodes() if n.kind == "output"] == ["output.0",
                                                                          "output.1"]


# --- the bundled specs --------------------------------------------------------------------------


def test_two_input_draws_two_inputs_and_the_shared_encoder_twice():
    g = graph(SPECS / "two_input.yaml", "a=4,32", "b=4,32")
    assert g.inputs == ["in_a", "in_b"]
    assert [n.label for n in g.nodes() if n.kind == "input"] == ["a", "b"]
    # enc_a is drawn open; enc_b, a second call of the same module, is one node noted as such
    assert [s.label for s in g.subgraphs()] == ["enc_a: Encoder"]
    enc_b = node(g, "enc_b")
    assert (enc_b.kind, enc_b.shared_from) == ("block", "enc_a")
    assert enc_b.label == "enc_b: Encoder (shares enc_a)"
    assert edge(g, "in_a", "n_enc_a_fc1").label == "[4, 32]"
    assert edge(g, "in_b", "n_enc_b").label == "[4, 32]"
    assert [(e.source, e.label) for e in g.edges if e.target == "n_cat"] == [
        ("n_enc_a_3", "[4, 64]"), ("n_enc_b", "[4, 64]")]
    text = to_mermaid(g)
    assert 'n_enc_b[["enc_b: Encoder (shares enc_a)"]]:::shared' in text
    assert "classDef shared" in text and "classDef skipped" not in text
    _, names, clusters = parse_dot(to_dot(g))
    assert len(names) == len(g.nodes()) and len(clusters) == 1


def test_gpt2_tiny_draws_one_edge_per_chunk_output():
    g = graph(SPECS / "gpt2.yaml", "2,16:int64", scale="tiny")
    for k, name in enumerate("qkv"):
        e = edge(g, "n_h_0_attn_qkv", f"n_h_0_attn_{name}_0")  # into Heads' Unflatten
        assert e.label == f"qkv.{k} [2, 16, 64]"
    assert edge(g, "n_h_0_attn_c_attn", "n_h_0_attn_qkv").label == "[2, 16, 192]"
    assert [s.label for s in g.subgraphs()][:3] == ["h: Block x2", "0: Block",
                                                    "attn: CausalSelfAttention"]
    assert edge(g, "n_lm_head", "out").label == "[2, 16, 512]"
    # the residual: the block's input goes to x1 and to ln_1
    assert edge(g, "n_drop", "n_h_0_x1").label == "[2, 16, 64]"
    assert edge(g, "n_h_0_x2", "n_h_1_ln_1").label == "[2, 16, 64]"

    at4 = graph(SPECS / "gpt2.yaml", "2,16:int64", scale="tiny", depth=4)
    for k, name in enumerate("qkv"):
        assert edge(at4, "n_h_0_attn_qkv", f"n_h_0_attn_{name}").label == f"qkv.{k} [2, 16, 64]"
    assert node(at4, "h.0.attn.q").kind == "block"

    top = graph(SPECS / "gpt2.yaml", "2,16:int64", scale="tiny", depth=1)
    assert node(top, "h").label == "h: Block x2" and node(top, "h").kind == "block"
    assert edge(top, "n_drop", "n_h").label == "[2, 16, 64]"
    assert edge(top, "in_idx", "n_wte").label == "[2, 16]"
    assert edge(top, "n_pos", "n_wpe").label == "[16]"
    _, names, clusters = parse_dot(to_dot(g))
    assert len(names) == len(g.nodes()) and len(clusters) == len(g.subgraphs()) == 13


def test_resnet18_skipped_downsample_is_a_dashed_pass_through_node():
    g = graph(SPECS / "resnet18.yaml", "1,3,64,64")
    skipped = node(g, "layer1.0.downsample")
    assert skipped.skipped == "when: false" and skipped.kind == "block"
    assert skipped.label == "downsample: Downsample (skipped: when: false)"
    # the block's input (after the max pool) goes through it into the sum, unchanged
    assert edge(g, "n_3", "n_layer1_0_downsample").label == "[1, 64, 16, 16]"
    assert edge(g, "n_layer1_0_downsample", "n_layer1_0_sum").label == "[1, 64, 16, 16]"
    # with stride 2 the downsample is real: a subgraph of a 1x1 conv and a batch norm
    assert "cluster_layer2_0_downsample" in [s.id for s in g.subgraphs()]
    assert edge(g, "n_layer1_1_7", "n_layer2_0_downsample_0").label == "[1, 64, 16, 16]"
    assert edge(g, "n_layer2_0_downsample_1", "n_layer2_0_sum").label == "[1, 128, 8, 8]"
    assert len([n for n in g.nodes() if n.skipped]) == 5  # layer1.0, and each .1

    text = to_mermaid(g)
    assert ('n_layer1_0_downsample[["downsample: Downsample (skipped: when: false)"]]:::skipped'
            in text)
    assert "classDef skipped stroke-dasharray: 5 5" in text
    dot, _, clusters = parse_dot(to_dot(g))
    (dashed,) = dot.get_subgraphs()[0].get_subgraphs()[0].get_node('"n_layer1_0_downsample"')
    assert dashed.get_attributes()["style"] == '"dashed"'
    assert len(clusters) == open_blocks(compiled(SPECS / "resnet18.yaml").module, None) == 15


# --- entry points -------------------------------------------------------------------------------


def test_render_graph_formats():
    built = compiled(SPECS / "mlp.yaml")
    assert render_graph(built, None, "mermaid").startswith("%% ")
    assert render_graph(built, None, "dot").startswith("digraph ")
    with pytest.raises(ValueError, match="mermaid or dot"):
        render_graph(built, None, "svg")


def test_rendering_needs_no_torch():
    code = ("import sys; from lazyspec.graph import Graph, GraphNode; "
            "from lazyspec.report.graph_text import to_dot, to_mermaid; "
            "g = Graph('t', [GraphNode('in_x', 'input', 'x', 'x')], [], ['in_x'], []); "
            "to_dot(g); to_mermaid(g); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_graph_command(cli) -> None:
    from conftest import SPECS

    r = cli("graph", SPECS / "unet.yaml", "--input", "1,3,64,64", "--depth", "1")
    assert r.code == 0, r.stderr
    assert r.stdout.startswith("%% U-Net") and '-->|"[1, 2, 64, 64]"| out' in r.stdout
    r = cli("graph", SPECS / "mlp.yaml", "--format", "dot")
    assert r.code == 0 and r.stdout.startswith("digraph")
    assert cli("graph", SPECS / "mlp.yaml", "--format", "png").code == 2
    assert cli("graph", SPECS / "mlp.yaml", "--input", "2,30", "--set", "nope=1").code == 2
