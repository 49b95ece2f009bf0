//! The graphical model MST fits to its noisy marginals, and the records it samples from it.
//! Everything here is post-processing: it reads released marginals and public domain sizes only.
//!
//! - [`Tree`]: the selected 2-way marginals as a forest over the columns (a spanning tree when
//!   every selection was made), each edge oriented from a root (parent, child).
//! - [`estimate`]: Private-PGM (McKenna, Sheldon and Miklau 2019) on that tree: entropic mirror
//!   descent on the clique potentials of `p(x) ∝ exp(Σ θ_i(x_i) + Σ θ_e(x_p, x_c))`, minimising
//!   `Σ ½ w² (N·μ − y)²` over every noisy cell `y` (weight `w = 1 / sigma`), with the marginals
//!   `μ` of each step computed exactly by belief propagation (on a tree it is exact), and an
//!   Armijo backtracking step as in the reference implementation.
//! - [`sample`]: `n` records by ancestral sampling along the tree. Each column's values are
//!   allocated to the rows of each parent value in proportion to the conditional distribution
//!   (whole parts, then the fractional remainders by systematic sampling, so each cell's count is
//!   its expectation rounded up or down) and shuffled within the group, as the reference
//!   implementation's `synthetic_data` does; this keeps the sampling noise far below i.i.d.
//!   draws.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::RngCore;

/// A forest over `sizes.len()` columns, edges oriented (parent, child) from each component's
/// root, nodes listed parents first.
#[derive(Debug, Clone, PartialEq)]
pub struct Tree {
    pub sizes: Vec<usize>,
    /// (parent, child) per edge.
    pub edges: Vec<(usize, usize)>,
    /// Nodes in breadth-first order from the roots: every parent before its children.
    pub order: Vec<usize>,
    /// The edge from each node's parent, if it has one.
    pub up: Vec<Option<usize>>,
    /// The edges to each node's children.
    pub down: Vec<Vec<usize>>,
}

impl Tree {
    /// Orient undirected `edges` (which must form a forest) from the lowest-numbered node of each
    /// component.
    pub fn new(sizes: Vec<usize>, edges: &[(usize, usize)]) -> Tree {
        let d = sizes.len();
        let mut neighbours = vec![Vec::new(); d];
        for &(a, b) in edges {
            neighbours[a].push(b);
            neighbours[b].push(a);
        }
        let mut seen = vec![false; d];
        let (mut order, mut oriented) = (Vec::with_capacity(d), Vec::new());
        let mut up = vec![None; d];
        let mut down = vec![Vec::new(); d];
        for root in 0..d {
            if seen[root] {
                continue;
            }
            seen[root] = true;
            let start = order.len();
            order.push(root);
            let mut at = start;
            while at < order.len() {
                let p = order[at];
                at += 1;
                let mut next = neighbours[p].clone();
                next.sort_unstable();
                for c in next {
                    if !seen[c] {
                        seen[c] = true;
                        up[c] = Some(oriented.len());
                        down[p].push(oriented.len());
                        oriented.push((p, c));
                        order.push(c);
                    }
                }
            }
        }
        Tree {
            sizes,
            edges: oriented,
            order,
            up,
            down,
        }
    }
}

/// Which marginal a measurement is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clique {
    Node(usize),
    /// An edge of the tree, its table parent-major: `parent * size(child) + child`.
    Edge(usize),
}

/// A noisy marginal: `values[c]` estimates the count of cell `c`, with weight `1 / sigma` of
/// that cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub clique: Clique,
    pub values: Vec<f64>,
    pub weights: Vec<f64>,
}

/// The fitted model's marginals, as probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct Marginals {
    pub nodes: Vec<Vec<f64>>,
    /// Per edge, parent-major.
    pub edges: Vec<Vec<f64>>,
}

/// The total the measurements estimate: the inverse-variance weighted mean of their sums.
pub fn estimate_total(measurements: &[Measurement]) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for m in measurements {
        let variance: f64 = m.weights.iter().map(|w| 1.0 / (w * w)).sum();
        if variance > 0.0 && variance.is_finite() {
            num += m.values.iter().sum::<f64>() / variance;
            den += 1.0 / variance;
        }
    }
    if den > 0.0 { (num / den).max(0.0) } else { 0.0 }
}

