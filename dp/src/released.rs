//! [`Released`]: a value computed only from DP releases (and public inputs), the only form in
//! which a number computed from records reaches the wire.
//!
//! Only this crate makes one, from a [`Release`](crate::Release) or a
//! [`SparseRelease`](crate::SparseRelease) whose noise was drawn and whose cost was checked
//! against OpenDP's map. Outside the crate a `Released` can only be post-processed (`map`,
//! `try_map`, `collect`, `split`) or read: there is no constructor from a plain value and
//! no `Deserialize`, so a type that holds one (an answer's cells) cannot be built from exact
//! aggregates or from an arbitrary JSON body. It serialises as the value it holds.

use serde::{Serialize, Serializer};

/// A post-processed DP output. See the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct Released<T>(T);

impl<T> Released<T> {
    /// Only the crate's releases make one.
    pub(crate) fn new(value: T) -> Self {
        Released(value)
    }

    /// Read the released value.
    pub fn get(&self) -> &T {
        &self.0
    }

    /// Take the released value out (to read it; it cannot be wrapped again outside this crate).
    pub fn into_inner(self) -> T {
        self.0
    }

    /// Post-process: a function of released values is released (no budget is spent).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Released<U> {
        Released(f(self.0))
    }

    /// Post-process with a step that may fail.
    pub fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Released<U>, E> {
        f(self.0).map(Released)
    }

    /// Two released values, as one pair.
    pub fn zip<U>(self, other: Released<U>) -> Released<(T, U)> {
        Released((self.0, other.0))
    }

    /// Released values in order, as one.
    pub fn collect(values: impl IntoIterator<Item = Released<T>>) -> Released<Vec<T>> {
        Released(values.into_iter().map(|r| r.0).collect())
    }
}

impl<A, B> Released<(A, B)> {
    /// The two halves of a released pair, each released.
    pub fn split(self) -> (Released<A>, Released<B>) {
        let (a, b) = self.0;
        (Released(a), Released(b))
    }
}

impl<T: Serialize> Serialize for Released<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}
