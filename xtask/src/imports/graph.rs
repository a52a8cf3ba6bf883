//! One crate's module graph: who imports from whom, where, and the loops in it.
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Where an import is: `monitor-agent/src/app.rs:12`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub file: String,
    pub line: usize,
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

pub struct Graph {
    /// Module paths from the crate root, the root itself empty.
    modules: Vec<Vec<String>>,
    /// The first site found for each edge is the one reported.
    edges: BTreeMap<(usize, usize), Site>,
}

impl Graph {
    pub fn new(modules: Vec<Vec<String>>) -> Self {
        Graph {
            modules,
            edges: BTreeMap::new(),
        }
    }

    pub fn module_count(&self) -> usize {
        self.modules.len()
    }

    pub fn edge_count(&self) -> usize {
        self.edges.len()
    }

    pub fn name(&self, module: usize) -> String {
        display(&self.modules[module])
    }

    pub fn site(&self, from: usize, to: usize) -> &Site {
        &self.edges[&(from, to)]
    }

    /// A module using its own items is no dependency, so it is not an edge.
    pub fn add_edge(&mut self, from: usize, to: usize, site: Site) {
        if from != to {
            self.edges.entry((from, to)).or_insert(site);
        }
    }

    /// The modules that reach each other (strongly connected, more than one module), each
    /// sorted, with Tarjan's algorithm.
    pub fn tangles(&self) -> Vec<Vec<usize>> {
        let mut successors = vec![Vec::new(); self.modules.len()];
        for &(from, to) in self.edges.keys() {
            successors[from].push(to);
        }
        let mut tarjan = Tarjan {
            successors: &successors,
            index: vec![None; self.modules.len()],
            low: vec![0; self.modules.len()],
            on_stack: vec![false; self.modules.len()],
            stack: Vec::new(),
            next: 0,
            found: Vec::new(),
        };
        for module in 0..self.modules.len() {
            if tarjan.index[module].is_none() {
                tarjan.visit(module);
            }
        }
        let mut tangles: Vec<Vec<usize>> = tarjan
            .found
            .into_iter()
            .filter(|members| members.len() > 1)
            .map(|mut members| {
                members.sort_unstable();
                members
            })
            .collect();
        tangles.sort();
        tangles
    }

    /// Loops through `tangle` that between them take every edge inside it: one loop is
    /// readable where a list of twenty modules is not, and no edge of the tangle is left out.
    /// Each loop is its modules in order, back to the first implied.
    pub fn loops(&self, tangle: &[usize]) -> Vec<Vec<usize>> {
        let members: BTreeSet<usize> = tangle.iter().copied().collect();
        let mut untaken: BTreeSet<(usize, usize)> = self
            .edges
            .keys()
            .copied()
            .filter(|(from, to)| members.contains(from) && members.contains(to))
            .collect();
        let mut loops = Vec::new();
        while let Some(&(from, to)) = untaken.iter().next() {
            let mut cycle = vec![from];
            cycle.extend(self.shortest_path(to, from, &members));
            cycle.pop(); // `from` again
            for (i, &module) in cycle.iter().enumerate() {
                untaken.remove(&(module, cycle[(i + 1) % cycle.len()]));
            }
            loops.push(cycle);
        }
        loops
    }

    /// Breadth first within `members`, which all reach each other: the path exists.
    fn shortest_path(&self, start: usize, goal: usize, members: &BTreeSet<usize>) -> Vec<usize> {
        let mut came_from = BTreeMap::new();
        let mut seen = BTreeSet::from([start]);
        let mut queue = VecDeque::from([start]);
        while let Some(module) = queue.pop_front() {
            if module == goal {
                break;
            }
            let next = self
                .edges
                .range((module, 0)..(module + 1, 0))
                .map(|(&(_, to), _)| to);
            for to in next.filter(|to| members.contains(to)) {
                if seen.insert(to) {
                    came_from.insert(to, module);
                    queue.push_back(to);
                }
            }
        }
        let mut path = vec![goal];
        while let Some(&previous) = path.last().and_then(|module| came_from.get(module)) {
            path.push(previous);
        }
        path.reverse();
        path
    }

    /// The edges between top-level modules (rooms): `(from, to)` with how many module edges
    /// make it up and the first one's site. The crate root is its own room.
    pub fn rooms(&self) -> BTreeMap<(String, String), (usize, &Site)> {
        let room = |module: usize| match self.modules[module].first() {
            Some(top) => top.clone(),
            None => display(&[]),
        };
        let mut rooms: BTreeMap<(String, String), (usize, &Site)> = BTreeMap::new();
        for (&(from, to), site) in &self.edges {
            let (from, to) = (room(from), room(to));
            if from != to {
                rooms.entry((from, to)).or_insert((0, site)).0 += 1;
            }
        }
        rooms
    }
}

fn display(module: &[String]) -> String {
    if module.is_empty() {
        "crate".into()
    } else {
        module.join("::")
    }
}

struct Tarjan<'a> {
    successors: &'a [Vec<usize>],
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    next: usize,
    found: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    // Recursive: a crate has tens of modules, not thousands.
    fn visit(&mut self, module: usize) {
        self.index[module] = Some(self.next);
        self.low[module] = self.next;
        self.next += 1;
        self.stack.push(module);
        self.on_stack[module] = true;
        for &to in &self.successors[module] {
            match self.index[to] {
                None => {
                    self.visit(to);
                    self.low[module] = self.low[module].min(self.low[to]);
                }
                Some(index) if self.on_stack[to] => {
                    self.low[module] = self.low[module].min(index);
                }
                Some(_) => {}
            }
        }
        if Some(self.low[module]) == self.index[module] {
            let mut members = Vec::new();
            while let Some(member) = self.stack.pop() {
                self.on_stack[member] = false;
                members.push(member);
                if member == module {
                    break;
                }
            }
            self.found.push(members);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(modules: usize, edges: &[(usize, usize)]) -> Graph {
        let mut graph = Graph::new((0..modules).map(|m| vec![format!("m{m}")]).collect());
        for &(from, to) in edges {
            let file = format!("m{from}.rs");
            graph.add_edge(from, to, Site { file, line: to });
        }
        graph
    }

    #[test]
    fn a_dag_has_no_tangle() {
        let graph = graph(4, &[(0, 1), (0, 2), (1, 3), (2, 3), (0, 3)]);
        assert!(graph.tangles().is_empty());
    }

    #[test]
    fn the_loops_of_a_tangle_take_every_edge() {
        // 0 → 1 → 2 → 0 and 1 → 0 share modules; 3 only leads in, 4 only out.
        let graph = graph(5, &[(0, 1), (1, 2), (2, 0), (1, 0), (3, 0), (2, 4)]);
        let tangles = graph.tangles();
        assert_eq!(tangles, [vec![0, 1, 2]]);
        assert_eq!(graph.loops(&tangles[0]), [vec![0, 1], vec![1, 2, 0]]);
    }

    #[test]
    fn self_edges_are_not_kept_and_the_first_site_is() {
        let mut graph = graph(2, &[(0, 0), (0, 1)]);
        graph.add_edge(
            0,
            1,
            Site {
                file: "later.rs".into(),
                line: 9,
            },
        );
        assert_eq!(graph.edge_count(), 1);
        assert_eq!(graph.site(0, 1).to_string(), "m0.rs:1");
    }
}