/// Potentials, in the log domain.
#[derive(Debug, Clone)]
struct Theta {
    nodes: Vec<Vec<f64>>,
    edges: Vec<Vec<f64>>,
}

impl Theta {
    fn zeros(tree: &Tree) -> Theta {
        Theta {
            nodes: tree.sizes.iter().map(|&n| vec![0.0; n]).collect(),
            edges: tree
                .edges
                .iter()
                .map(|&(p, c)| vec![0.0; tree.sizes[p] * tree.sizes[c]])
                .collect(),
        }
    }

    fn step(&self, grad: &Theta, alpha: f64) -> Theta {
        let sub = |a: &Vec<Vec<f64>>, g: &Vec<Vec<f64>>| -> Vec<Vec<f64>> {
            a.iter()
                .zip(g)
                .map(|(a, g)| a.iter().zip(g).map(|(a, g)| a - alpha * g).collect())
                .collect()
        };
        Theta {
            nodes: sub(&self.nodes, &grad.nodes),
            edges: sub(&self.edges, &grad.edges),
        }
    }

    fn dot(&self, other: &Marginals) -> f64 {
        let d = |a: &Vec<Vec<f64>>, b: &Vec<Vec<f64>>| -> f64 {
            a.iter()
                .zip(b)
                .map(|(a, b)| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>())
                .sum()
        };
        d(&self.nodes, &other.nodes) + d(&self.edges, &other.edges)
    }
}

fn log_sum_exp(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + values.map(|v| (v - max).exp()).sum::<f64>().ln()
}

fn normalised(log: &[f64]) -> Vec<f64> {
    let z = log_sum_exp(log.iter().copied());
    log.iter().map(|v| (v - z).exp()).collect()
}

/// Exact marginals of the tree model with potentials `theta` (belief propagation in the log
/// domain: messages up from the leaves, then down from the roots).
fn marginals(tree: &Tree, theta: &Theta) -> Marginals {
    let d = tree.sizes.len();
    // inside[i]: θ_i plus the messages from i's children; message_up[e]: over the parent's values.
    let mut inside: Vec<Vec<f64>> = theta.nodes.clone();
    let mut message_up: Vec<Vec<f64>> = vec![Vec::new(); tree.edges.len()];
    for &i in tree.order.iter().rev() {
        if let Some(e) = tree.up[i] {
            let p = tree.edges[e].0;
            let (np, nc) = (tree.sizes[p], tree.sizes[i]);
            let table = &theta.edges[e];
            let message: Vec<f64> = (0..np)
                .map(|xp| log_sum_exp((0..nc).map(|xc| table[xp * nc + xc] + inside[i][xc])))
                .collect();
            for (v, m) in inside[p].iter_mut().zip(&message) {
                *v += m;
            }
            message_up[e] = message;
        }
    }
    // outside[i]: the messages into i from its parent's side.
    let mut outside: Vec<Vec<f64>> = tree.sizes.iter().map(|&n| vec![0.0; n]).collect();
    let mut edges = vec![Vec::new(); tree.edges.len()];
    for &i in &tree.order {
        for &e in &tree.down[i] {
            let c = tree.edges[e].1;
            let (np, nc) = (tree.sizes[i], tree.sizes[c]);
            // Everything about the parent except what came up from this child.
            let parent: Vec<f64> = (0..np)
                .map(|xp| inside[i][xp] + outside[i][xp] - message_up[e][xp])
                .collect();
            let table = &theta.edges[e];
            outside[c] = (0..nc)
                .map(|xc| log_sum_exp((0..np).map(|xp| parent[xp] + table[xp * nc + xc])))
                .collect();
            let inside_c = &inside[c];
            let joint: Vec<f64> = (0..np * nc)
                .map(|at| parent[at / nc] + table[at] + inside_c[at % nc])
                .collect();
            edges[e] = normalised(&joint);
        }
    }
    let nodes = (0..d)
        .map(|i| {
            let log: Vec<f64> = inside[i]
                .iter()
                .zip(&outside[i])
                .map(|(a, b)| a + b)
                .collect();
            normalised(&log)
        })
        .collect();
    Marginals { nodes, edges }
}

