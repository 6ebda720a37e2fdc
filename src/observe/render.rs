//! The flow's graph as Bytewax renders it: [`RenderedDataflow`] (`/dataflow`, `waxfast
//! visualize --format json`), Mermaid (`waxfast visualize`, Bytewax's `python -m
//! bytewax.visualize`) and Graphviz dot.
//!
//! A step's ports are named as Bytewax names them (`up`, `ups` for `merge`, `down`,
//! `trues`/`falses` for `branch`, `down`/`late`/`meta` for windows); a port's id is
//! `step_id.port_name`. A stream is named by the port of the innermost step that emits
//! it (`from_stream_ids`); `from_port_ids` names the port one level up or across: the
//! upstream sibling's output port, or the enclosing operator's input port when the
//! stream comes from outside it. Composite operators (`count_final`, `join`, windows)
//! have the ports of the streams that cross their boundary.

use std::fmt::Write as _;

use serde::Serialize;

use crate::dataflow::{Plan, StreamId};

/// A port of a rendered operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenderedPort {
    /// Always `"RenderedPort"`.
    pub typ: &'static str,
    /// `up`, `down`, ...
    pub port_name: String,
    /// `step_id.port_name`.
    pub port_id: String,
    /// The ports this one is connected to, one level up or across.
    pub from_port_ids: Vec<String>,
    /// The streams it carries, named by the innermost port that emits them.
    pub from_stream_ids: Vec<String>,
}

/// An operator of the rendered graph; composites have `substeps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenderedOperator {
    /// Always `"RenderedOperator"`.
    pub typ: &'static str,
    /// The operator's name: `map`, `count_final`, `input`, ...
    pub op_type: String,
    /// The last component of the step id.
    pub step_name: String,
    /// The full, dotted step id.
    pub step_id: String,
    /// Input ports.
    pub inp_ports: Vec<RenderedPort>,
    /// Output ports.
    pub out_ports: Vec<RenderedPort>,
    /// Inner steps of a composite operator, in declaration order.
    pub substeps: Vec<RenderedOperator>,
}

/// A flow's graph, in the shape of Bytewax's `bytewax.dataflow` rendering (the JSON
/// its dataflow API serves at `/dataflow`).
///
/// ```
/// use waxfast::Dataflow;
/// use waxfast::connectors::{stdio::StdOutSink, testing::TestingSource};
/// use waxfast::observe::RenderedDataflow;
/// let flow = Dataflow::new("simple");
/// flow.input("inp", TestingSource::new(0..3u64)).map("plus_one", |x| x + 1).output("out", StdOutSink::new());
/// let graph = RenderedDataflow::of(&flow).unwrap();
/// assert_eq!(graph.substeps[1].step_id, "simple.plus_one");
/// assert_eq!(graph.substeps[1].inp_ports[0].from_port_ids, ["simple.inp.down"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenderedDataflow {
    /// Always `"RenderedDataflow"`.
    pub typ: &'static str,
    /// The flow's name.
    pub flow_id: String,
    /// The top-level operators, in declaration order.
    pub substeps: Vec<RenderedOperator>,
}

/// A node of the step tree: a step of the plan (leaf) or a composite's scope.
struct Node {
    id: String,
    kind: String,
    /// Step indices of the leaves under this node, in order (one for a leaf).
    leaves: Vec<usize>,
    children: Vec<usize>,
    leaf: Option<usize>,
}

/// Port names of a step kind, for `n_in` inputs and `n_out` outputs.
fn leaf_ports(kind: &str, n_in: usize, n_out: usize) -> (Vec<String>, Vec<String>) {
    let ins = match (kind, n_in) {
        (_, 0) => vec![],
        ("merge", _) => vec!["ups".to_string()],
        (_, 1) => vec!["up".to_string()],
        _ => (0..n_in).map(|i| format!("up{i}")).collect(),
    };
    let named = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let outs = match (kind, n_out) {
        (_, 0) => vec![],
        ("branch", 2) => named(&["trues", "falses"]),
        ("window_split", 3) => named(&["down", "late", "meta"]),
        (_, 1) => vec!["down".to_string()],
        _ => (0..n_out).map(|i| format!("down{i}")).collect(),
    };
    (ins, outs)
}

impl RenderedDataflow {
    /// Renders `flow`; fails as running it would if the flow is invalid.
    pub fn of(flow: &crate::Dataflow) -> crate::Result<RenderedDataflow> {
        Ok(Self::of_plan(&flow.plan()?))
    }

