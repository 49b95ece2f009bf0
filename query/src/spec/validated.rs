//! A validated spec: the only form the planner accepts, with its canonical JSON and hash.

use super::*;

/// How much privacy to spend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Privacy {
    Budget {
        epsilon: f64,
        delta: Option<f64>,
    },
    /// A zCDP budget (discrete Gaussian); `delta` is where its (epsilon, delta) is stated.
    Rho {
        rho: f64,
        delta: f64,
    },
    Accuracy {
        half_width_95: f64,
        delta: Option<f64>,
    },
}

/// A spec that passed validation; only [`QuerySpec::validate`] builds one.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedSpec {
    pub(super) measure: Measure,
    pub(super) column: Option<ValueColumn>,
    pub(super) bounds: Option<Bounds>,
    pub(super) bins: Vec<Bin>,
    pub(super) quantiles: Vec<f64>,
    pub(super) group_by: Vec<Dimension>,
    pub(super) filters: Vec<(Dimension, Vec<String>)>,
    pub(super) period: Period,
    pub(super) contribution_bound: u32,
    /// `contribution_bound: "auto"`: the bound is chosen when the query runs.
    pub(super) auto_bound: bool,
    pub(super) list_items_bound: u32,
    pub(super) mechanism: Mechanism,
    pub(super) privacy: Privacy,
    pub(super) keys: KeysMode,
    pub(super) canonical: String,
}

