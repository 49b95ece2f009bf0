//! Tables kept as tab-separated text in `data/` (the name tables): one row a line, `#` starting
//! a comment line.

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