    pub(crate) fn of_plan(plan: &Plan) -> RenderedDataflow {
        // The tree: every scope and step, parented by the longest scope id that
        // prefixes it.
        let mut nodes: Vec<Node> = Vec::new();
        for (id, kind) in &plan.scopes {
            nodes.push(Node {
                id: id.to_string(),
                kind: kind.to_string(),
                leaves: vec![],
                children: vec![],
                leaf: None,
            });
        }
        let n_scopes = nodes.len();
        for (i, s) in plan.steps.iter().enumerate() {
            nodes.push(Node {
                id: s.id.to_string(),
                kind: s.kind.to_string(),
                leaves: vec![i],
                children: vec![],
                leaf: Some(i),
            });
        }
        let parent_of = |id: &str| -> Option<usize> {
            (0..n_scopes)
                .filter(|&k| {
                    let p = &plan.scopes[k].0;
                    id.len() > p.len() + 1 && id.starts_with(&**p) && id.as_bytes()[p.len()] == b'.'
                })
                .max_by_key(|&k| plan.scopes[k].0.len())
        };
        let parents: Vec<Option<usize>> = nodes.iter().map(|n| parent_of(&n.id)).collect();
        // Leaves bubble up to every ancestor.
        for i in n_scopes..nodes.len() {
            let leaf = nodes[i].leaves[0];
            let mut p = parents[i];
            while let Some(k) = p {
                nodes[k].leaves.push(leaf);
                p = parents[k];
            }
        }
        let mut roots = Vec::new();
        for (i, p) in parents.iter().enumerate() {
            if nodes[i].leaves.is_empty() {
                continue;
            }
            match p {
                Some(k) => nodes[*k].children.push(i),
                None => roots.push(i),
            }
        }
        let first = |nodes: &[Node], i: usize| nodes[i].leaves.iter().min().copied();
        roots.sort_by_key(|&i| first(&nodes, i));
        for k in 0..nodes.len() {
            let mut c = std::mem::take(&mut nodes[k].children);
            c.sort_by_key(|&i| first(&nodes, i));
            nodes[k].children = c;
        }

        // Each stream's name: the innermost port that emits it.
        let mut stream_name: Vec<String> = vec![String::new(); plan.streams];
        let mut producer: Vec<usize> = vec![usize::MAX; plan.streams];
        for (i, s) in plan.steps.iter().enumerate() {
            let (_, outs) = leaf_ports(s.kind, s.inputs.len(), s.outputs.len());
            for (o, name) in s.outputs.iter().zip(outs) {
                stream_name[*o] = format!("{}.{name}", s.id);
                producer[*o] = i;
            }
        }
        let r = Renderer {
            plan,
            nodes: &nodes,
            stream_name,
            producer,
        };
        RenderedDataflow {
            typ: "RenderedDataflow",
            flow_id: plan.name.clone(),
            substeps: r.render_level(&roots, None),
        }
    }

    /// The graph as JSON, indented as Bytewax's `/dataflow` is.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The graph as Mermaid, exactly as `python -m bytewax.visualize` prints it: one
    /// subgraph for the flow, its top-level operators, and an edge per connection
    /// labelled `from_port → to_port`.
    pub fn to_mermaid(&self) -> String {
        let mut s = String::from("flowchart TD\n");
        let _ = writeln!(s, "subgraph \"{} (Dataflow)\"", self.flow_id);
        for op in &self.substeps {
            let _ = writeln!(s, "{}[\"{} ({})\"]", op.step_id, op.step_name, op.op_type);
            for port in &op.inp_ports {
                for from in &port.from_port_ids {
                    let (from_step, from_port) = from.rsplit_once('.').unwrap_or((from, ""));
                    let _ = writeln!(
                        s,
                        "{from_step} -- \"{from_port} → {}\" --> {}",
                        port.port_name, op.step_id
                    );
                }
            }
        }
        s.push_str("end\n");
        s
    }

    /// The graph as Graphviz dot: the top-level operators and their connections.
    pub fn to_dot(&self) -> String {
        let q = |t: &str| format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\""));
        let mut s = String::from("digraph {\n");
        let _ = writeln!(s, "  label={};", q(&format!("{} (Dataflow)", self.flow_id)));
        s.push_str("  node [shape=box];\n");
        for op in &self.substeps {
            let _ = writeln!(
                s,
                "  {} [label={}];",
                q(&op.step_id),
                q(&format!("{} ({})", op.step_name, op.op_type))
            );
        }
        for op in &self.substeps {
            for port in &op.inp_ports {
                for from in &port.from_port_ids {
                    let (from_step, from_port) = from.rsplit_once('.').unwrap_or((from, ""));
                    let _ = writeln!(
                        s,
                        "  {} -> {} [label={}];",
                        q(from_step),
                        q(&op.step_id),
                        q(&format!("{from_port} → {}", port.port_name))
                    );
                }
            }
        }
        s.push_str("}\n");
        s
    }
}

struct Renderer<'a> {
    plan: &'a Plan,
    nodes: &'a [Node],
    stream_name: Vec<String>,
    producer: Vec<usize>,
}

/// One node's ports before they are connected: (name, streams) per port.
type Ports = Vec<(String, Vec<StreamId>)>;

