//! Tables kept as tab-separated text in `data/` (names, weights, CTDC columns): one row a line,
//! `#` starting a comment line.

/// The rows of `table`, each as its `N` cells; comment and blank lines are passed over.
///
/// Panics on a row with another number of cells: the tables are compiled in, so the tests
/// reach every one.
pub(crate) fn rows<const N: usize>(table: &'static str) -> impl Iterator<Item = [&'static str; N]> {
    table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let cells: Vec<&'static str> = line.split('\t').collect();
            cells
                .try_into()
                .unwrap_or_else(|_| panic!("{line:?} does not have {N} tab-separated cells"))
        })
}

/// Rows grouped by a key, the groups in the order their keys first appear.
#[derive(Debug)]
pub(crate) struct Groups<T>(Vec<(&'static str, Vec<T>)>);

impl<T> Groups<T> {
    pub(crate) fn new(rows: impl IntoIterator<Item = (&'static str, T)>) -> Groups<T> {
        let mut groups: Vec<(&'static str, Vec<T>)> = Vec::new();
        for (key, row) in rows {
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, group)) => group.push(row),
                None => groups.push((key, vec![row])),
            }
        }
        Groups(groups)
    }

    /// The rows of group `key`, in table order. Panics when the table has no such group.
    pub(crate) fn get(&self, key: &str) -> &[T] {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, group)| group.as_slice())
            .unwrap_or_else(|| panic!("no group {key:?} in the table"))
    }
}
