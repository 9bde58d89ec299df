//! Which modules a node gets, at which version, in which order.

use std::collections::BTreeMap;

use crate::error::{SiteError, SiteErrors};
use crate::module::Module;
use crate::site::Site;
use crate::versions::Ref;

/// A module reference and where it was written.
#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    pub text: String,
    pub by: String,
    pub error: SiteError,
}

/// Resolves the wanted modules and everything they require, then orders them so that
/// every module comes after what it requires (ties keep the order of first mention).
pub(crate) fn resolve(site: &Site, wanted: Vec<Wanted>) -> Result<Vec<Module>, SiteErrors> {
    let mut errors = Vec::new();
    let mut modules: Vec<Module> = Vec::new();
    let mut chosen: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut edges: Vec<Vec<usize>> = Vec::new();
    let mut queue: Vec<(Wanted, Option<usize>)> = wanted.into_iter().map(|w| (w, None)).collect();
    queue.reverse();
    while let Some((w, parent)) = queue.pop() {
        let fail = |msg: String| SiteError {
            message: msg,
            ..w.error.clone()
        };
        let r = match Ref::parse(&w.text) {
            Ok(r) => r,
            Err(e) => {
                errors.push(fail(format!("bad module reference {e}")));
                continue;
            }
        };
        let idx = match chosen.get(&r.name) {
            Some((idx, first)) => {
                let have = &modules[*idx];
                if !satisfies(have, &r) {
                    errors.push(fail(format!(
                        "{} wants module `{}`, but {first} already chose {}",
                        w.by,
                        w.text,
                        have.id()
                    )));
                    continue;
                }
                *idx
            }
            None => match Module::load(site, &r) {
                Ok(m) => {
                    let idx = modules.len();
                    // Pushed last first: they are taken in the order written.
                    queue.extend(requires(&m).rev().map(|w| (w, Some(idx))));
                    chosen.insert(r.name.clone(), (idx, w.by.clone()));
                    modules.push(m);
                    edges.push(Vec::new());
                    idx
                }
                Err(e) => {
                    errors.push(fail(e));
                    continue;
                }
            },
        };
        if let Some(p) = parent {
            edges[p].push(idx);
        }
    }
    if !errors.is_empty() {
        return Err(SiteErrors(errors));
    }
    let order = topo(&edges).map_err(|cycle| {
        let names: Vec<String> = cycle.iter().map(|i| modules[*i].id()).collect();
        let first = &modules[cycle[0]];
        SiteErrors(vec![SiteError::in_file(
            first.toml.rel.clone(),
            format!("dependency cycle: {}", names.join(" -> ")),
        )])
    })?;
    let mut slots: Vec<Option<Module>> = modules.into_iter().map(Some).collect();
    Ok(order
        .into_iter()
        .map(|i| slots[i].take().expect("each index once"))
        .collect())
}

/// Whether the module chosen for a name is a version the reference accepts (any, when
/// it names none).
fn satisfies(have: &Module, r: &Ref) -> bool {
    r.version.as_ref().is_none_or(|v| {
        have.version
            .as_ref()
            .is_some_and(|h| h == v || h.starts_with(&format!("{v}.")))
    })
}

/// What a module requires, each located in its `module.toml`.
fn requires(m: &Module) -> impl DoubleEndedIterator<Item = Wanted> + '_ {
    m.toml.value.requires.iter().map(|req| Wanted {
        text: req.get_ref().clone(),
        by: format!("module {}", m.id()),
        error: m.toml.error_at(req.span().start, ""),
    })
}

/// Depth-first order where each node follows its requirements; a cycle is returned as
/// the list of nodes on it, first repeated last.
fn topo(edges: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        n: usize,
        edges: &[Vec<usize>],
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
        out: &mut Vec<usize>,
    ) -> Result<(), Vec<usize>> {
        match marks[n] {
            Mark::Done => return Ok(()),
            Mark::Open => {
                let from = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut cycle = stack[from..].to_vec();
                cycle.push(n);
                return Err(cycle);
            }
            Mark::New => {}
        }
        marks[n] = Mark::Open;
        stack.push(n);
        for &m in &edges[n] {
            visit(m, edges, marks, stack, out)?;
        }
        stack.pop();
        marks[n] = Mark::Done;
        out.push(n);
        Ok(())
    }
    let mut marks = vec![Mark::New; edges.len()];
    let mut out = Vec::with_capacity(edges.len());
    for n in 0..edges.len() {
        visit(n, edges, &mut marks, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::topo;

    #[test]
    fn requirements_come_first() {
        // 0 requires 1, 1 requires 2.
        assert_eq!(topo(&[vec![1], vec![2], vec![]]).unwrap(), vec![2, 1, 0]);
    }

    #[test]
    fn a_cycle_is_named_in_full() {
        assert_eq!(
            topo(&[vec![1], vec![2], vec![0]]).unwrap_err(),
            vec![0, 1, 2, 0]
        );
    }
}