impl Renderer<'_> {
    fn contains(&self, node: usize, step: usize) -> bool {
        self.nodes[node].leaves.contains(&step)
    }

    /// The node's input and output ports, by the streams they carry.
    fn ports(&self, node: usize) -> (Ports, Ports) {
        let n = &self.nodes[node];
        if let Some(i) = n.leaf {
            let s = &self.plan.steps[i];
            let (ins, outs) = leaf_ports(s.kind, s.inputs.len(), s.outputs.len());
            let inp = if ins.len() == 1 {
                vec![(ins[0].clone(), s.inputs.clone())]
            } else {
                ins.into_iter()
                    .zip(s.inputs.iter().map(|&x| vec![x]))
                    .collect()
            };
            let out = outs
                .into_iter()
                .zip(s.outputs.iter().map(|&x| vec![x]))
                .collect();
            return (inp, out);
        }
        // A composite: streams consumed inside and made outside come in; streams made
        // inside and consumed by none of its steps go out.
        let mut ins: Vec<StreamId> = Vec::new();
        let mut outs: Vec<(String, StreamId)> = Vec::new();
        for &leaf in &n.leaves_sorted() {
            let s = &self.plan.steps[leaf];
            for &x in &s.inputs {
                if !self.contains(node, self.producer[x]) && !ins.contains(&x) {
                    ins.push(x);
                }
            }
            let (_, names) = leaf_ports(s.kind, s.inputs.len(), s.outputs.len());
            for (&x, name) in s.outputs.iter().zip(names) {
                let consumed_inside = n
                    .leaves
                    .iter()
                    .any(|&l| self.plan.steps[l].inputs.contains(&x));
                if !consumed_inside {
                    outs.push((name, x));
                }
            }
        }
        let inp = match ins.len() {
            0 => vec![],
            1 => vec![("up".to_string(), ins)],
            _ if n.kind.starts_with("join") => vec![("sides".to_string(), ins)],
            _ => vec![("ups".to_string(), ins)],
        };
        let out = outs.into_iter().map(|(name, x)| (name, vec![x])).collect();
        (inp, out)
    }

    /// The port carrying stream `x` out of node `node`.
    fn out_port_of(&self, node: usize, x: StreamId) -> Option<String> {
        let (_, outs) = self.ports(node);
        outs.into_iter()
            .find(|(_, xs)| xs.contains(&x))
            .map(|(name, _)| format!("{}.{name}", self.nodes[node].id))
    }

    /// Renders the sibling nodes `level`, children of `parent` (`None`: the flow).
    fn render_level(&self, level: &[usize], parent: Option<usize>) -> Vec<RenderedOperator> {
        level
            .iter()
            .map(|&k| self.render(k, level, parent))
            .collect()
    }

    fn render(&self, node: usize, siblings: &[usize], parent: Option<usize>) -> RenderedOperator {
        let n = &self.nodes[node];
        let (ins, outs) = self.ports(node);
        let parent_in = parent.map(|p| self.ports(p).0).unwrap_or_default();
        let inp_ports = ins
            .into_iter()
            .map(|(name, xs)| {
                let from_port_ids = xs
                    .iter()
                    .filter_map(|&x| {
                        let p = self.producer[x];
                        match siblings.iter().find(|&&s| self.contains(s, p)) {
                            Some(&s) => self.out_port_of(s, x),
                            None => parent.and_then(|pk| {
                                parent_in
                                    .iter()
                                    .find(|(_, pxs)| pxs.contains(&x))
                                    .map(|(pn, _)| format!("{}.{pn}", self.nodes[pk].id))
                            }),
                        }
                    })
                    .collect();
                RenderedPort {
                    typ: "RenderedPort",
                    port_id: format!("{}.{name}", n.id),
                    port_name: name,
                    from_port_ids,
                    from_stream_ids: xs.iter().map(|&x| self.stream_name[x].clone()).collect(),
                }
            })
            .collect();
        let out_ports = outs
            .into_iter()
            .map(|(name, xs)| {
                let (from_port_ids, from_stream_ids) = if n.leaf.is_some() {
                    (vec![], vec![])
                } else {
                    (
                        xs.iter()
                            .filter_map(|&x| {
                                let p = self.producer[x];
                                n.children
                                    .iter()
                                    .find(|&&c| self.contains(c, p))
                                    .and_then(|&c| self.out_port_of(c, x))
                            })
                            .collect(),
                        xs.iter().map(|&x| self.stream_name[x].clone()).collect(),
                    )
                };
                RenderedPort {
                    typ: "RenderedPort",
                    port_id: format!("{}.{name}", n.id),
                    port_name: name,
                    from_port_ids,
                    from_stream_ids,
                }
            })
            .collect();
        RenderedOperator {
            typ: "RenderedOperator",
            op_type: n.kind.clone(),
            step_name: n.id.rsplit('.').next().unwrap_or(&n.id).to_string(),
            step_id: n.id.clone(),
            inp_ports,
            out_ports,
            substeps: self.render_level(&n.children, Some(node)),
        }
    }
}

impl Node {
    fn leaves_sorted(&self) -> Vec<usize> {
        let mut l = self.leaves.clone();
        l.sort_unstable();
        l
    }
}