/// The loss at marginals `mu` (probabilities, scaled by `total`) and its gradient in count terms.
fn loss(tree: &Tree, measurements: &[Measurement], mu: &Marginals, total: f64) -> (f64, Theta) {
    let mut grad = Theta::zeros(tree);
    let mut loss = 0.0;
    for m in measurements {
        let (p, g) = match m.clique {
            Clique::Node(i) => (&mu.nodes[i], &mut grad.nodes[i]),
            Clique::Edge(e) => (&mu.edges[e], &mut grad.edges[e]),
        };
        for ((&pc, gc), (&y, &w)) in p
            .iter()
            .zip(g.iter_mut())
            .zip(m.values.iter().zip(&m.weights))
        {
            let diff = total * pc - y;
            loss += 0.5 * w * w * diff * diff;
            // d/dθ through μ = total·p: the mirror step takes the gradient in μ's terms.
            *gc += w * w * diff;
        }
    }
    (loss, grad)
}

/// The largest change of any cell's probability between two sets of marginals.
fn largest_change(a: &Marginals, b: &Marginals) -> f64 {
    a.nodes
        .iter()
        .chain(&a.edges)
        .zip(b.nodes.iter().chain(&b.edges))
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f64::max)
}

/// How the fit went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    pub iterations: usize,
    pub loss: f64,
}

/// Fit the tree model to `measurements` at `total` records (see the module docs); at most
/// `max_iterations` mirror-descent steps, fewer when the loss stops falling.
pub fn estimate(
    tree: &Tree,
    measurements: &[Measurement],
    total: f64,
    max_iterations: usize,
) -> (Marginals, Fit) {
    let mut theta = Theta::zeros(tree);
    let mut mu = marginals(tree, &theta);
    if total <= 0.0 {
        return (
            mu,
            Fit {
                iterations: 0,
                loss: 0.0,
            },
        );
    }
    let (mut current, mut grad) = loss(tree, measurements, &mu, total);
    let heaviest = measurements
        .iter()
        .flat_map(|m| m.weights.iter())
        .fold(0.0f64, |a, w| a.max(w * w));
    // A Lipschitz-like start: the loss's curvature in θ is at most about total·w²·(cliques).
    let mut alpha =
        1.0 / (total * heaviest * measurements.len().max(1) as f64).max(f64::MIN_POSITIVE);
    let mut iterations = 0;
    let mut stalled = 0;
    for _ in 0..max_iterations {
        iterations += 1;
        alpha *= 2.0;
        let mut accepted = None;
        for _ in 0..30 {
            let next = theta.step(&grad, alpha);
            let next_mu = marginals(tree, &next);
            let (next_loss, next_grad) = loss(tree, measurements, &next_mu, total);
            // Armijo on the mirror step: the decrease at least half the linear prediction.
            let predicted = total * (grad.dot(&mu) - grad.dot(&next_mu));
            if next_loss.is_finite() && current - next_loss >= 0.5 * predicted {
                accepted = Some((next, next_mu, next_loss, next_grad));
                break;
            }
            alpha *= 0.5;
        }
        let Some((next, next_mu, next_loss, next_grad)) = accepted else {
            break;
        };
        let gain = current - next_loss;
        let moved = total * largest_change(&mu, &next_mu);
        theta = next;
        mu = next_mu;
        grad = next_grad;
        current = next_loss;
        // Converged when the loss stops falling, or when no modelled count moves by a
        // thousandth of a record (the sampled counts are whole records).
        if gain <= 1e-12 * current.max(1.0) || moved < 1e-3 {
            stalled += 1;
            if stalled >= 5 {
                break;
            }
        } else {
            stalled = 0;
        }
    }
    (
        mu,
        Fit {
            iterations,
            loss: current,
        },
    )
}

/// A uniform integer below `n` (post-processing draws; the bias of one 64-bit multiply is
/// below 2^-40 for the sizes here).
pub(crate) fn below(rng: &mut ChaCha20Rng, n: usize) -> usize {
    ((u128::from(rng.next_u64()) * n as u128) >> 64) as usize
}