impl ValidatedSpec {
    pub fn measure(&self) -> Measure {
        self.measure
    }
    /// The numeric column of a value measure.
    pub fn column(&self) -> Option<ValueColumn> {
        self.column
    }
    /// The bounds of a value measure.
    pub fn bounds(&self) -> Option<Bounds> {
        self.bounds
    }
    /// The bins of `histogram` and `quantile`, covering the bounds; empty otherwise.
    pub fn bins(&self) -> &[Bin] {
        &self.bins
    }
    /// The quantiles of `quantile`, sorted; empty otherwise.
    pub fn quantiles(&self) -> &[f64] {
        &self.quantiles
    }
    /// The grouping dimensions, in canonical order.
    pub fn group_by(&self) -> &[Dimension] {
        &self.group_by
    }
    /// Filters in canonical dimension order, values deduplicated in domain order.
    pub fn filters(&self) -> &[(Dimension, Vec<String>)] {
        &self.filters
    }
    /// The values kept of a filtered dimension.
    pub fn filter(&self, dim: Dimension) -> Option<&[String]> {
        self.filters
            .iter()
            .find(|(d, _)| *d == dim)
            .map(|(_, v)| v.as_slice())
    }
    pub fn period(&self) -> Period {
        self.period
    }
    /// Records kept per person.
    pub fn contribution_bound(&self) -> u32 {
        self.contribution_bound
    }
    /// Whether the bound is chosen when the query runs (`"auto"`); until
    /// [`ValidatedSpec::with_bound`] fixes it, `contribution_bound` is the default.
    pub fn auto_bound(&self) -> bool {
        self.auto_bound
    }
    /// This query with its bound fixed at `k` and `privacy` to spend: what an `"auto"` query
    /// runs as once its bound is chosen.
    pub fn with_bound(&self, k: u32, privacy: Privacy) -> ValidatedSpec {
        let mut s = self.clone();
        s.contribution_bound = k;
        s.auto_bound = false;
        s.privacy = privacy;
        s.canonical =
            serde_json::to_string(&s.canonical_spec()).expect("a spec serialises to JSON");
        s
    }
    /// Exploitation types kept per record.
    pub fn list_items_bound(&self) -> u32 {
        self.list_items_bound
    }
    /// Cells one record can fall in: `list_items_bound` when grouping by exploitation type.
    pub fn cells_per_record(&self) -> u32 {
        if self.group_by.contains(&Dimension::ExploitationType) {
            self.list_items_bound
        } else {
            1
        }
    }
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }
    pub fn privacy(&self) -> Privacy {
        self.privacy
    }
    pub fn keys(&self) -> KeysMode {
        self.keys
    }

    /// The released domain of a grouping dimension: its public domain, narrowed to the filter
    /// values when it is also filtered.
    pub fn released_domain(&self, dim: Dimension, missions: &[String]) -> Vec<String> {
        let domain = dim.domain(missions, self.period);
        match self.filter(dim) {
            Some(kept) => domain.into_iter().filter(|k| kept.contains(k)).collect(),
            None => domain,
        }
    }

    /// Cells of the cartesian domain of the released keys, bins included (saturating).
    pub fn public_cells(&self, missions: &[String]) -> u64 {
        let bins = self.bins.len().max(1) as u64;
        self.group_by
            .iter()
            .map(|d| self.released_domain(*d, missions).len() as u64)
            .fold(bins, u64::saturating_mul)
    }

    /// Checks that depend on the mission domain: mission filter values, and the size of the
    /// public domain. [`QuerySpec::validate`] runs them; the planner runs them again against the
    /// missions it is given.
    pub fn check_missions(&self, missions: &[String]) -> Result<(), SpecErrors> {
        let mut errs = Errors::default();
        self.check_missions_into(missions, &mut errs);
        if errs.0.is_empty() {
            Ok(())
        } else {
            Err(SpecErrors(errs.0))
        }
    }

    pub(super) fn check_missions_into(&self, missions: &[String], errs: &mut Errors) {
        if let Some(kept) = self.filter(Dimension::Mission) {
            let domain = Dimension::Mission.domain(missions, self.period);
            for v in kept.iter().filter(|v| !domain.contains(v)) {
                errs.push(
                    "filters.mission",
                    format!(
                        "`{v}` is not a mission here; allowed: {}",
                        domain.join(", ")
                    ),
                );
            }
        }
        let cells = self.public_cells(missions);
        if self.keys == KeysMode::Public && cells > MAX_PUBLIC_CELLS {
            errs.push(
                "keys",
                format!(
                    "the public domain of this query has {cells} cells (more than \
                     {MAX_PUBLIC_CELLS}); use \"keys\": \"threshold\", fewer group_by \
                     dimensions, filters or bins"
                ),
            );
        }
    }

    /// The canonical serialisation: stable across spellings of the same query.
    pub fn canonical_json(&self) -> &str {
        &self.canonical
    }

    /// BLAKE3 (derive-key mode, context `ctstats query spec v1`) of the canonical
    /// serialisation, in hex.
    pub fn hash(&self) -> String {
        let mut hasher = blake3::Hasher::new_derive_key("ctstats query spec v1");
        hasher.update(self.canonical.as_bytes());
        hasher.finalize().to_hex().to_string()
    }

    /// The canonical form as a spec (it validates to itself).
    pub(super) fn canonical_spec(&self) -> QuerySpec {
        let (budget, accuracy) = match self.privacy {
            Privacy::Budget { epsilon, delta } => (
                Some(Budget {
                    epsilon: Some(epsilon),
                    delta,
                    rho: None,
                }),
                None,
            ),
            Privacy::Rho { rho, delta } => (
                Some(Budget {
                    epsilon: None,
                    delta: Some(delta),
                    rho: Some(rho),
                }),
                None,
            ),
            Privacy::Accuracy {
                half_width_95,
                delta,
            } => (
                None,
                Some(Accuracy {
                    half_width_95,
                    delta,
                }),
            ),
        };
        QuerySpec {
            measure: self.measure,
            column: self.column.map(|c| c.name().to_string()),
            bounds: self.bounds,
            bins: (!self.bins.is_empty())
                .then(|| Bins::Edges(self.bins.iter().map(|b| b.lower).collect())),
            quantiles: (self.measure == Measure::Quantile).then(|| self.quantiles.clone()),
            group_by: self.group_by.iter().map(|d| d.name().to_string()).collect(),
            filters: self
                .filters
                .iter()
                .map(|(d, v)| (d.name().to_string(), v.clone()))
                .collect(),
            period: PeriodSpec {
                from: self.period.from.to_string(),
                to: self.period.to.to_string(),
            },
            contribution_bound: Some(if self.auto_bound {
                ContributionBound::Chosen(Auto::Auto)
            } else {
                ContributionBound::Records(self.contribution_bound)
            }),
            list_items_bound: Some(self.list_items_bound),
            mechanism: Some(self.mechanism),
            budget,
            accuracy,
            keys: self.keys,
        }
    }
}