fn uniform(rng: &mut ChaCha20Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn shuffle<T>(values: &mut [T], rng: &mut ChaCha20Rng) {
    for i in (1..values.len()).rev() {
        let j = below(rng, i + 1);
        values.swap(i, j);
    }
}

/// `n` split over the cells in proportion to `p` (any non-negative weights; uniform when they
/// are all zero): each cell gets `floor(n·p)`, and the remainder goes to cells drawn by
/// systematic sampling on the fractional parts, so each cell gets its expectation rounded down
/// or up, up with probability equal to the fractional part.
pub fn allocate(n: usize, p: &[f64], rng: &mut ChaCha20Rng) -> Vec<usize> {
    let sum: f64 = p.iter().filter(|x| **x > 0.0).sum();
    let k = p.len();
    if k == 0 {
        return Vec::new();
    }
    let expected: Vec<f64> = if sum > 0.0 {
        p.iter().map(|x| x.max(0.0) / sum * n as f64).collect()
    } else {
        vec![n as f64 / k as f64; k]
    };
    let mut counts: Vec<usize> = expected.iter().map(|e| e.floor() as usize).collect();
    let given: usize = counts.iter().sum();
    let remainder = n.saturating_sub(given);
    if remainder > 0 {
        let fractions: Vec<f64> = expected.iter().map(|e| e - e.floor()).collect();
        let total: f64 = fractions.iter().sum();
        // Scale so the fractions add to exactly `remainder` despite rounding.
        let scale = if total > 0.0 {
            remainder as f64 / total
        } else {
            0.0
        };
        let offset = uniform(rng);
        let (mut cumulative, mut next, mut placed) = (0.0, offset, 0);
        for (j, f) in fractions.iter().enumerate() {
            cumulative += f * scale;
            while placed < remainder && next < cumulative {
                counts[j] += 1;
                placed += 1;
                next += 1.0;
            }
        }
        // Floating-point shortfall: the last cells by fraction.
        let mut j = k;
        while placed < remainder {
            j = if j == 0 { k - 1 } else { j - 1 };
            counts[j] += 1;
            placed += 1;
        }
    }
    counts
}

/// `n` records from the model: one column of cell indices per node (see the module docs).
pub fn sample(tree: &Tree, mu: &Marginals, n: usize, rng: &mut ChaCha20Rng) -> Vec<Vec<u16>> {
    let d = tree.sizes.len();
    let mut columns: Vec<Vec<u16>> = vec![Vec::new(); d];
    let fill = |counts: &[usize], rng: &mut ChaCha20Rng| -> Vec<u16> {
        let mut values: Vec<u16> = counts
            .iter()
            .enumerate()
            .flat_map(|(v, &c)| std::iter::repeat_n(v as u16, c))
            .collect();
        shuffle(&mut values, rng);
        values
    };
    for &i in &tree.order {
        match tree.up[i] {
            None => {
                let counts = allocate(n, &mu.nodes[i], rng);
                columns[i] = fill(&counts, rng);
            }
            Some(e) => {
                let p = tree.edges[e].0;
                let (np, nc) = (tree.sizes[p], tree.sizes[i]);
                let mut rows: Vec<Vec<u32>> = vec![Vec::new(); np];
                for (row, &v) in columns[p].iter().enumerate() {
                    rows[usize::from(v)].push(row as u32);
                }
                let mut column = vec![0u16; n];
                for (xp, group) in rows.iter().enumerate() {
                    if group.is_empty() {
                        continue;
                    }
                    let conditional = &mu.edges[e][xp * nc..(xp + 1) * nc];
                    let weights: &[f64] = if conditional.iter().sum::<f64>() > 0.0 {
                        conditional
                    } else {
                        &mu.nodes[i]
                    };
                    let values = fill(&allocate(group.len(), weights, rng), rng);
                    for (&row, v) in group.iter().zip(values) {
                        column[row as usize] = v;
                    }
                }
                columns[i] = column;
            }
        }
    }
    columns
}
